"""Slow, obvious twins of the fast kernels: plain loops, written from the definitions."""

from __future__ import annotations

import numpy as np


def conv2d_naive(x, w, b, stride, pad, groups=1, dilation=1):
    """x (N, H, W, C), w (f, f, C / groups, K), b (K,) → (N, H', W', K), one output value at a time:
    filter k sees input channels [g·C/G, (g+1)·C/G) of group g = k // (K/G), at taps ``dilation`` apart."""
    n, h, wd, c = x.shape
    f, _, c_group, k = w.shape
    span = dilation * (f - 1) + 1
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    oh, ow = (h + 2 * pad - span) // stride + 1, (wd + 2 * pad - span) // stride + 1
    out = np.zeros((n, oh, ow, k), dtype=np.float64)
    for i in range(n):
        for r in range(oh):
            for q in range(ow):
                window = xp[i, r * stride:r * stride + span:dilation, q * stride:q * stride + span:dilation, :]
                for filt in range(k):
                    group = filt // (k // groups)
                    out[i, r, q, filt] = np.sum(window[:, :, group * c_group:(group + 1) * c_group]
                                                * w[:, :, :, filt]) + b[filt]
    return out


def pool_naive(x, f, stride, pad, mode, grad=None):
    """Max or mean pooling by loops; with ``grad``, also d/dx routing each window's gradient to
    its first maximum in row-major order (max) or evenly (mean, padded zeros counted)."""
    n, h, wd, c = x.shape
    fill = -np.inf if mode == "max" else 0.0
    xp = np.pad(x.astype(np.float64), ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=fill)
    oh, ow = (h + 2 * pad - f) // stride + 1, (wd + 2 * pad - f) // stride + 1
    out = np.zeros((n, oh, ow, c))
    dxp = np.zeros_like(xp)
    for i in range(n):
        for r in range(oh):
            for q in range(ow):
                for ch in range(c):
                    window = xp[i, r * stride:r * stride + f, q * stride:q * stride + f, ch]
                    if mode == "max":
                        out[i, r, q, ch] = window.max()
                        a, b_ = np.unravel_index(np.argmax(window), window.shape)
                        if grad is not None:
                            dxp[i, r * stride + a, q * stride + b_, ch] += grad[i, r, q, ch]
                    else:
                        out[i, r, q, ch] = window.mean()
                        if grad is not None:
                            dxp[i, r * stride:r * stride + f, q * stride:q * stride + f, ch] += grad[i, r, q, ch] / f / f
    dx = dxp[:, pad:pad + h, pad:pad + wd, :]
    return out, dx


def dense_naive(x, w, b):
    n = x.shape[0]
    flat = x.reshape(n, -1)
    out = np.zeros((n, w.shape[1]))
    for i in range(n):
        for u in range(w.shape[1]):
            out[i, u] = sum(flat[i, j] * w[j, u] for j in range(flat.shape[1])) + b[u]
    return out


def rotate_and_zoom_naive(image, angle, zoom):
    """One image (H, W, C) turned by ``angle`` (radians) and zoomed by ``zoom`` about its centre: for each
    output pixel, the bilinear mix of the four input pixels around where it comes from, 0 outside."""
    h, w, c = image.shape
    out = np.zeros_like(image, dtype=np.float64)

    def pixel(r, q):
        return image[r, q] if 0 <= r < h and 0 <= q < w else np.zeros(c)

    for i in range(h):
        for j in range(w):
            y, x = i - (h - 1) / 2, j - (w - 1) / 2
            sy = (np.cos(angle) * y - np.sin(angle) * x) / zoom + (h - 1) / 2
            sx = (np.sin(angle) * y + np.cos(angle) * x) / zoom + (w - 1) / 2
            if not (-1 <= sy <= h and -1 <= sx <= w):
                continue
            r, q = int(np.floor(sy)), int(np.floor(sx))
            fy, fx = sy - r, sx - q
            out[i, j] = ((1 - fy) * ((1 - fx) * pixel(r, q) + fx * pixel(r, q + 1))
                         + fy * ((1 - fx) * pixel(r + 1, q) + fx * pixel(r + 1, q + 1)))
    return out
