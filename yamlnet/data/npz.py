"""npz: a user's own arrays — images ``x`` (N, H, W) or (N, H, W, C) and integer labels ``y`` (N,)."""

from __future__ import annotations

from yamlnet.data.registry import PATH_KEY, register_dataset
from yamlnet.errors import DataError
from yamlnet.npzio import read_arrays


def read_xy(path, x_key: str, y_key: str):
    return read_arrays(path, (x_key, y_key), "data file")


@register_dataset("npz", required=("path",), description="your own .npz file of images and labels", keys={
    "path": PATH_KEY,
    "x_key": {"type": "string", "default": "x", "description": "npz: the array of images"},
    "y_key": {"type": "string", "default": "y", "description": "npz: the array of labels"},
    "test_path": {"type": "string", "minLength": 1, "x-path": True, "description": "npz: an optional separate test file, same keys"},
})
def load_npz(data, input_shape, seed):
    x, y, classes = read_arrays(data["path"], (data["x_key"], data["y_key"]), "data file", optional=("classes",))
    x_test = y_test = None
    if data.get("test_path"):
        x_test, y_test = read_xy(data["test_path"], data["x_key"], data["y_key"])
    if classes is not None and (classes.ndim != 1 or classes.dtype.kind not in "US"):
        raise DataError(f"array 'classes' must be a 1-D array of strings, got {classes.dtype} {classes.shape}",
                        file=str(data["path"]))
    return x, y, x_test, y_test, None if classes is None else [str(name) for name in classes]
