"""Array tricks behind the sliding-window layers. Their slow, obvious twins live in tests/reference.py.

All arrays are channels-last: ``xp`` is a padded batch (N, H_p, W_p, C).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

#: an im2col buffer larger than this is filled a slice of the batch at a time
MAX_COLS_BYTES = 256 << 20


def pad(x: np.ndarray, p: int, value: float = 0.0) -> np.ndarray:
    """(N, H, W, C) → (N, H + 2p, W + 2p, C); ``x`` itself when p is 0."""
    if p == 0:
        return x
    n, h, w, c = x.shape
    xp = np.full((n, h + 2 * p, w + 2 * p, c), value, dtype=x.dtype)
    xp[:, p:p + h, p:p + w, :] = x
    return xp


def unpad(xp: np.ndarray, p: int) -> np.ndarray:
    return xp if p == 0 else xp[:, p:-p, p:-p, :]


def windows(xp: np.ndarray, f: int, s: int, n_h: int, n_w: int) -> np.ndarray:
    """A read-only view (N, n_H, n_W, f, f, C) of every f × f window at stride s; no copy."""
    sn, sh, sw, sc = xp.strides
    return as_strided(xp, shape=(xp.shape[0], n_h, n_w, f, f, xp.shape[3]),
                      strides=(sn, s * sh, s * sw, sh, sw, sc), writeable=False)


def im2col(xp: np.ndarray, f: int, s: int, n_h: int, n_w: int) -> np.ndarray:
    """(N, H_p, W_p, C) → columns (N·n_H·n_W, f·f·C), ordered like ``W.reshape(f·f·C, K)``."""
    n, c = xp.shape[0], xp.shape[3]
    cols = np.empty((n, n_h, n_w, f, f, c), dtype=xp.dtype)
    np.copyto(cols, windows(xp, f, s, n_h, n_w))
    return cols.reshape(n * n_h * n_w, f * f * c)


def offset_view(xp: np.ndarray, i: int, j: int, s: int, n_h: int, n_w: int) -> np.ndarray:
    """The (N, n_H, n_W, C) slice of ``xp`` seen by kernel offset (i, j) of every window."""
    return xp[:, i:i + s * (n_h - 1) + 1:s, j:j + s * (n_w - 1) + 1:s, :]


def col2im_add(dcols: np.ndarray, dxp: np.ndarray, f: int, s: int, n_h: int, n_w: int) -> None:
    """Add columns (N·n_H·n_W, f·f·C) back into ``dxp`` (N, H_p, W_p, C): the adjoint of im2col.

    One strided add per kernel offset; windows that overlap add up, as the chain rule wants.
    """
    n, c = dxp.shape[0], dxp.shape[3]
    dwin = dcols.reshape(n, n_h, n_w, f, f, c)
    for i in range(f):
        for j in range(f):
            offset_view(dxp, i, j, s, n_h, n_w)[...] += dwin[:, :, :, i, j, :]


def batch_chunks(n: int, bytes_per_sample: int) -> list[tuple[int, int]]:
    """Split range(n) into (start, stop) slices whose im2col buffer stays under ``MAX_COLS_BYTES``."""
    per_chunk = max(1, MAX_COLS_BYTES // max(1, bytes_per_sample))
    return [(start, min(n, start + per_chunk)) for start in range(0, n, per_chunk)] or [(0, 0)]
