"""Measuring a model on data: loss, accuracy, per-class precision and recall, confusion matrix."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from yamlnet.data.stream import Feed, prediction_chunks


def predict(model, x, indices: np.ndarray | None = None) -> np.ndarray:
    """Class probabilities (n, n_classes) for the normalized images ``x[indices]`` (all of ``x`` if None)."""
    return predict_rows(model, x, np.arange(len(x)) if indices is None else indices)[0]


def predict_rows(model, x, indices: np.ndarray, skip_bad: bool = False, ahead: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(class probabilities (n, n_classes), the rows of ``indices`` they are of): ``x[indices]`` a chunk at a
    time, ``ahead`` chunks read ahead where ``x`` is streamed (with ``skip_bad``, images that cannot be read
    are left out)."""
    probs, rows = [], []
    with Feed(x, prediction_chunks(x, indices), ahead=ahead, skip_bad=skip_bad) as feed:
        for kept, images in feed:
            probs.append(model.predict_proba(images, normalized=True))
            rows.append(kept)
    if not probs:
        return np.zeros((0, model.output_shape[-1]), model.dtype), np.zeros(0, np.int64)
    return np.concatenate(probs), np.concatenate(rows)


def loss_and_accuracy(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of probabilities (n, n_classes) against labels (n,)."""
    if len(labels) == 0:
        return float("nan"), float("nan")
    picked = probs[np.arange(len(labels)), labels].astype(np.float64)
    loss = float(-np.mean(np.log(np.maximum(picked, np.finfo(np.float64).tiny))))
    return loss, float(np.mean(probs.argmax(axis=1) == labels))


def report(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Everything ``yamlnet evaluate`` prints, as JSON-ready data."""
    n_classes = probs.shape[1]
    predicted = probs.argmax(axis=1)
    # rows: true class, columns: predicted class
    confusion = np.bincount(labels * n_classes + predicted, minlength=n_classes ** 2).reshape(n_classes, n_classes)
    true_positives = np.diag(confusion)
    predicted_counts, actual_counts = confusion.sum(axis=0), confusion.sum(axis=1)
    loss, accuracy = loss_and_accuracy(probs, labels)
    return {
        "samples": int(len(labels)),
        "loss": loss,
        "accuracy": accuracy,
        "precision": [float(tp / c) if c else None for tp, c in zip(true_positives, predicted_counts)],
        "recall": [float(tp / c) if c else None for tp, c in zip(true_positives, actual_counts)],
        "confusion": confusion.tolist(),
    }



def load_trained(path):
    """The ``Model`` of a run directory (its best checkpoint) or of a model ``.npz``: it takes raw
    images and normalizes them as its run did (``Model.normalize``)."""
    from yamlnet import runs
    from yamlnet.model import load_model

    return load_model(runs.model_file(path))


def evaluate(path, data: str | None = None, *, split: str = "validation", x_key: str = "x",
             y_key: str = "y") -> dict:
    """Loss, accuracy, per-class precision and recall and the confusion matrix of a trained model,
    on its run's ``split`` ("validation", rebuilt from the seed, or the data set's separate "test"
    set) or on the arrays of ``data`` (an .npz)."""
    from yamlnet.data import DATASETS, check_arrays, load_data
    from yamlnet.data.npz import read_xy
    from yamlnet.errors import DataError

    from yamlnet.memory import model_bytes

    model = load_trained(path)
    if data is None:
        splits = load_data(model.config, model.output_shape[0], dtype=model.dtype,
                           model_bytes=model_bytes(model.config, model.layers))
        if split == "test":
            if splits.x_test is None:
                raise DataError("the run's data set has no separate test set (data.test_path for npz and folder, "
                                "data.n_test for shapes, the t10k files for mnist); pass --data FILE.npz or "
                                "--data FOLDER", file=str(path))
            x, y = splits.x_test, splits.y_test
        elif len(splits.val) == 0:
            raise DataError("the run has no validation part (validation_split is 0); pass --data FILE.npz",
                            file=str(path))
        else:
            probs, rows = predict_rows(model, splits.x, splits.val)
            return {**report(probs, splits.y[rows]), "classes": model.classes}
    elif Path(data).is_dir() and not (Path(data) / f"{x_key}.npy").is_file():  # class folders, matched by name
        from yamlnet.data.folder import Resize, read_folder
        settings = model.config["data"]
        x, y, _ = read_folder(Path(data), model.input_shape, Resize.of(settings), model.classes,
                              "--data", settings.get("skip_bad", False))
        x = model.normalize(x)
    else:
        x, y = read_xy(data, x_key, y_key)
        x, y = check_arrays(x, y, model.input_shape, model.output_shape[0], DATASETS["npz"], str(data),
                            model.dtype)
        x = model.normalize(x)
    return {**report(predict(model, x), y), "classes": model.classes}

@dataclass
class Predictions:
    """What a trained model says of some images.

    ``names``: each image's file path, or its row index (int) where it came from an array or the one
    .npz; ``classes``: the class names; ``probabilities``: (N, n_classes). ``np.asarray(predictions)``
    is the probabilities.
    """

    names: list
    classes: list[str]
    probabilities: np.ndarray

    def __len__(self) -> int:
        return len(self.names)

    def __array__(self, dtype=None, copy=None):
        return self.probabilities if dtype is None else self.probabilities.astype(dtype)

    @property
    def predicted(self) -> list[str]:
        """The most probable class of each image, by name."""
        return [self.classes[k] for k in self.probabilities.argmax(axis=1)]

    def top(self, k: int) -> list[list[tuple[str, float]]]:
        """Each image's ``k`` most probable classes, as (class name, probability), best first."""
        return [[(self.classes[j], float(row[j])) for j in np.argsort(-row, kind="stable")[:k]]
                for row in self.probabilities]

    def to_csv(self, top: int | None = None) -> str:
        """The CSV ``yamlnet predict`` prints (see ``to_csv``)."""
        return to_csv(self.names, self.classes, self.probabilities, top)


def predict_file(path, inputs, *, x_key: str = "x") -> Predictions:
    """What the trained model of ``path`` (a run directory or a model .npz) says of ``inputs``: an array of
    raw images (N, n_H, n_W, n_C) as the data set has them, an .npz (its array ``x_key``), an image
    file, a folder of images, or a list of these."""
    if isinstance(inputs, np.ndarray) or not isinstance(inputs, (list, tuple)):
        inputs = [inputs]
    return Predictions(*predict_inputs(path, inputs, x_key=x_key))


def predict_inputs(path, inputs, *, x_key: str = "x") -> tuple[list, list[str], np.ndarray]:
    """(names, class names, probabilities (N, n_classes)) of a trained model for every image of
    ``inputs`` (``gather_images``)."""
    model = load_trained(path)
    names, x = gather_images(model, inputs, x_key=x_key)
    return names, model.classes, predict(model, model.normalize(x))


def gather_images(model, inputs, *, x_key: str = "x") -> tuple[list, np.ndarray]:
    """(names, raw images (N, n_H, n_W, n_C)) of ``inputs``: arrays of raw images, .npz files (array
    ``x_key``), image files and folders of images (recursively), converted and resized as the model's
    training data was. A name is the image's path, or its row's index when the one input is an array
    or an .npz (``file.npz[i]``, ``array k[i]`` among others)."""
    from yamlnet.data.folder import IMAGE_SUFFIXES, Resize, image_files, read_image
    from yamlnet.errors import DataError

    resize = Resize.of(model.config["data"])
    names, batches = [], []
    for position, item in enumerate(inputs):
        if isinstance(item, np.ndarray):
            batches.append(_array_images(item, model, f"array {position}"))
            names += _row_names(len(batches[-1]), f"array {position}", alone=len(inputs) == 1)
            continue
        if not isinstance(item, (str, Path)):
            raise DataError(f"predict takes arrays of images, .npz files, image files and folders, "
                            f"got {type(item).__name__}")
        item = Path(item)
        if item.is_dir() or item.suffix.lower() in IMAGE_SUFFIXES:
            files = image_files(item) if item.is_dir() else [item]
            if not files:
                raise DataError("holds no images (PNG, JPEG, BMP, GIF, TIFF)", file=str(item))
            if not item.is_dir() and not item.is_file():
                raise DataError("no such image file", file=str(item))
            batches.append(np.stack([read_image(file, model.input_shape, resize) for file in files]))
            names += [str(file) for file in files]
        elif item.suffix.lower() == ".npz" or not item.exists():
            batches.append(_npz_images(item, model, x_key))
            names += _row_names(len(batches[-1]), str(item), alone=len(inputs) == 1)
        else:
            raise DataError("is neither an .npz nor an image (PNG, JPEG, BMP, GIF, TIFF), nor a folder of images",
                            file=str(item))
    x = np.concatenate(batches).astype(model.dtype)
    if not np.all(np.isfinite(x)):
        raise DataError("holds NaN or infinity", file=str(inputs[0]) if not isinstance(inputs[0], np.ndarray) else None)
    return names, x


def _row_names(n: int, where: str, alone: bool) -> list:
    """The names of an array's n images: their indices when it is the only input, else ``where[i]``."""
    return list(range(n)) if alone else [f"{where}[{i}]" for i in range(n)]


def _npz_images(item: Path, model, x_key: str) -> np.ndarray:
    from yamlnet.npzio import read_arrays

    x, = read_arrays(item, (x_key,), "input file")
    return _array_images(x, model, str(item))


def _array_images(x: np.ndarray, model, where: str) -> np.ndarray:
    """``x`` as a batch of the model's images: one image, or grey ones without their channel axis, too."""
    from yamlnet.errors import DataError

    if x.ndim == len(model.input_shape) and x.shape == model.input_shape or (
            x.ndim == 2 and model.input_shape[-1] == 1 and x.shape == model.input_shape[:2]):
        x = x[None]  # a single image
    if x.ndim == 3 and model.input_shape[-1] == 1:
        x = x[..., None]
    if x.shape[1:] != model.input_shape or not np.issubdtype(x.dtype, np.number):
        raise DataError(f"images are {x.shape[1:]} ({x.dtype}) but the model takes {model.input_shape}",
                        file=where)
    return x


def to_csv(names: list, classes: list[str], probs: np.ndarray, top: int | None = None) -> str:
    """One row per image: its name, predicted class index and name, then each class's probability
    (columns named by class); with ``top``, instead ``top`` rows per image: rank, class, probability."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    first = "index" if names and isinstance(names[0], int) else "file"
    if top:
        writer.writerow([first, "rank", "class", "probability"])
        for name, row in zip(names, probs):
            for rank, k in enumerate(np.argsort(-row, kind="stable")[:top], start=1):
                writer.writerow([name, rank, classes[k], f"{row[k]:.6f}"])
    else:
        writer.writerow([first, "predicted", "class", *classes])
        for name, row in zip(names, probs):
            k = int(row.argmax())
            writer.writerow([name, k, classes[k], *(f"{p:.6f}" for p in row)])
    return out.getvalue()


def render_report(report: dict) -> str:
    n = len(report["confusion"])
    classes = report.get("classes") or [str(k) for k in range(n)]
    width = max(5, len(str(max(max(row) for row in report["confusion"]))) + 1)
    label = max(5, *(len(name) for name in classes))
    lines = [f"samples: {report['samples']}   loss: {report['loss']:.4f}   accuracy: {report['accuracy']:.4f}", "",
             f"{'class':<{label}}  precision  recall"]
    fmt = lambda v: "     -" if v is None else f"{v:6.4f}"  # noqa: E731
    lines += [f"{name:<{label}}  {fmt(p):>9}  {fmt(r):>6}"
              for name, p, r in zip(classes, report["precision"], report["recall"])]
    widths = [max(width, len(name) + 1) for name in classes]
    lines += ["", "confusion matrix (rows: true class, columns: predicted class)",
              " " * label + "".join(f"{name:>{w}}" for name, w in zip(classes, widths))]
    lines += [f"{name:<{label}}" + "".join(f"{v:>{w}}" for v, w in zip(row, widths))
              for name, row in zip(classes, report["confusion"])]
    return "\n".join(lines)
