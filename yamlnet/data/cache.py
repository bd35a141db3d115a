"""``data.cache: disk``: a folder's images decoded once into a uint8 ``.npy`` file, read a batch at a
time by every later epoch and run.

The cache is keyed by what its pixels depend on — every file's path, size and modification time,
the model's n_H × n_W × n_C and the resize settings — so a changed, added or removed image, or
another size, makes a new one. It is written to a temporary file and renamed into place, and only
then is its marker (the ``.json`` beside it, holding the unreadable images found) written: a run
never starts from a half-written cache, and a full disk is one line.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from yamlnet.data.stream import UnreadableImage, refuse_unreadable
from yamlnet.errors import DataError
from yamlnet.npzio import open_npy, write_atomic, write_text_atomic
from yamlnet.sizes import format_bytes

FORMAT = 1


def cache_folder(cache_dir: str | None = None) -> Path:
    """``data.cache_dir``, else ``$YAMLNET_CACHE_DIR``, else ``$XDG_CACHE_HOME/yamlnet`` (``~/.cache/yamlnet``)."""
    if cache_dir:
        return Path(cache_dir)
    if os.environ.get("YAMLNET_CACHE_DIR"):
        return Path(os.environ["YAMLNET_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "yamlnet"


def cache_key(images, resize) -> str:
    """A digest of everything the cached pixels depend on."""
    files = []
    for path in images.files:
        try:
            stat = os.stat(path)
        except OSError:
            raise refuse_unreadable(UnreadableImage("is gone (deleted or moved since the folder was read)",
                                                    file=str(path))) from None
        files.append([str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns])
    text = json.dumps({"format": FORMAT, "shape": list(images.input_shape), "resize": [resize.mode, resize.resample],
                       "files": files})
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def disk_cache(images, resize, cache_dir: str | None, description: str, skip_bad: bool):
    """(the cached images of ``images`` (a ``FolderImages``) as an ``ArrayFile`` of uint8 rows, the rows
    that could not be read): the cache reused where it is there and current, else built first."""
    folder = cache_folder(cache_dir)
    key = cache_key(images, resize)
    array, marker = folder / f"images-{key}.npy", folder / f"images-{key}.json"
    if not (marker.is_file() and array.is_file()):
        _build(images, array, marker, description, skip_bad)
    bad = json.loads(marker.read_text(encoding="utf-8"))["unreadable"]
    if bad and not skip_bad:
        raise refuse_unreadable(UnreadableImage("could not be read when the disk cache was made",
                                                file=str(images.files[bad[0]])))
    cached = open_npy(array, "image cache")
    if cached.shape != images.shape or cached.dtype != np.uint8:
        raise DataError(f"holds {cached.dtype} {cached.shape}, not the uint8 {images.shape} its name promises; "
                        f"delete it to have it made again", file=str(array))
    return cached, bad


def _build(images, array: Path, marker: Path, description: str, skip_bad: bool) -> None:
    size = int(np.prod(images.shape))
    try:
        array.parent.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(array.parent).free
    except OSError as exc:
        raise DataError(f"cannot hold the image cache: {exc.strerror or exc}; set data.cache_dir to another "
                        f"folder", file=str(array.parent)) from None
    if free < size + 2**20:
        raise _no_room(array, size, f"{free:,} bytes are free")
    bad = []

    def write(handle):
        np.lib.format.write_array_header_1_0(handle, {"descr": "|u1", "fortran_order": False,
                                                      "shape": tuple(images.shape)})
        for rows, out, unreadable in images.decode_all(description, skip_bad):
            handle.write(out.tobytes())
            bad.extend(rows.start + position for position in unreadable)

    try:
        write_atomic(array, write)
    except DataError as error:
        if error.file != str(array):  # an unreadable image
            raise
        # a full disk, a folder one may not write to
        raise _no_room(array, size, error.message.removeprefix("cannot be written: ")) from None
    write_text_atomic(marker, json.dumps({"format": FORMAT, "images": len(images), "unreadable": bad,
                                          "folder": str(Path(images.files[0]).parent.parent) if images.files else ""}))


def _no_room(array: Path, size: int, why: str) -> DataError:
    return DataError(f"cannot write the image cache ({format_bytes(size)}): {why}; set data.cache_dir to a folder "
                     f"with room, or data.cache: none to read the images from their files", file=str(array))
