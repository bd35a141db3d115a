"""shapes: generated images of simple figures — the edges and strokes that first conv layers learn.

Ten classes, each drawn at a random position, size and colour over uniform noise:
0 vertical bar, 1 horizontal bar, 2 diagonal ╲, 3 diagonal ╱, 4 plus, 5 cross, 6 hollow square,
7 filled square, 8 circle (a ring), 9 triangle. Any n_H × n_W × n_C and any count; the same seed
gives the same images.
"""

from __future__ import annotations

import numpy as np

from yamlnet.data.registry import register_dataset

CLASSES = ("vertical bar", "horizontal bar", "diagonal \\", "diagonal /", "plus", "cross",
           "hollow square", "filled square", "circle", "triangle")
CHUNK = 2048  # images drawn at a time: bounds the temporaries


def _masks(kind: int, dy: np.ndarray, dx: np.ndarray, r: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Boolean (n, H, W) masks of figure ``kind``; dy, dx are offsets from each figure's centre."""
    ady, adx = np.abs(dy), np.abs(dx)
    inside = (ady <= r) & (adx <= r)
    vertical = (adx <= t / 2) & (ady <= r)
    horizontal = (ady <= t / 2) & (adx <= r)
    falling = (np.abs(dy - dx) <= t * 0.75) & inside
    rising = (np.abs(dy + dx) <= t * 0.75) & inside
    box = np.maximum(ady, adx)
    return [
        lambda: vertical,
        lambda: horizontal,
        lambda: falling,
        lambda: rising,
        lambda: vertical | horizontal,
        lambda: falling | rising,
        lambda: (box <= r) & (box > r - t),
        lambda: box <= r,
        lambda: np.abs(np.sqrt(dy * dy + dx * dx) - r) <= t / 2,
        lambda: inside & (adx <= (dy + r) / 2),
    ][kind]()


def generate(n: int, shape: tuple[int, int, int], seed: int, noise: float = 0.2):
    """``n`` images (n, n_H, n_W, n_C) float32 in 0..1 and their labels (n,) int64."""
    n_h, n_w, n_c = shape
    rng = np.random.default_rng([seed, 3])
    y = rng.integers(0, len(CLASSES), n)
    x = np.empty((n, n_h, n_w, n_c), dtype=np.float32)
    rows = np.arange(n_h, dtype=np.float32)[None, :, None]
    cols = np.arange(n_w, dtype=np.float32)[None, None, :]
    smallest = min(n_h, n_w)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        m = stop - start
        r = rng.uniform(0.25, 0.45, m).astype(np.float32) * (smallest - 1)  # half the figure's extent
        cy = rng.uniform(r, n_h - 1 - r)
        cx = rng.uniform(r, n_w - 1 - r)
        t = np.maximum(1.0, rng.uniform(0.08, 0.16, m) * smallest).astype(np.float32)
        colour = rng.uniform(0.6, 1.0, (m, n_c)).astype(np.float32)
        chunk = rng.uniform(0, noise, (m, n_h, n_w, n_c)).astype(np.float32)
        for kind in range(len(CLASSES)):
            idx = np.flatnonzero(y[start:stop] == kind)
            if len(idx) == 0:
                continue
            col = lambda v: v[idx, None, None].astype(np.float32)  # noqa: E731
            mask = _masks(kind, rows - col(cy), cols - col(cx), col(r), col(t))
            figure = mask[..., None] * colour[idx, None, None, :]
            chunk[idx] = np.maximum(chunk[idx], figure)
        x[start:stop] = chunk
    return x, y.astype(np.int64)


@register_dataset("shapes", n_classes=10, classes=CLASSES, count=lambda data, _: data["n_samples"] + data["n_test"],
                  description="generated figures (bars, diagonals, plus, cross, "
                  "squares, circle, triangle) of any size and count", keys={
    "n_samples": {"type": "integer", "minimum": 10, "default": 3000, "description": "shapes: how many images"},
    "n_test": {"type": "integer", "minimum": 0, "default": 0, "description": "shapes: how many more as a test set"},
    "noise": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.2,
              "description": "shapes: background noise, uniform in 0..noise"},
})
def load_shapes(data, input_shape, seed):
    x, y = generate(data["n_samples"] + data["n_test"], input_shape, seed, data["noise"])
    n = data["n_samples"]
    if data["n_test"]:
        return x[:n], y[:n], x[n:], y[n:]
    return x, y, None, None
