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
