"""``yamlnet init``: a starter model file, and the JSON Schema beside it so that an editor completes
and checks the file as it is typed (the file's first line names the schema, by a relative path)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from yamlnet.config import build_schema
from yamlnet.config.builtin import builtin_models
from yamlnet.errors import ConfigError, DataError
from yamlnet.npzio import write_text_atomic

SCHEMA_NAME = "yamlnet.schema.json"

#: (n_H, n_W, n_C, classes) of the data sets whose images are known without a file; shapes draws any size
_KNOWN = {"digits": (8, 8, 1, 10), "shapes": (32, 32, 3, 10), "mnist": (28, 28, 1, 10)}


def write_schema(path: str | os.PathLike) -> Path:
    """The JSON Schema of model files, written to ``path`` (what ``yamlnet schema`` prints)."""
    path = Path(path)
    write_text_atomic(path, json.dumps(build_schema(), indent=2, ensure_ascii=False) + "\n")
    return path


def init(file: str | os.PathLike, *, from_model: str | None = None, dataset: str = "digits",
         data_path: str | None = None, schema: str | os.PathLike | None = None, force: bool = False,
         skip_bad: bool = False) -> list[Path]:
    """Write a starter model file at ``file`` — a copy of the built-in model ``from_model``, or a small
    conv net for ``dataset`` (``data_path`` for the data sets read from files; ``skip_bad``: a folder's
    unreadable images are left out, here and in training) — and the schema beside it (or at
    ``schema``). Returns the files written."""
    from yamlnet.plan import plan

    file = Path(file)
    if file.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"a model file ends in .yaml, got {file.name}", file=str(file))
    if file.exists() and not force:
        raise ConfigError("exists already; choose another name, or --force to overwrite it", file=str(file))
    schema_path = Path(schema) if schema is not None else file.parent / SCHEMA_NAME
    modeline = f"# yaml-language-server: $schema={Path(os.path.relpath(schema_path, file.parent or '.')).as_posix()}"
    if from_model is not None:
        models = builtin_models()
        if from_model.removesuffix(".yaml") not in models:
            raise ConfigError(f"--from {from_model}: no built-in model of that name; there are "
                              f"{', '.join(models)}")
        text = models[from_model.removesuffix(".yaml")].read_text(encoding="utf-8")
        lines = [line for line in text.splitlines() if "yaml-language-server" not in line]
        text = "\n".join([modeline, *lines]) + "\n"
        text = re.sub(r"(?m)^name: .*$", f"name: {file.stem}", text, count=1)
    else:
        # the file names its data relative to its own folder (how yamlnet reads paths in a model file)
        written_path = data_path and Path(os.path.relpath(os.path.abspath(data_path),
                                                          os.path.abspath(file.parent))).as_posix()
        text = _starter(file.stem, modeline, dataset, data_path, skip_bad, written_path)
    file.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(file, text)
    written = [file, write_schema(schema_path)]
    plan(file)  # what was written is a valid model (a bug here is yamlnet's, not the user's)
    return written


def _starter(name: str, modeline: str, dataset: str, data_path: str | None, skip_bad: bool = False,
             written_path: str | None = None) -> str:
    from yamlnet.data import DATASETS

    if dataset not in DATASETS:
        raise ConfigError(f"--dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")
    if "path" in DATASETS[dataset].required and not data_path:
        raise ConfigError(f"--dataset {dataset} needs --path (the {dataset} data to train on)")
    n_h, n_w, n_c, classes, why = _folder_shape(Path(data_path), skip_bad) if dataset == "folder" else \
        (*_known_shape(dataset, data_path), "")
    data = [f"  dataset: {dataset}"] + ([f"  path: {written_path or data_path}"] if data_path else [])
    if dataset == "folder" and skip_bad:
        data.append("  skip_bad: true                 # leave out images that cannot be read (one warning line)")
    called = f"{Path(data_path).resolve().name} (your images)" if dataset == "folder" else dataset
    if dataset == "shapes":
        data.append("  n_samples: 3000                # generated images")
    pools = sum(1 for level in (1, 2) if min(n_h, n_w) >= 4 * level)
    conv_layers = [
        "  - {name: conv1, type: conv2d, filters: 8, size: 3, padding: same, activation: relu}".ljust(88)
        + f"# 8 filters of 3 × 3 × {n_c}",
        "  - {name: pool1, type: maxpool2d, size: 2}".ljust(88) + "# halves n_H and n_W" if pools >= 1 else None,
        "  - {name: conv2, type: conv2d, filters: 16, size: 3, padding: same, activation: relu}".ljust(88)
        + "# channels grow with depth",
        "  - {name: pool2, type: maxpool2d, size: 2}" if pools >= 2 else None,
    ]
    return "\n".join([
        modeline,
        f"# A small convolutional network for {called} ({n_h} × {n_w} × {n_c} images, {classes} classes),",
        "# written by `yamlnet init`. `yamlnet summary` shows every shape; `yamlnet train` trains it.",
        f"name: {name}",
        f"input: [{n_h}, {n_w}, {n_c}]                # n_H, n_W, n_C of one image" + (f"; {why}" if why else ""),
        "layers:",
        *[line for line in conv_layers if line],
        f"  - {{name: fc, type: dense, units: {classes}}}".ljust(88) + "# one score per class",
        "  - {name: prediction, type: softmax}",
        "data:",
        *data,
        "  validation_split: 0.2          # held out to measure accuracy on images not trained on",
        *(["  augment: {flip: none, shift: 0}   # e.g. {flip: horizontal, shift: 2}: more variety, same classes"]
          if dataset == "folder" else []),
        "training:",
        "  epochs: 10",
        "  batch_size: 32",
        "  learning_rate: 0.01            # a hyperparameter; the weights are the parameters",
        "  optimizer: momentum",
        "  seed: 0                        # same file, same seed: the same run, bit for bit",
    ]) + "\n"


def _known_shape(dataset: str, data_path: str | None) -> tuple[int, int, int, int]:
    if dataset in _KNOWN:
        return _KNOWN[dataset]
    import numpy as np

    from yamlnet.npzio import read_arrays
    x, y = read_arrays(data_path, ("x", "y"), "data file")
    if x.ndim not in (3, 4) or y.ndim != 1 or not len(y):
        raise DataError("needs arrays x (N, H, W) or (N, H, W, C) and y (N,)", file=data_path)
    return (*x.shape[1:3], x.shape[3] if x.ndim == 4 else 1, int(np.max(y)) + 1)


def _folder_shape(folder: Path, skip_bad: bool = False, largest: int = 64) -> tuple[int, int, int, int, str]:
    """A folder of class folders, from a sample of its images: (n_H, n_W, n_C, classes, why). One size
    for all: that size (the longer side at most ``largest``); mixed sizes: a square of their median side,
    a multiple of 4, at most ``largest`` — ``why`` says so. RGB if any image is in colour. An image that
    cannot be read is an error naming it, unless ``skip_bad``."""
    from statistics import median

    from PIL import Image

    from yamlnet.data.folder import class_folders, image_files, skipped

    classes = class_folders(folder)
    sample = [path for files in map(image_files, classes) for path in files[:10]]
    sizes, channels, bad = [], 1, []
    for path in sample:
        try:
            with Image.open(path) as image:
                image.load()
                sizes.append(image.size)
                channels = max(channels, 1 if image.mode in ("1", "L", "I", "I;16", "F") else 3)
        except Exception as exc:  # Pillow raises many kinds for a damaged file
            if not skip_bad:
                raise DataError(f"cannot be read as an image ({type(exc).__name__}: {exc}); --skip-bad leaves "
                                f"such files out (data.skip_bad: true)", file=str(path)) from None
            bad.append(path)
    skipped(bad, str(folder))
    if not sizes:
        raise DataError("holds no images (PNG, JPEG, BMP, GIF, TIFF) in its class folders", file=str(folder))
    if len(set(sizes)) == 1:
        (width, height), = set(sizes)
        shrink = max(1.0, max(width, height) / largest)
        return max(1, round(height / shrink)), max(1, round(width / shrink)), channels, len(classes), ""
    side = median([side for size in sizes for side in size])
    square = min(largest, max(4, 4 * round(side / 4)))
    (w0, h0), (w1, h1) = min(sizes, key=lambda s: s[0] * s[1]), max(sizes, key=lambda s: s[0] * s[1])
    why = (f"the images differ in size ({w0} × {h0} to {w1} × {h1}): a square of their median side {side:g}, "
           f"{'capped at ' + str(largest) if square == largest and side > largest else 'a multiple of 4'}; "
           f"each is resized to it")
    return square, square, channels, len(classes), why
