"""Augmentation of training batches, drawn from the run's seed: flips, rotation and zoom, shifts and
random crops, ColorJitter's brightness, contrast, saturation and hue, cutout and noise.

Whole-batch array operations (one gather for every image's rotation, zoom and shift, one mask for
all cutouts), never a loop over images; the generator is the trainer's, saved in every
checkpoint, so that ``--resume`` draws what an unbroken run draws. The images come normalized; the
colour changes are made on the raw pixel values (as torchvision's on 0..1 images), clipped to the raw
range of the training data, and normalized again. They run in a fixed order: brightness, contrast,
saturation, hue (torchvision draws a random order for each image).
"""

from __future__ import annotations

import math

import numpy as np

#: torchvision's rgb_to_grayscale weights
GREY = np.array([0.2989, 0.587, 0.114])


class Augmenter:
    """``augment(x)`` for x (N, n_H, n_W, n_C) normalized images → a changed copy (or x itself when
    ``data.augment`` asks for nothing). ``shift``, ``scale`` (n_C,): the normalization, raw = x · scale
    + shift; ``raw_range``: the lowest and highest raw value of the training data (colour changes are
    clipped to it)."""

    def __init__(self, augment: dict, rng: np.random.Generator, shift=None, scale=None, raw_range=(None, None)):
        self.settings = augment
        self.rng = rng
        self.shift, self.scale, self.raw_range = shift, scale, raw_range

    @classmethod
    def of(cls, augment: dict, rng: np.random.Generator, splits) -> "Augmenter":
        """The augmenter of ``data.augment`` for the prepared data ``splits`` (its normalization, and the
        raw range of its training part where colours change)."""
        colours = any(augment.get(key, 0) for key in ("brightness", "contrast", "saturation", "hue"))
        limits = raw_range(splits.x, splits.train, splits.shift, splits.scale) if colours else (None, None)
        return cls(augment, rng, splits.shift, splits.scale, limits)

    def _get(self, key, default):
        return self.settings.get(key, default)

    @property
    def active(self) -> bool:
        return any(self._get(key, 0) for key in ("shift", "noise", "rotate", "crop", "brightness", "contrast",
                                                 "saturation", "hue", "cutout")) \
            or self._get("flip", "none") != "none" or list(self._get("scale", [1, 1])) != [1, 1]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if not self.active:
            return x
        x = x.copy()
        n = len(x)
        flip = self._get("flip", "none")
        if flip in ("horizontal", "both"):
            chosen = self.rng.random(n) < 0.5
            x[chosen] = x[chosen, :, ::-1]
        if flip in ("vertical", "both"):
            chosen = self.rng.random(n) < 0.5
            x[chosen] = x[chosen, ::-1]
        degrees, (low, high) = self._get("rotate", 0), self._get("scale", [1, 1])
        turned = degrees or (low, high) != (1, 1)
        if turned:
            angles, zooms = np.radians(self.rng.uniform(-degrees, degrees, n)), self.rng.uniform(low, high, n)
        # shift and crop (a crop of the padded image is a shift with zeros moving in) move the image by the
        # sum of their draws: one gather for all of them, or part of the rotation's resampling
        offsets, limit = np.zeros((2, n), dtype=np.int64), 0
        for key in ("shift", "crop"):
            if self._get(key, 0):
                offsets += self.rng.integers(-self._get(key, 0), self._get(key, 0) + 1, (2, n))
                limit += self._get(key, 0)
        if turned:
            x = rotate_and_zoom(x, angles, zooms, offsets)
        elif limit:
            x = shift_images(x, offsets, limit)
        if any(self._get(key, 0) for key in ("brightness", "contrast", "saturation", "hue")):
            x = self._colour(x)
        if self._get("cutout", 0):
            x = cut_out(x, self.rng.integers(0, x.shape[1], n), self.rng.integers(0, x.shape[2], n),
                        self._get("cutout", 0))
        if self._get("noise", 0):
            x += self.rng.standard_normal(x.shape, dtype=x.dtype) * x.dtype.type(self._get("noise", 0))
        return x

    def _factors(self, key: str, n: int) -> np.ndarray:
        amount = self._get(key, 0)
        return self.rng.uniform(max(0.0, 1 - amount), 1 + amount, n)[:, None, None, None]

    def _colour(self, x: np.ndarray) -> np.ndarray:
        """ColorJitter's changes on the raw values, each clipped to the raw range as torchvision clips to
        0..1, then normalized again (in place: a batch is changed in a few whole-array passes)."""
        n = len(x)
        raw = x * self.scale + self.shift if self.scale is not None else x
        low, high = self.raw_range

        def clip(values):
            return values if low is None else np.clip(values, low, high, out=values)

        if self._get("brightness", 0):  # blend with black
            raw *= self._factors("brightness", n).astype(raw.dtype)
            clip(raw)
        if self._get("contrast", 0):  # blend with the image's mean grey
            factors = self._factors("contrast", n).astype(raw.dtype)
            mean = grey(raw).mean(axis=(1, 2, 3), keepdims=True)
            raw *= factors
            raw += (1 - factors) * mean
            clip(raw)
        if self._get("saturation", 0):  # blend with each pixel's grey
            factors = self._factors("saturation", n).astype(raw.dtype)
            raw = clip(_blend(raw, grey(raw), factors))
        if self._get("hue", 0):
            raw = turn_hue(raw, self.rng.uniform(-self._get("hue", 0), self._get("hue", 0), n))
        if self.scale is not None:
            raw -= self.shift
            raw /= self.scale
        return raw.astype(x.dtype, copy=False)


def _blend(image: np.ndarray, other: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """torchvision's _blend: factor · image + (1 − factor) · other."""
    return factor * image + (1 - factor) * other


def grey(x: np.ndarray) -> np.ndarray:
    """(N, H, W, C) → (N, H, W, 1): the image itself for one channel, torchvision's luma weights for RGB."""
    return x if x.shape[3] == 1 else (x @ GREY.astype(x.dtype))[..., None]


def turn_hue(x: np.ndarray, turns: np.ndarray) -> np.ndarray:
    """RGB images (N, H, W, 3) with each image's hue turned by ``turns`` (N,) of the colour circle
    (HSV, as torchvision's adjust_hue)."""
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    high, low = x.max(axis=3), x.min(axis=3)
    chroma = high - low
    safe = np.where(chroma == 0, 1, chroma)
    hue = np.where(high == r, ((g - b) / safe) % 6, np.where(high == g, (b - r) / safe + 2, (r - g) / safe + 4)) / 6
    hue = np.where(chroma == 0, 0, hue)
    hue = (hue + turns[:, None, None]) % 1
    # back from (hue, chroma, value): each channel k at (5, 3, 1) + 6·hue, as the usual formula writes it
    k = (np.array([5, 3, 1]) + 6 * hue[..., None]) % 6
    return high[..., None] - chroma[..., None] * np.clip(np.minimum(k, 4 - k), 0, 1)


def rotate_and_zoom(x: np.ndarray, angles: np.ndarray, zooms: np.ndarray, offsets: np.ndarray | None = None) -> np.ndarray:
    """Each image i turned by angles[i] (radians) and zoomed by zooms[i] about its centre, then moved down
    by offsets[0, i] and right by offsets[1, i] pixels; bilinear, 0 where nothing comes in: the batch
    padded by a border of zeros (so that edges fade as into zeros), flattened, and the four neighbours
    of every output pixel taken by one flat index each."""
    n, h, w, c = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))).reshape(-1, c)
    real = x.dtype.type  # coordinates in the images' precision: float32 is plenty for pixels, float64 for checks
    ys, xs = np.mgrid[0:h, 0:w].astype(x.dtype)
    ys, xs = ys - real((h - 1) / 2), xs - real((w - 1) / 2)
    if offsets is not None:  # (N, H, W): where each output pixel was before the move
        ys = ys - offsets[0][:, None, None].astype(x.dtype)
        xs = xs - offsets[1][:, None, None].astype(x.dtype)
    cos = (np.cos(angles) / zooms).astype(x.dtype)[:, None, None]
    sin = (np.sin(angles) / zooms).astype(x.dtype)[:, None, None]
    src_y = cos * ys - sin * xs + real((h - 1) / 2 + 1)  # (N, H, W), in the padded batch
    src_x = sin * ys + cos * xs + real((w - 1) / 2 + 1)
    inside = (src_y >= 0) & (src_y <= h + 1) & (src_x >= 0) & (src_x <= w + 1)
    y0 = np.clip(np.floor(src_y), 0, h).astype(np.int64)
    x0 = np.clip(np.floor(src_x), 0, w).astype(np.int64)
    fy = np.clip(src_y - y0, 0, 1).reshape(-1, 1).astype(x.dtype)
    fx = np.clip(src_x - x0, 0, 1).reshape(-1, 1).astype(x.dtype)
    row = w + 2
    corner = (np.arange(n)[:, None, None] * ((h + 2) * row) + y0 * row + x0).reshape(-1)
    top = padded[corner] * (1 - fx) + padded[corner + 1] * fx
    bottom = padded[corner + row] * (1 - fx) + padded[corner + row + 1] * fx
    mixed = (top * (1 - fy) + bottom * fy) * inside.reshape(-1, 1)
    return mixed.reshape(x.shape).astype(x.dtype, copy=False)


def shift_images(x: np.ndarray, offsets: np.ndarray, limit: int) -> np.ndarray:
    """Each image i moved down by offsets[0, i] and right by offsets[1, i] pixels (|offset| ≤ limit),
    zeros where nothing moves in: the batch zero-padded once, then one gather for all of them."""
    n, n_h, n_w, _ = x.shape
    padded = np.pad(x, ((0, 0), (limit, limit), (limit, limit), (0, 0)))
    rows = np.arange(n_h)[None, :] + limit - offsets[0][:, None]  # (N, n_H)
    cols = np.arange(n_w)[None, :] + limit - offsets[1][:, None]  # (N, n_W)
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def cut_out(x: np.ndarray, rows: np.ndarray, cols: np.ndarray, size: int) -> np.ndarray:
    """Each image i with the size × size square centred at (rows[i], cols[i]) — clipped at the edges —
    set to 0 (DeVries and Taylor's cutout), by one mask for the batch."""
    h, w = x.shape[1:3]
    top, left = rows - size // 2, cols - size // 2
    in_rows = (np.arange(h)[None, :] >= top[:, None]) & (np.arange(h)[None, :] < top[:, None] + size)
    in_cols = (np.arange(w)[None, :] >= left[:, None]) & (np.arange(w)[None, :] < left[:, None] + size)
    x *= ~(in_rows[:, :, None] & in_cols[:, None, :])[..., None]
    return x


def raw_range(x: np.ndarray, indices: np.ndarray, shift: np.ndarray, scale: np.ndarray) -> tuple[float, float]:
    """The lowest and highest raw value (x · scale + shift) of the images ``indices``, a slice at a time."""
    from yamlnet.data.stream import passes

    low, high = math.inf, -math.inf
    for rows in passes(indices, x.shape[1:]):
        raw = x[rows] * scale + shift
        low, high = min(low, float(raw.min())), max(high, float(raw.max()))
    return low, high
