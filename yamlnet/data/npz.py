"""npz: a user's own arrays — images ``x`` (N, H, W) or (N, H, W, C) and integer labels ``y`` (N,) — in
an ``.npz`` file or as ``x.npy`` and ``y.npy`` in a folder. With ``data.cache`` none or disk the images
are read in place, a batch at a time (an ``.npz`` must then be stored without compression)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from yamlnet.data.registry import PATH_KEY, register_dataset
from yamlnet.errors import DataError
from yamlnet.npzio import array_shape, open_array, read_arrays


def read_xy(path, x_key: str, y_key: str):
    return read_arrays(path, (x_key, y_key), "data file")


def count_images(data: dict) -> int:
    """How many images the files hold (from the arrays' headers), 0 where that cannot be read."""
    total = 0
    for key in ("path", "test_path"):
        if data.get(key):
            try:
                total += array_shape(data[key], data["x_key"])[0]
            except (DataError, IndexError):
                pass
    return total


def read_in_place(path, x_key: str, y_key: str):
    """(images read in place (an ``ArrayFile``), labels (N,), class names or None) of one data file."""
    x = open_array(path, x_key, "data file")
    y = open_array(path, y_key, "data file")[:]
    return x, y, (open_array(path, "classes", "data file")[:] if _holds(path, "classes") else None)


def _holds(path, key: str) -> bool:
    try:
        array_shape(path, key)
        return True
    except DataError:
        return False


@register_dataset("npz", required=("path",), count=lambda data, _: count_images(data), streams="none",
                  description="your own .npz file (or folder of .npy files) of images and labels", keys={
    "path": PATH_KEY,
    "x_key": {"type": "string", "default": "x", "description": "npz: the array of images"},
    "y_key": {"type": "string", "default": "y", "description": "npz: the array of labels"},
    "test_path": {"type": "string", "minLength": 1, "x-path": True, "description": "npz: an optional separate test file, same keys"},
})
def load_npz(data, input_shape, seed):
    keys = (data["x_key"], data["y_key"])
    if data.get("cache", "memory") == "memory":
        x, y, classes = read_arrays(data["path"], keys, "data file", optional=("classes",))
        x_test, y_test = read_xy(data["test_path"], *keys) if data.get("test_path") else (None, None)
    else:
        x, y, classes = read_in_place(data["path"], *keys)
        x_test, y_test = read_in_place(data["test_path"], *keys)[:2] if data.get("test_path") else (None, None)
    if classes is not None and (classes.ndim != 1 or classes.dtype.kind not in "US"):
        raise DataError(f"array 'classes' must be a 1-D array of strings, got {classes.dtype} {classes.shape}",
                        file=str(data["path"]))
    return x, y, x_test, y_test, None if classes is None else [str(name) for name in classes]
