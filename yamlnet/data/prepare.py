"""What every data set goes through once its loader has read it: checks against the model, the
validation split, normalization. ``load_data`` turns a config's data into ``DataSplits``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from yamlnet.data.registry import DATASETS, FASHION_MNIST, Dataset
from yamlnet.data.stream import Streamed, choose_cache, normalize, passes
from yamlnet.errors import DataError


@dataclass
class DataSplits:
    """Normalized images ``x`` (N, n_H, n_W, n_C) with labels ``y`` (N,); ``train`` and ``val`` index them.

    Indexing instead of copying keeps one copy of a large data set in memory. With ``cache`` none or
    disk, ``x`` (and ``x_test``) are ``Streamed``: ``x[indices]`` reads those images then.
    """

    x: np.ndarray | Streamed
    y: np.ndarray
    train: np.ndarray
    val: np.ndarray
    x_test: np.ndarray | Streamed | None
    y_test: np.ndarray | None
    shift: np.ndarray  # normalized = (raw − shift) / scale, per channel (n_C,)
    scale: np.ndarray
    classes: list[str]  # class k's name
    cache: str = "memory"  # data.cache, as given or chosen
    note: str = ""  # why yamlnet chose the cache, where it chose one other than memory


def load_data(config: dict, n_classes: int, *, dtype=np.float32, model_bytes: int = 0) -> DataSplits:
    """Load ``config["data"]``, check it against the model's input and its ``n_classes`` outputs,
    then split and normalize. ``model_bytes``: what the model's training takes, for the choice of
    ``data.cache`` where the file leaves it. A ``DataError`` carries the ``data`` key it is about
    (``config_key``)."""
    try:
        return _load_data(config, n_classes, dtype, model_bytes)
    except DataError as error:
        if error.config_key is None:
            error.config_key = _data_key(config["data"], error)
        raise


def _data_key(data: dict, error: DataError) -> tuple:
    """The key of ``data`` an error is about: the path it names, else the data set's file or name."""
    for key in ("path", "test_path"):
        if error.file and data.get(key) and Path(error.file) == Path(data[key]):
            return ("data", key)
    return ("data", "path") if data.get("path") else ("data", "dataset")


def _load_data(config: dict, n_classes: int, dtype, model_bytes: int) -> DataSplits:
    data = config["data"]
    dataset = DATASETS[data["dataset"]]
    input_shape = tuple(config["input"])
    seed = config["training"]["seed"]
    cache, note = choose_cache(config, model_bytes)
    x, y, x_test, y_test, *found = dataset.load({**data, "cache": cache}, input_shape, seed)
    classes = class_names(data, n_classes, found[0] if found else None)
    x, y = check_arrays(x, y, input_shape, n_classes, dataset, "data", dtype, cache)
    if x_test is not None:
        x_test, y_test = check_arrays(x_test, y_test, input_shape, n_classes, dataset, "test data", dtype, cache)

    order = np.random.default_rng([seed, 2]).permutation(len(x))
    n_val = int(round(len(x) * data["validation_split"]))
    if data["validation_split"] > 0 and n_val == 0 or len(x) - n_val < 1:
        raise DataError(f"validation_split {data['validation_split']} of {len(x)} samples leaves "
                        f"{len(x) - n_val} for training and {n_val} for validation", config_key=("data", "validation_split"))
    train, val = np.sort(order[n_val:]), np.sort(order[:n_val])

    shift, scale = normalization(x.read_raw if isinstance(x, Streamed) else x.__getitem__, train, x.shape[1:],
                                 data["normalization"])
    for array in (x, x_test):
        if isinstance(array, Streamed):
            array.set_normalization(shift, scale)
        elif array is not None:
            normalize(array, shift, scale)
    return DataSplits(x, y, train, val, x_test, y_test, shift.astype(dtype), scale.astype(dtype), classes, cache, note)


def class_names(data: dict, n_classes: int, found: list[str] | None = None) -> list[str]:
    """Class k's name for every k: ``data.classes``, else what the data holds (folder names, an
    npz's ``classes`` array), else the data set's own, else ``0``, ``1``, …"""
    given = data.get("classes")
    names = list(FASHION_MNIST) if given == "fashion_mnist" else given or found or DATASETS[data["dataset"]].classes
    names = [str(name) for name in names] if names else [str(k) for k in range(n_classes)]
    if len(names) != n_classes:
        if given:  # located at data.classes, so it reads "data.classes: names 2 classes but …"
            raise DataError(f"names {len(names)} classes but the model has {n_classes} outputs",
                            config_key=("data", "classes"))
        raise DataError(f"the data holds {len(names)} classes ({', '.join(names[:12])}) but the model has "
                        f"{n_classes} outputs")
    return names


def check_arrays(x, y, input_shape, n_classes, dataset: Dataset, what: str, dtype, cache: str = "memory"):
    """Refuse data that does not fit the model; return x as ``dtype`` (N, n_H, n_W, n_C) — or, with
    ``cache`` none or disk, as ``Streamed`` images read when asked for — and y as int64."""
    streamed = cache != "memory"
    y = np.asarray(y)
    if not streamed:
        x = np.asarray(x)
    shape = tuple(x.shape) + ((1,) if len(x.shape) == 3 else ())
    if len(shape) != 4:
        raise DataError(f"{what}: images must be (N, H, W) or (N, H, W, C), got an array of shape {tuple(x.shape)}")
    if y.ndim != 1:
        raise DataError(f"{what}: labels must be a 1-D array, got shape {y.shape}")
    if len(x) != len(y):
        raise DataError(f"{what}: {len(x)} images but {len(y)} labels")
    if len(x) == 0:
        raise DataError(f"{what}: holds no samples")
    if shape[1:] != input_shape:
        raise DataError(f"{what}: images are {' × '.join(map(str, shape[1:]))} but the model's input is "
                        f"{' × '.join(map(str, input_shape))}")
    if not (np.issubdtype(x.dtype, np.number) and not np.issubdtype(x.dtype, np.complexfloating)) \
            or x.dtype == np.bool_:
        raise DataError(f"{what}: images must be numbers, got dtype {x.dtype}")
    if not (np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating)
                                                    and np.all(np.isfinite(y)) and np.all(y == np.round(y)))):
        raise DataError(f"{what}: labels must be whole numbers, got dtype {y.dtype}")
    if streamed:
        x = Streamed(x, input_shape, dtype)
        if np.issubdtype(x.raw.dtype, np.floating):
            for rows in passes(np.arange(len(x)), input_shape):
                _check_finite(x.read_raw(rows), what, rows[0])
    else:
        x = x.reshape(shape).astype(dtype, copy=False)
        _check_finite(x, what, 0)
    y = y.astype(np.int64)
    classes = dataset.n_classes
    if classes is not None and classes != n_classes:
        raise DataError(f"the {dataset.name} data set has {classes} classes but the model has "
                        f"{n_classes} outputs")
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= n_classes:
        raise DataError(f"{what}: labels run from {low} to {high} but the model has {n_classes} "
                        f"outputs, so labels must be 0..{n_classes - 1}")
    return x, y


def _check_finite(x: np.ndarray, what: str, first: int) -> None:
    if not np.all(np.isfinite(x)):
        bad = int(np.argmax(~np.isfinite(x).reshape(len(x), -1).all(axis=1)))
        raise DataError(f"{what}: image {first + bad} holds NaN or infinity")


def normalization(read, train: np.ndarray, image_shape, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (shift, scale) of the training part, from ``read(indices)`` → raw images, a pass
    at a time (``passes``: the same cuts wherever the images live, so the same sums)."""
    n_c = image_shape[-1]
    if method == "none":
        return np.zeros(n_c), np.ones(n_c)
    slices = passes(train, image_shape)
    if method == "scale":
        low, high = np.full(n_c, np.inf), np.full(n_c, -np.inf)
        for s in slices:
            part = read(s)
            low, high = np.minimum(low, part.min(axis=(0, 1, 2))), np.maximum(high, part.max(axis=(0, 1, 2)))
        return low, np.where(high > low, high - low, 1.0)
    count = len(train) * image_shape[0] * image_shape[1]
    mean = np.sum([read(s).sum(axis=(0, 1, 2), dtype=np.float64) for s in slices], axis=0) / count
    square = 0.0
    for s in slices:
        deviation = read(s) - mean
        square = square + np.square(deviation, out=deviation).sum(axis=(0, 1, 2))
    std = np.sqrt(square / count)
    return mean, np.where(std > 0, std, 1.0)
