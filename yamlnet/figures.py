"""matplotlib, for every picture yamlnet draws: imported only when one is drawn, on the Agg backend."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """matplotlib's pyplot on the Agg backend (no screen needed), imported only when drawing."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save(figure, path: Path, dpi: int = 110, tight: bool = True) -> Path:
    """Write ``figure`` to ``path`` as its suffix says (PNG, SVG), then close it; laid out tight unless
    it places its own axes (a colour bar beside a grid)."""
    plt = pyplot()
    path = Path(path)
    if tight:
        figure.tight_layout()
    figure.savefig(path, dpi=dpi, format=path.suffix.lstrip(".").lower() or "png")
    plt.close(figure)
    return path


def draw_learning_curves(metrics: list[dict], target, title: str = "learning curves"):
    """Loss and accuracy by epoch, training and validation, from metrics.jsonl's records: to a file
    (``target`` a path) or as PNG into a binary stream (a notebook's display)."""
    plt = pyplot()
    epochs = [m["epoch"] for m in metrics]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, key in zip(axes, ("loss", "accuracy")):
        axis.plot(epochs, [m[key] for m in metrics], marker="o", label="train")
        if metrics[0].get(f"val_{key}") is not None:
            axis.plot(epochs, [m[f"val_{key}"] for m in metrics], marker="o", label="validation")
        axis.set_xlabel("epoch")
        axis.set_ylabel(key)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    if isinstance(target, (str, Path)):
        return save(figure, Path(target))
    figure.tight_layout()
    figure.savefig(target, format="png", dpi=80)
    plt.close(figure)
    return target
