"""Measuring a model on data: loss, accuracy, per-class precision and recall, confusion matrix."""

from __future__ import annotations

import numpy as np

BATCH = 512  # samples gathered from the data at a time (the model then runs them in smaller batches)


def predict(model, x: np.ndarray, indices: np.ndarray | None = None) -> np.ndarray:
    """Class probabilities (n, n_classes) for ``x[indices]`` (all of ``x`` if None), a batch at a time."""
    n = len(x) if indices is None else len(indices)
    out = []
    for start in range(0, n, BATCH):
        chunk = slice(start, start + BATCH)
        out.append(model.predict_proba(x[chunk] if indices is None else x[indices[chunk]]))
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]), model.dtype)


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



def load_trained(path) -> tuple:
    """(model, shift, scale) from a run directory or a model ``.npz``; raw inputs are normalized
    as (x − shift) / scale, with the statistics the run computed from its training part."""
    from yamlnet import runs
    from yamlnet.model import load_model

    model = load_model(runs.model_file(path))
    return (model, *model.normalization)


def evaluate(path, data: str | None = None, *, split: str = "validation", x_key: str = "x",
             y_key: str = "y") -> dict:
    """Loss, accuracy, per-class precision and recall and the confusion matrix of a trained model,
    on its run's ``split`` ("validation", rebuilt from the seed, or the data set's separate "test"
    set) or on the arrays of ``data`` (an .npz)."""
    from yamlnet.data import DATASETS, check_arrays, load_data
    from yamlnet.data.npz import read_xy
    from yamlnet.errors import DataError

    model, shift, scale = load_trained(path)
    if data is None:
        splits = load_data(model.config, model.output_shape[0], dtype=model.dtype)
        if split == "test":
            if splits.x_test is None:
                raise DataError("the run's data set has no separate test set (data.test_path for npz, "
                                "data.n_test for shapes, the t10k files for mnist); pass --data FILE.npz",
                                file=str(path))
            x, y = splits.x_test, splits.y_test
        elif len(splits.val) == 0:
            raise DataError("the run has no validation part (validation_split is 0); pass --data FILE.npz",
                            file=str(path))
        else:
            x, y = splits.x[splits.val], splits.y[splits.val]
    else:
        x, y = read_xy(data, x_key, y_key)
        x, y = check_arrays(x, y, model.input_shape, model.output_shape[0], DATASETS["npz"], str(data),
                            model.dtype)
        x = (x - shift) / scale
    return report(predict(model, x), y)


def predict_file(path, inputs: str, *, x_key: str = "x") -> np.ndarray:
    """Class probabilities (N, n_classes) of a trained model for the images ``x_key`` of ``inputs``."""
    from yamlnet.errors import DataError
    from yamlnet.npzio import read_arrays

    model, shift, scale = load_trained(path)
    x, = read_arrays(inputs, (x_key,), "input file")
    if x.ndim == len(model.input_shape) and x.shape == model.input_shape or (
            x.ndim == 2 and model.input_shape[-1] == 1 and x.shape == model.input_shape[:2]):
        x = x[None]  # a single image
    if x.ndim == 3 and model.input_shape[-1] == 1:
        x = x[..., None]
    if x.shape[1:] != model.input_shape or not np.issubdtype(x.dtype, np.number):
        raise DataError(f"images are {x.shape[1:]} ({x.dtype}) but the model takes {model.input_shape}",
                        file=str(inputs))
    x = x.astype(model.dtype)
    if not np.all(np.isfinite(x)):
        raise DataError("holds NaN or infinity", file=str(inputs))
    return predict(model, (x - shift) / scale)


def to_csv(probs: np.ndarray) -> str:
    """One row per image: index, predicted class, then the probability of each class."""
    header = "index,predicted," + ",".join(f"p{k}" for k in range(probs.shape[1]))
    rows = [f"{i},{int(row.argmax())}," + ",".join(f"{p:.6f}" for p in row) for i, row in enumerate(probs)]
    return "\n".join([header, *rows]) + "\n"


def render_report(report: dict) -> str:
    n = len(report["confusion"])
    width = max(5, len(str(max(max(row) for row in report["confusion"]))) + 1)
    lines = [f"samples: {report['samples']}   loss: {report['loss']:.4f}   accuracy: {report['accuracy']:.4f}", "",
             "class  precision  recall"]
    fmt = lambda v: "     -" if v is None else f"{v:6.4f}"  # noqa: E731
    lines += [f"{k:>5}  {fmt(p):>9}  {fmt(r):>6}" for k, (p, r) in enumerate(zip(report["precision"], report["recall"]))]
    lines += ["", "confusion matrix (rows: true class, columns: predicted)",
              "     " + "".join(f"{k:>{width}}" for k in range(n))]
    lines += [f"{k:>5}" + "".join(f"{v:>{width}}" for v in row) for k, row in enumerate(report["confusion"])]
    return "\n".join(lines)
