"""``yamlnet plot``: PNGs of a run (learning curves, first-layer filters, confusion matrix) or of a
sweep (its metric against each swept key). matplotlib is imported here only, when drawing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from yamlnet import runs
from yamlnet.figures import draw_learning_curves, pyplot, save
from yamlnet.metrics import best_value
from yamlnet.errors import DataError


def plot(path) -> list[Path]:
    """Draw the PNGs of a run or sweep directory into it; returns the files written."""
    path = Path(path)
    if (path / "sweep.json").is_file():
        return [plot_sweep(path)]
    if not (path / runs.CONFIG).is_file():
        raise DataError("is neither a run directory (config.yaml) nor a sweep directory (sweep.json)", file=str(path))
    written = [learning_curves(path)]
    filters = first_filters(path)
    if filters is not None:
        written.append(filters)
    written.append(confusion(path))
    return written


def learning_curves(run_dir: Path) -> Path:
    metrics = runs.read_metrics(run_dir)
    if not metrics:
        raise DataError("has no finished epoch to plot (metrics.jsonl is empty)", file=str(run_dir))
    return draw_learning_curves(metrics, run_dir / "learning_curves.png", f"learning curves — {run_dir}")


def first_filters(run_dir: Path) -> Path | None:
    """The first conv layer's filters as small grey images: the mean over input channels (the
    pattern a filter finds in brightness), each scaled symmetrically about zero — mid grey is 0,
    light is positive, dark negative — so that an edge detector shows as a light side beside a dark one."""
    from yamlnet.evaluate import load_trained
    plt = pyplot()
    model = load_trained(run_dir)
    conv = next((layer for layer in model.layers if layer.params.get("W") is not None and layer.params["W"].ndim == 4),
                None)  # the first layer with filters (f, f, C, K)
    if conv is None:
        return None
    weights = conv.params["W"].astype(np.float64)  # (f, f, C, K)
    count = weights.shape[3]
    columns = int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(1.4 * columns, 1.4 * rows + 0.5), squeeze=False)
    for k, axis in enumerate(axes.flat):
        axis.axis("off")
        if k >= count:
            continue
        image = weights[:, :, :, k].mean(axis=2)
        extent = np.abs(image).max() or 1.0
        axis.imshow(image, cmap="gray", vmin=-extent, vmax=extent, interpolation="nearest")
        axis.set_title(str(k), fontsize=8)
    figure.suptitle(f"{conv.name}: {count} filters of {weights.shape[0]} × {weights.shape[1]} × {weights.shape[2]}")
    return save(figure, run_dir / "filters.png")


def confusion(run_dir: Path) -> Path:
    from yamlnet.evaluate import evaluate
    plt = pyplot()
    report = evaluate(run_dir)
    matrix = np.array(report["confusion"])
    figure, axis = plt.subplots(figsize=(6.5, 5.5))
    image = axis.imshow(matrix, cmap="Blues")
    figure.colorbar(image)
    for (i, j), value in np.ndenumerate(matrix):
        if value:
            axis.text(j, i, str(value), ha="center", va="center", fontsize=7,
                      color="white" if value > matrix.max() / 2 else "black")
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    axis.set_xticks(range(len(matrix)), report["classes"], rotation=45, ha="right", fontsize=7)
    axis.set_yticks(range(len(matrix)), report["classes"], fontsize=7)
    axis.set_title(f"confusion matrix, validation part (accuracy {report['accuracy']:.4f})")
    return save(figure, run_dir / "confusion.png")


def plot_sweep(sweep_dir: Path) -> Path:
    """The best value of the sweep's metric against each swept key, one panel per key."""
    plt = pyplot()
    spec = json.loads((sweep_dir / "sweep.json").read_text(encoding="utf-8"))
    metric = spec["sweep"]["metric"]
    jobs = spec["runs"]
    keys = list(jobs[0]["combination"]) if jobs else []
    results = [(job["combination"], best_value(runs.read_metrics(Path(job["out"])), metric), Path(job["out"]).name)
               for job in jobs]
    results = [result for result in results if result[1] is not None]
    figure, axes = plt.subplots(1, max(1, len(keys)), figsize=(5 * max(1, len(keys)), 4), squeeze=False)
    for axis, key in zip(axes.flat, keys):
        values = [combination[key] for combination, _, _ in results]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        labels = sorted({json.dumps(v) for v in values}) if not numeric else None
        xs = values if numeric else [labels.index(json.dumps(v)) for v in values]
        ys = [value for _, value, _ in results]
        axis.scatter(xs, ys)
        at_point: dict = {}  # runs that land on the same point share one label
        for x, y, (_, _, run) in zip(xs, ys, results):
            at_point.setdefault((x, y), []).append(run)
        for (x, y), names in at_point.items():
            axis.annotate(", ".join(names), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        scale = axis_scale(values)
        if scale == "log":  # learning rates and the like: a factor of ten is one step
            axis.set_xscale("log")
            axis.set_xticks(sorted(set(values)))
            axis.set_xticklabels([f"{v:g}" for v in sorted(set(values))])
            axis.minorticks_off()
        elif scale == "whole":
            axis.set_xticks(sorted(set(values)))  # filters, sizes: whole-number ticks
        if labels:
            axis.set_xticks(range(len(labels)))
            axis.set_xticklabels(labels)
        axis.set_xlabel(key)
        axis.set_ylabel(f"best {metric}")
        axis.grid(alpha=0.3)
    figure.suptitle(f"sweep {sweep_dir}")
    return save(figure, sweep_dir / f"sweep_{metric}.png")


def axis_scale(values: list) -> str:
    """How a swept key's axis is drawn: "log" for numbers spanning a factor of ten or more, "whole" for
    whole numbers, "linear" for other numbers, "labels" for anything else (names, lists, mappings)."""
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "labels"
    if len(set(values)) > 1 and min(values) > 0 and max(values) / min(values) >= 10:
        return "log"
    return "whole" if all(isinstance(v, int) for v in values) else "linear"
