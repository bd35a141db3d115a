"""Reading and writing ``.npz`` files safely: never unpickle on read, never half-write on save."""

from __future__ import annotations

import os
import threading
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from yamlnet.errors import DataError, ReadError


def read_npz(path: str | os.PathLike, what: str = "file") -> dict[str, np.ndarray]:
    """All arrays of an ``.npz``, read with ``allow_pickle=False``; a clear ``DataError`` otherwise."""
    path = Path(path)
    read_npz_names(path, what)  # np.load would try to unpickle what is not an archive: say what it is instead
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
    if Path(path).is_dir():
        arrays = {key: np.load(Path(path) / f"{key}.npy", allow_pickle=False)
                  for key in (*keys, *optional) if (Path(path) / f"{key}.npy").is_file()}
    else:
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

    write_atomic(path, write, "wb")
    _fsync_dir(path.parent)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    write_atomic(Path(path), lambda handle: handle.write(data), "wb")


def write_atomic(path: Path, write, mode: str = "wb") -> None:
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


class ArrayFile:
    """An array stored in a file (a ``.npy``, or one member of an uncompressed ``.npz``), read a few rows
    at a time: ``rows[indices]`` → a new array (k, *shape[1:]) of those rows, read with ``os.pread``.

    The whole array is never loaded, nor mapped: pages of a memory map count as the process's resident
    memory once touched, so an epoch of random batches would show the whole file as used. The file
    stays open; reads from several threads at once are safe (positional reads share no file offset).
    """

    def __init__(self, path: str | os.PathLike, offset: int, dtype: np.dtype, shape: tuple[int, ...]):
        self._fd = None  # (so that a failed open leaves nothing for close)
        self.path, self.offset, self.dtype, self.shape = str(path), offset, np.dtype(dtype), tuple(shape)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self.ndim = len(self.shape)
        self._fd = os.open(path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        rows = np.arange(len(self))[index]
        if rows.ndim == 0:
            return self[rows[None]][0]
        out = np.empty((len(rows), *self.shape[1:]), self.dtype)
        view = memoryview(out.reshape(-1).view(np.uint8))
        for position, row in enumerate(rows.tolist()):
            start = position * self.row_bytes
            try:
                read = os.preadv(self._fd, [view[start:start + self.row_bytes]], self.offset + row * self.row_bytes)
            except OSError as exc:
                raise ReadError(f"cannot be read: {exc.strerror or exc}", file=self.path) from None
            if read != self.row_bytes:
                raise ReadError(f"ends early: row {row} of {len(self)} is missing (the file was cut short)",
                                file=self.path)
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self):
        self.close()


def _npy_header(handle, path, what) -> tuple[np.dtype, tuple, bool]:
    try:
        version = np.lib.format.read_magic(handle)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}[version]
        shape, fortran, dtype = read(handle)
    except (ValueError, KeyError, EOFError, OSError) as exc:
        raise DataError(f"is not a readable .npy {what}: {exc}", file=str(path)) from None
    if dtype.hasobject:
        raise DataError("holds object arrays, which yamlnet never unpickles", file=str(path))
    return dtype, shape, fortran


def open_npy(path: str | os.PathLike, what: str = "file") -> ArrayFile:
    """The array of a ``.npy`` file, read in place (``ArrayFile``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such {what}", file=str(path))
    with open(path, "rb") as handle:
        dtype, shape, fortran = _npy_header(handle, path, what)
        offset = handle.tell()
    if fortran and len(shape) > 1:
        raise DataError("is stored in Fortran order; save np.ascontiguousarray(x) to read it in place",
                        file=str(path))
    return ArrayFile(path, offset, dtype, shape)


def open_npz_member(path: str | os.PathLike, key: str, what: str = "data file") -> ArrayFile:
    """Array ``key`` of an ``.npz`` stored without compression (``np.savez``), read in place; a compressed
    one (``np.savez_compressed``) cannot be, and is refused with how to store it."""
    path = Path(path)
    read_npz_names(path, what)  # the checks of read_npz: exists, is a zip
    with zipfile.ZipFile(path) as archive:
        try:
            info = archive.getinfo(f"{key}.npy")
        except KeyError:
            names = sorted(name[:-4] for name in archive.namelist() if name.endswith(".npy"))
            raise DataError(f"has no array '{key}'; it holds {', '.join(names) or 'nothing'}", file=str(path)) from None
        if info.compress_type != zipfile.ZIP_STORED:
            raise DataError(f"is compressed (numpy.savez_compressed), so array '{key}' cannot be read in place; "
                            f"store it with numpy.savez, or as x.npy and y.npy in a folder", file=str(path))
        with archive.open(info) as member:
            dtype, shape, fortran = _npy_header(member, path, what)
            header = member.tell()
    with open(path, "rb") as handle:  # the member's data starts after its local header and its npy header
        handle.seek(info.header_offset)
        local = handle.read(30)
        name_length, extra_length = int.from_bytes(local[26:28], "little"), int.from_bytes(local[28:30], "little")
    if fortran and len(shape) > 1:
        raise DataError(f"array '{key}' is stored in Fortran order; save np.ascontiguousarray(x) to read it in place",
                        file=str(path))
    return ArrayFile(path, info.header_offset + 30 + name_length + extra_length + header, dtype, shape)


def read_npz_names(path: Path, what: str = "file") -> list[str]:
    """The array names of an ``.npz``, after the checks ``read_npz`` makes (exists, is an archive)."""
    if not path.is_file():
        raise DataError(f"no such {what}" if not path.exists() else f"is not a {what} but a directory",
                        file=str(path))
    with open(path, "rb") as handle:
        is_zip = handle.read(2) == b"PK"
    if not is_zip:
        raise DataError(f"is not an .npz file ({_kind_of(path)}); a {what} is an .npz archive of arrays, "
                        f"as numpy.savez writes", file=str(path))
    try:
        with zipfile.ZipFile(path) as archive:
            return [name[:-4] for name in archive.namelist() if name.endswith(".npy")]
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"is not a readable .npz {what} (truncated or corrupt: {exc})", file=str(path)) from None


def stored_bytes(path: str | os.PathLike) -> tuple[int, bool]:
    """The bytes the arrays of an ``.npz`` take once read, and whether any of them is compressed."""
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        return sum(info.file_size for info in members), any(info.compress_type != zipfile.ZIP_STORED
                                                              for info in members)


def open_array(path: str | os.PathLike, key: str, what: str = "data file") -> ArrayFile:
    """Array ``key`` of an ``.npz`` (``open_npz_member``) or, where ``path`` is a folder, of its ``key.npy``."""
    path = Path(path)
    if path.is_dir():
        return open_npy(path / f"{key}.npy", f"{what} ({key}.npy in the folder)")
    return open_npz_member(path, key, what)


def array_shape(path: str | os.PathLike, key: str) -> tuple[int, ...]:
    """The shape of array ``key`` of an ``.npz`` (compressed or not) or a folder of ``.npy`` files, read from
    its header alone."""
    path = Path(path)
    if path.is_dir():
        return open_npy(path / f"{key}.npy").shape
    read_npz_names(path)
    with zipfile.ZipFile(path) as archive:
        try:
            with archive.open(f"{key}.npy") as member:
                return _npy_header(member, path, "file")[1]
        except KeyError:
            raise DataError(f"has no array '{key}'", file=str(path)) from None
