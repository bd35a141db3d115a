"""Augmentation of training batches: random flips, shifts and noise, drawn from the run's seed.

Whole-batch array operations (one gather for all shifts), never a loop over images; the generator
is the trainer's, saved in every checkpoint, so that ``--resume`` draws what an unbroken run draws.
"""

from __future__ import annotations

import numpy as np


class Augmenter:
    """``augment(x)`` for x (N, n_H, n_W, n_C) normalized images → a changed copy (or x itself when
    ``data.augment`` asks for nothing)."""

    def __init__(self, augment: dict, rng: np.random.Generator):
        self.flip, self.shift, self.noise = augment["flip"], augment["shift"], augment["noise"]
        self.rng = rng

    @property
    def active(self) -> bool:
        return self.flip != "none" or self.shift > 0 or self.noise > 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if not self.active:
            return x
        x = x.copy()
        n = len(x)
        if self.flip in ("horizontal", "both"):
            chosen = self.rng.random(n) < 0.5
            x[chosen] = x[chosen, :, ::-1]
        if self.flip in ("vertical", "both"):
            chosen = self.rng.random(n) < 0.5
            x[chosen] = x[chosen, ::-1]
        if self.shift:
            x = shift_images(x, self.rng.integers(-self.shift, self.shift + 1, (2, n)), self.shift)
        if self.noise:
            x += self.rng.standard_normal(x.shape, dtype=x.dtype) * x.dtype.type(self.noise)
        return x


def shift_images(x: np.ndarray, offsets: np.ndarray, limit: int) -> np.ndarray:
    """Each image i moved down by offsets[0, i] and right by offsets[1, i] pixels (|offset| ≤ limit),
    zeros where nothing moves in: the batch zero-padded once, then one gather for all of them."""
    n, n_h, n_w, _ = x.shape
    padded = np.pad(x, ((0, 0), (limit, limit), (limit, limit), (0, 0)))
    rows = np.arange(n_h)[None, :] + limit - offsets[0][:, None]  # (N, n_H)
    cols = np.arange(n_w)[None, :] + limit - offsets[1][:, None]  # (N, n_W)
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
