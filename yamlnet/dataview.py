"""``yamlnet data``: what the network will see — the data set's facts, and a grid of its images.

Images per class in each part, image size, value range before and after normalization, and a PNG
of samples with their class names (augmented as training would, with ``augmented``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from yamlnet.data import load_data
from yamlnet.data.augment import Augmenter
from yamlnet.data.stream import passes
from yamlnet.plan import plan


def describe(source, overrides=()) -> dict:
    """The facts of the data set of a model file, as JSON-ready data, and the loaded splits."""
    config, layers = plan(source, overrides)
    splits = load_data(config, layers[-1].output_shape[0])
    parts = {"training": splits.y[splits.train], "validation": splits.y[splits.val]}
    if splits.y_test is not None:
        parts["test"] = splits.y_test
    ranges = []  # (a pass at a time: the data may not fit in memory)
    for rows in passes(splits.train, splits.x.shape[1:]):
        normalized = splits.x[rows]
        raw = normalized * splits.scale + splits.shift
        ranges.append([raw.min(), raw.max(), normalized.min(), normalized.max()])
    ranges = np.array(ranges, dtype=np.float64)
    return {
        "dataset": config["data"]["dataset"],
        "image": list(config["input"]),
        "classes": splits.classes,
        "counts": {part: np.bincount(labels, minlength=len(splits.classes)).tolist() for part, labels in parts.items()},
        "raw_range": [float(ranges[:, 0].min()), float(ranges[:, 1].max())],
        "normalized_range": [float(ranges[:, 2].min()), float(ranges[:, 3].max())],
        "normalization": config["data"]["normalization"],
    }, config, splits


def render(facts: dict) -> str:
    parts = list(facts["counts"])
    width = max(5, *(len(name) for name in facts["classes"]))
    lines = [f"data set: {facts['dataset']}    images: {' × '.join(map(str, facts['image']))}    "
             f"classes: {len(facts['classes'])}",
             f"values: {facts['raw_range'][0]:g} .. {facts['raw_range'][1]:g} as read; "
             f"{facts['normalized_range'][0]:.3g} .. {facts['normalized_range'][1]:.3g} after "
             f"normalization ({facts['normalization']}, from the training part)", "",
             f"{'class':<{width}}" + "".join(f"  {part:>10}" for part in parts)]
    for k, name in enumerate(facts["classes"]):
        lines.append(f"{name:<{width}}" + "".join(f"  {facts['counts'][part][k]:>10,}" for part in parts))
    lines.append(f"{'total':<{width}}" + "".join(f"  {sum(facts['counts'][part]):>10,}" for part in parts))
    return "\n".join(lines)


def grid(config: dict, splits, path: Path, augmented: bool = False, per_class: int = 6) -> Path:
    """Up to ``per_class`` training images of each class, a row per class, named; augmented as
    training would (the first epoch's draws) when ``augmented``."""
    from yamlnet.figures import pyplot, save

    plt = pyplot()
    train = splits.train
    rows = [train[splits.y[train] == k][:per_class] for k in range(len(splits.classes))]
    augment = Augmenter.of(config["data"]["augment"], np.random.default_rng([config["training"]["seed"], 3]), splits)
    figure, axes = plt.subplots(len(rows), per_class, figsize=(1.3 * per_class + 1.2, 1.3 * len(rows) + 0.4),
                                squeeze=False)
    for k, (row, name) in enumerate(zip(rows, splits.classes)):
        images = splits.x[row]
        if augmented and len(images):
            images = augment(images)
        for j, axis in enumerate(axes[k]):
            axis.set_xticks([])
            axis.set_yticks([])
            for spine in axis.spines.values():
                spine.set_visible(False)
            if j < len(images):
                image = images[j]
                low, high = image.min(), image.max()
                shown = (image - low) / (high - low) if high > low else image * 0
                axis.imshow(shown[..., 0] if shown.shape[-1] == 1 else shown, cmap="gray", vmin=0, vmax=1)
        axes[k][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    figure.suptitle(f"{config['name']}: {config['data']['dataset']}" + (" (augmented)" if augmented else ""),
                    fontsize=9)
    return save(figure, path)
