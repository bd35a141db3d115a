"""Reading and writing ``.npz`` files safely: never unpickle on read, never half-write on save."""

from __future__ import annotations

import os
import threading
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from yamlnet.errors import DataError


def read_npz(path: str | os.PathLike, what: str = "file") -> dict[str, np.ndarray]:
    """All arrays of an ``.npz``, read with ``allow_pickle=False``; a clear ``DataError`` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such {what}" if not path.exists() else f"is not a {what} but a directory",
                        file=str(path))
    with open(path, "rb") as handle:
        is_zip = handle.read(2) == b"PK"
    if not is_zip:  # np.load would try to unpickle it, and say so: say what the file is instead
        raise DataError(f"is not an .npz file ({_kind_of(path)}); a {what} is an .npz archive of arrays, "
                        f"as numpy.savez writes", file=str(path))
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except ValueError as exc:
        if "pickle" in str(exc) or "Object arrays" in str(exc):
            raise DataError("holds object arrays, which yamlnet never unpickles", file=str(path)) from None
        raise DataError(f"is not a readable .npz {what}: {exc}", file=str(path)) from None
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise DataError(f"is not a readable .npz {what} (truncated or corrupt: {exc})", file=str(path)) from None


_MAGIC = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image", b"BM": "a BMP image",
          b"\x93NUMPY": "a single .npy array", b"\x80": "a Python pickle"}


def _kind_of(path: Path) -> str:
    """What a file that is not a zip archive looks like, from its first bytes."""
    with open(path, "rb") as handle:
        head = handle.read(512)
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            return kind
    if not head:
        return "it is empty"
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return "an unknown binary file"


def read_arrays(path: str | os.PathLike, keys, what: str = "file", optional=()) -> list[np.ndarray | None]:
    """The arrays ``keys`` of an ``.npz`` (read as ``read_npz`` does), naming what it holds when one is
    missing; then the ``optional`` ones, None where absent."""
    arrays = read_npz(path, what)
    for key in keys:
        if key not in arrays:
            raise DataError(f"has no array '{key}'; it holds {', '.join(sorted(arrays)) or 'nothing'}",
                            file=str(path))
    return [arrays[key] for key in keys] + [arrays.get(key) for key in optional]


def write_npz_atomic(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` so that a crash leaves the old file or the new one, never half of one:
    a temporary file in the same folder, flushed to disk, then renamed over ``path``."""
    path = Path(path)

    def write(handle):
        np.savez(handle, **arrays)

    _write_atomic(path, write, "wb")
    _fsync_dir(path.parent)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    _write_atomic(Path(path), lambda handle: handle.write(data), "wb")


def _write_atomic(path: Path, write, mode: str) -> None:
    """Temporary file in the same folder, flushed to disk, renamed over ``path``. A full disk or a
    read-only folder is a ``DataError``, and leaves ``path`` as it was and no temporary file behind."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        if hasattr(os, "fchmod"):  # mkstemp makes it 0600: give it the mode open() would
            os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, mode) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise DataError(f"cannot be written: {exc.strerror or exc}", file=str(path)) from None
    finally:
        if tmp is not None and Path(tmp).exists():
            Path(tmp).unlink(missing_ok=True)


def umask() -> int:
    """This process's umask, read without changing it (Linux says it in /proc; elsewhere it is set and
    put back at once, under a lock against this module's other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


_UMASK_LOCK = threading.Lock()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
