"""Reading and writing ``.npz`` files safely: never unpickle on read, never half-write on save."""

from __future__ import annotations

import os
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
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except ValueError as exc:
        if "pickle" in str(exc) or "Object arrays" in str(exc):
            raise DataError(f"holds object arrays, which yamlnet never unpickles", file=str(path)) from None
        raise DataError(f"is not a readable .npz {what}: {exc}", file=str(path)) from None
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise DataError(f"is not a readable .npz {what} (truncated or corrupt: {exc})", file=str(path)) from None


def write_npz_atomic(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` so that a crash leaves the old file or the new one, never half of one:
    a temporary file in the same folder, flushed to disk, then renamed over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
