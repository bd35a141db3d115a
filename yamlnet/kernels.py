"""Array tricks behind the sliding-window layers. Their slow, obvious twins live in tests/reference.py.

All arrays are channels-last: ``xp`` is a padded batch (N, H_p, W_p, C).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

#: while training, a layer keeps its im2col columns for the weight gradient up to this size (per
#: shard); past it, backward builds them again a cache-sized slice at a time. Kept columns that
#: overflow the cache cost more than building them twice: they are written to memory and read back
#: at memory speed (VGG's 32 × 32 × 16 layer, 19 MB of columns: forward + backward 18.1 → 11.8 ms;
#: 3.5–4.7 MB: 1.5–2.6 kept against 1.9–3.7 rebuilt; 9.2–9.4 MB: even)
KEEP_COLS_BYTES = 12 << 20
#: columns are built and multiplied a slice of the batch at a time, each slice about this large,
#: so that the multiply reads them from cache rather than memory (1.6× faster for the lecture net).
#: With shards in processes 2 MB beats 4 MB (best while they were threads): in alternating fresh
#: processes, both orders, resnet_small and vgg 1.04–1.14× in training, vgg and cifar 1.05–1.14× at inference
CACHE_BYTES = 2 << 20


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


def windows(xp: np.ndarray, f: int, s: int, n_h: int, n_w: int, d: int = 1) -> np.ndarray:
    """A read-only view (N, n_H, n_W, f, f, C) of every f × f window at stride s, its taps d apart; no copy."""
    sn, sh, sw, sc = xp.strides
    return as_strided(xp, shape=(xp.shape[0], n_h, n_w, f, f, xp.shape[3]),
                      strides=(sn, s * sh, s * sw, d * sh, d * sw, sc), writeable=False)


def im2col(xp: np.ndarray, f: int, s: int, n_h: int, n_w: int, out: np.ndarray | None = None) -> np.ndarray:
    """(N, H_p, W_p, C) → columns (N·n_H·n_W, f·f·C), ordered like ``W.reshape(f·f·C, K)``.

    ``out`` (a buffer of that many elements) is filled if given. The columns come in whichever
    memory order copies faster — NumPy's copy loops run along the innermost contiguous stretch:
    - row-major: one copy from the window view; the stretch is a window row, f·C values;
    - column-major (a transposed view, which matrix multiplies take as they are): the input made
      channel-first, then one copy per kernel offset (i, j); the stretch is an output row, n_W
      values. This wins for the first layers, where C is 1 or 3. At stride 1, the input is first
      copied shifted by every column offset j, (f, C, N, H_p, n_W); then the blocks of a kernel row
      i are one copy of whole rows, n_H·n_W values at a stretch (LeNet's first layer: 1.6× faster;
      f + 1 copies instead of f², which matters when shards run side by side: each NumPy call
      holds the GIL).
    """
    n, c = xp.shape[0], xp.shape[3]
    size = n * n_h * n_w * f * f * c
    buffer = np.empty(size, dtype=xp.dtype) if out is None else out.reshape(size)
    if n_w > f * c:
        cols_t = buffer.reshape(f, f, c, n, n_h, n_w)
        # channel-first first (one small copy), so that every offset's copy runs along contiguous rows
        xp_c = xp.transpose(3, 0, 1, 2) if c == 1 else np.ascontiguousarray(xp.transpose(3, 0, 1, 2))
        if s == 1:  # shifted[j] = xp_c[:, :, :, j:j + n_W], all in one copy
            shifted = np.empty((f, c, n, xp.shape[1], n_w), dtype=xp.dtype)
            np.copyto(shifted, as_strided(xp_c, shape=shifted.shape, strides=(xp_c.strides[3], *xp_c.strides),
                                          writeable=False))
        for i in range(f):
            if s == 1:  # every j at once
                np.copyto(cols_t[i], shifted[:, :, :, i:i + n_h])
                continue
            for j in range(f):
                np.copyto(cols_t[i, j], xp_c[:, :, i:i + s * (n_h - 1) + 1:s, j:j + s * (n_w - 1) + 1:s])
        return cols_t.reshape(f * f * c, n * n_h * n_w).T
    cols = buffer.reshape(n, n_h, n_w, f, f, c)
    np.copyto(cols, windows(xp, f, s, n_h, n_w))
    return cols.reshape(n * n_h * n_w, f * f * c)


#: window positions (a, b) of a 2 × 2 pool, in the row-major order its ties are broken in
POOL_WINDOW_POSITIONS = ((0, 0), (0, 1), (1, 0), (1, 1))


def im2col_by_window_position(xp: np.ndarray, f: int, n_h: int, n_w: int, out: np.ndarray) -> np.ndarray:
    """The stride-1 im2col columns of the conv outputs a 2 × 2 / 2 max-pool reads, in four blocks by
    position (a, b) in the pooling window: (4, N·n_h·n_w, f·f·C), block 2a + b holding the outputs
    at (2h + a, 2w + b) for h < n_h, w < n_w (the pool's output size), each ordered like
    ``im2col``'s. ``out`` holds 4·N·n_h·n_w·f·f·C values.

    Where a window row is short (``short_window_rows``) the blocks are column-major: the input is
    first split by row parity and shifted by each column offset b + j, (C, N, ⌈H_p / 2⌉, n_w)
    each; then every block's (i, j) part is a run of whole rows, n_h·n_w values, and one copy per
    kernel row i fills all four blocks (few NumPy calls: shards run side by side, and each call
    takes the GIL).
    """
    n, c = xp.shape[0], xp.shape[3]
    if not short_window_rows(f, c):
        cols = out.reshape(4, n, n_h, n_w, f, f, c)
        for block, (a, b) in zip(cols, POOL_WINDOW_POSITIONS):
            np.copyto(block, windows(xp[:, a:, b:], f, 2, n_h, n_w))
        return cols.reshape(4, n * n_h * n_w, f * f * c)
    xp_c = xp.transpose(3, 0, 1, 2) if c == 1 else np.ascontiguousarray(xp.transpose(3, 0, 1, 2))
    half = (xp.shape[1] + 1) // 2
    shifted = np.empty((2, f + 1, c, n, half, n_w), dtype=xp.dtype)  # [row parity, column offset b + j]
    for parity in range(2):
        rows = xp_c[:, :, parity::2]
        by_offset = as_strided(rows, shape=(f + 1, *rows.shape[:3], n_w),
                               strides=(rows.strides[3], *rows.strides[:3], 2 * rows.strides[3]), writeable=False)
        np.copyto(shifted[parity, :, :, :, :rows.shape[2]], by_offset)
    cols_t = out.reshape(2, 2, f, f, c, n, n_h, n_w)  # [a, b, i, j, …]
    step = shifted.strides
    for i in range(f):
        # rows a + i + 2h: row parity (a + i) % 2, from row (a + i) // 2 of it — a fixed step from
        # a = 0 to a = 1, so both a, both b and every j are one strided view
        a_step = ((i + 1) % 2 - i % 2) * step[0] + ((i + 1) // 2 - i // 2) * step[4]
        source = shifted[i % 2, :, :, :, i // 2:i // 2 + n_h]
        np.copyto(cols_t[:, :, i], as_strided(source, shape=(2, 2, f, c, n, n_h, n_w),
                                               strides=(a_step, step[1], *source.strides), writeable=False))
    return cols_t.reshape(4, f * f * c, n * n_h * n_w).transpose(0, 2, 1)


def short_window_rows(f: int, c: int) -> bool:
    """Whether a window row, f·C values, is too short a copy for row-major columns by window position
    (measured: f·C of 5 and 9 column-major 1.5–1.7× faster; 30 and 48 row-major 2.4–3× faster)."""
    return f * c < 16


def offset_view(xp: np.ndarray, i: int, j: int, s: int, n_h: int, n_w: int, d: int = 1) -> np.ndarray:
    """The (N, n_H, n_W, C) slice of ``xp`` seen by kernel offset (i, j) of every window (taps d apart)."""
    top, left = i * d, j * d
    return xp[:, top:top + s * (n_h - 1) + 1:s, left:left + s * (n_w - 1) + 1:s, :]


def keep_freed_memory() -> None:
    """Ask glibc to serve arrays up to 32 MB from its heap and to keep freed memory for reuse.

    By default it maps each large array afresh and returns it on free, so every batch pays a
    page fault per 4 KiB it touches: measured here, a third of LeNet's training time. Process-wide
    and harmless (freed memory is kept, up to 256 MB); a no-op where the C library is not glibc.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return
    _ALLOCATOR_TUNED = True
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)   # M_MMAP_THRESHOLD
        libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


_ALLOCATOR_TUNED = False


class Scratch:
    """Buffers a layer reuses from batch to batch instead of allocating afresh.

    Fresh large arrays cost page faults on first touch — on small virtual machines often more than
    the arithmetic done in them — so scratch space that never leaves a layer is kept here.
    """

    def __init__(self):
        self._buffers: dict[str, np.ndarray] = {}
        self._zeroed: dict[str, tuple] = {}

    def get(self, name: str, shape: tuple, dtype) -> np.ndarray:
        size = math.prod(shape)
        buffer = self._buffers.get(name)
        if buffer is None or buffer.size < size or buffer.dtype != dtype:
            buffer = self._buffers[name] = np.empty(size, dtype=dtype)
        return buffer[:size].reshape(shape)

    def zeros(self, name: str, shape: tuple, dtype) -> np.ndarray:
        buffer = self.get(name, shape, dtype)
        buffer.fill(0)
        return buffer

    def zeros_once(self, name: str, shape: tuple, dtype) -> np.ndarray:
        """A buffer zeroed when it is first asked for in this shape, not on every call: for arrays
        whose zeros stay put (callers write the same entries each time)."""
        if self._zeroed.get(name) != (shape, np.dtype(dtype)):
            self._zeroed[name] = (shape, np.dtype(dtype))
            return self.zeros(name, shape, dtype)
        return self.get(name, shape, dtype)


def conv_input_grad(dz: np.ndarray, weights: np.ndarray, s: int, padded_shape: tuple,
                    scratch: Scratch | None = None) -> np.ndarray:
    """d loss / d xp (N, H_p, W_p, C) of a convolution, from dz (N, n_H, n_W, K) and W (f, f, C, K).

    The adjoint of im2col, without np.add.at: for each kernel offset (i, j), one matrix multiply
    dz · W[i, j]ᵀ gives that offset's contribution (N, n_H, n_W, C), added into the input positions
    i + s·h, j + s·w. The adds go into s × s "phases" of the input — the rows ≡ i (mod s) and columns
    ≡ j (mod s), each stored contiguously, (rows, cols, C) per sample — which are interleaved into
    the result at the end (for s = 1 the one phase is the result).

    When that costs few extra multiplies (cols ≤ 9/8 · n_W), dz is first widened to rows of ``cols``
    positions, zeros past n_W: then each contribution has the phase's row length, and its add is one
    contiguous run per sample (its zero tails land harmlessly on the next row's first positions)
    instead of n_H runs of n_W·C values — NumPy pays a fixed cost per run, which dominates when C is
    small (VGG-style 3 × 3 convolutions over 16 channels: 20 % faster). A cache-sized slice of the
    batch at a time.
    """
    f, _, c, k = weights.shape
    n, n_h, n_w, _ = dz.shape
    h_p, w_p = padded_shape[1:3]
    scratch = scratch or Scratch()
    if banded_pays(f, w_p):
        return banded_input_grad(dz, weights, s, padded_shape, scratch)
    rows, cols = -(-h_p // s), -(-w_p // s)
    widen = 8 * cols <= 9 * n_w
    width = cols if widen else n_w  # positions per row of each contribution
    plane = rows * cols * c  # one phase of one sample
    dxp = np.zeros(padded_shape, dtype=dz.dtype) if s == 1 else np.empty(padded_shape, dtype=dz.dtype)
    per_sample = (s * s * plane + n_h * width * (c + k)) * dz.itemsize
    for start, stop in batch_chunks(n, per_sample):
        m = stop - start
        if s == 1:
            phases = dxp[start:stop].reshape(1, 1, m, rows, cols, c)
        else:
            phases = scratch.zeros("phases", (s, s, m, rows, cols, c), dz.dtype)
        if widen:
            source = scratch.get("wide", (m, n_h, cols, k), dz.dtype)
            source[:, :, :n_w] = dz[start:stop]
            source[:, :, n_w:] = 0
        else:
            source = dz[start:stop]
        part = scratch.get("part", (m, n_h, width, c), dz.dtype)
        for i in range(f):
            for j in range(f):
                np.matmul(source.reshape(-1, k), weights[i, j].T, out=part.reshape(-1, c))
                phase = phases[i % s, j % s]
                if widen:
                    base = (i // s * cols + j // s) * c
                    length = min(part[0].size, plane - base)
                    phase.reshape(m, plane)[:, base:base + length] += part.reshape(m, -1)[:, :length]
                else:
                    phase[:, i // s:i // s + n_h, j // s:j // s + n_w, :] += part
        if s > 1:
            for pi in range(s):
                for pj in range(s):
                    target = dxp[start:stop, pi::s, pj::s, :]
                    target[...] = phases[pi, pj, :, :target.shape[1], :target.shape[2], :]
    return dxp


def banded_pays(f: int, w_p: int) -> bool:
    """Whether ``banded_input_grad`` beats one multiply per kernel offset: it does W_p / f times the
    multiply-adds, in one product and f adds instead of 2·f² calls. Measured at batch 32: LeNet's
    second conv (W_p / f = 2.8) 1.5× faster; 3.4–11 (the lecture network, VGG): 1.7–5× slower."""
    return w_p <= 3 * f


def banded_input_grad(dz: np.ndarray, weights: np.ndarray, s: int, padded_shape: tuple,
                      scratch: Scratch) -> np.ndarray:
    """``conv_input_grad`` as one product per slice of the batch: the rows of dz, (N·n_H, n_W·K),
    times a banded matrix B (n_W·K, f·W_p·C), B[(w, k), (i, s·w + j, c)] = W[i, j, c, k], give for
    every output row h and kernel row i the whole input row s·h + i's gradient; f row-shifted adds
    sum them. Few NumPy calls, which counts when shards run side by side (each call takes the GIL)."""
    f, _, c, k = weights.shape
    n, n_h, n_w, _ = dz.shape
    h_p, w_p = padded_shape[1:3]
    band = scratch.zeros_once("band", (n_w, k, f, w_p * c), dz.dtype)  # only the band's entries change
    # the nonzero entries: for each w, f·C values from column s·w·C of every (k, i) row — one view
    entries = as_strided(band, shape=(n_w, k, f, f * c),
                         strides=(band.strides[0] + s * c * band.strides[3], *band.strides[1:]))
    entries[...] = weights.transpose(3, 0, 1, 2).reshape(k, f, f * c)
    dxp = np.zeros((n, h_p, w_p * c), dtype=dz.dtype)
    for start, stop in batch_chunks(n, n_h * f * w_p * c * dz.itemsize):
        rows = (dz[start:stop].reshape(-1, n_w * k) @ band.reshape(n_w * k, -1)).reshape(stop - start, n_h, f, -1)
        for i in range(f):
            dxp[start:stop, i:i + s * (n_h - 1) + 1:s] += rows[:, :, i]
    return dxp.reshape(padded_shape)


def grads_from_dz_columns_pay(f: int, s: int, p: int) -> bool:
    """Whether ``conv_grads_from_dz_columns`` serves a convolution: stride 1 and an output at least as
    large as the input (f − 1 ≤ 2p ≤ 2(f − 1): "same" padding), so that dz's columns are no more than
    x's. Measured at batch 32, both gradients: 3 × 3 over 16–32 channels 1.05–1.4× faster (more with
    shards side by side); without padding (LeNet's 5 × 5) dz's columns are twice x's: 2.4× slower."""
    return s == 1 and f - 1 <= 2 * p <= 2 * (f - 1)


def conv_grads_from_dz_columns(x: np.ndarray, dz: np.ndarray, weights: np.ndarray, p: int,
                               scratch: Scratch) -> tuple[np.ndarray, np.ndarray]:
    """d loss / d x (N, H, W, C) and d loss / d W (f, f, C, K) of a stride-1 convolution, from one set
    of columns: dz's, padded by q = f − 1 − p (0 ≤ q ≤ p), one row per input position (N·H·W, f·f·K).

    The input gradient is a full correlation with the flipped kernel, dx = cols(dz) · W_rot with
    W_rot[(i', j', k), c] = W[f − 1 − i', f − 1 − j', c, k]; the same columns give the weight gradient,
    xᵀ · cols(dz) = W_rot's gradient (x's zero padding would add nothing). Two well-shaped products
    (inner dimensions f·f·K and N·H·W) instead of f² thin ones (inner dimension K) and x's columns built
    again. A cache-sized slice of the batch at a time.
    """
    f, _, c, k = weights.shape
    n, h, w, _ = x.shape
    q = f - 1 - p
    dz_padded = pad(dz, q)
    w_rot = weights[::-1, ::-1].transpose(0, 1, 3, 2).reshape(f * f * k, c)
    dx = np.empty(x.shape, dtype=dz.dtype)
    dw_rot = np.zeros((c, f * f * k), dtype=dz.dtype)
    _, slices = column_slices(scratch, n, h * w * f * f * k, dz.dtype, training=False)
    for start, stop, part in slices:
        cols = im2col(dz_padded[start:stop], f, 1, h, w, out=part)
        np.matmul(cols, w_rot, out=dx[start:stop].reshape(-1, c))
        dw_rot += x[start:stop].reshape(-1, c).T @ cols
    return dx, dw_rot.reshape(c, f, f, k)[:, ::-1, ::-1].transpose(1, 2, 0, 3)


#: colsᵀ · dz with few columns (f·f·C ≤ THIN_COLUMNS, a first layer's) is summed over blocks of
#: BLOCK_ROWS rows: one product over 50,000 rows of 25 columns runs at a fraction of BLAS's speed
#: (LeNet's first conv: 0.68 → 0.27 ms; the lecture network's 1.4 → 0.9 ms; wider columns gain nothing)
THIN_COLUMNS, BLOCK_ROWS = 32, 2048


def weight_gradient(cols: np.ndarray, dz: np.ndarray) -> np.ndarray:
    """colsᵀ · dz: (M, f·f·C) and (M, K) → (f·f·C, K), in row blocks where the columns are few.
    Stacks of them, (S, M, f·f·C) and (S, M, K), are summed over S as well (in one call each)."""
    cols_t = np.swapaxes(cols, -1, -2)
    rows = cols.shape[-2]
    if cols.shape[-1] > THIN_COLUMNS or rows <= BLOCK_ROWS:
        total = cols_t @ dz
    else:
        total = cols_t[..., :BLOCK_ROWS] @ dz[..., :BLOCK_ROWS, :]
        for start in range(BLOCK_ROWS, rows, BLOCK_ROWS):
            total += cols_t[..., start:start + BLOCK_ROWS] @ dz[..., start:start + BLOCK_ROWS, :]
    return total if total.ndim == 2 else total.sum(axis=0)


def column_slices(scratch: Scratch, n: int, values_per_sample: int, dtype,
                  training: bool) -> tuple[bool, list[tuple[int, int, np.ndarray]]]:
    """A layer's batch of n in cache-sized slices, each (start, stop, the part of the layer's "cols"
    buffer to build its columns in), and whether they are kept for the weight gradient: while
    training, when they fit ``KEEP_COLS_BYTES`` (then each slice has its own part), else every slice
    reuses one slice's worth. The buffer lives from batch to batch (fresh memory costs page faults)
    and serves inference too; backward always runs before the next forward."""
    slice_bytes = values_per_sample * np.dtype(dtype).itemsize
    keep = training and n * slice_bytes <= KEEP_COLS_BYTES
    chunks = batch_chunks(n, slice_bytes)
    buffer = scratch.get("cols", ((n if keep else chunks[0][1]) * values_per_sample,), dtype)
    return keep, [(start, stop, buffer[(start if keep else 0) * values_per_sample:
                                       (stop if keep else stop - start) * values_per_sample])
                  for start, stop in chunks]


def channel_rows(x: np.ndarray, *vectors: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """x (..., n_W, C) as rows of n_W·C values (a vector batch (N, C): rows of C), and each
    per-channel vector (C,) tiled to such a row. Broadcasting (C,) against x directly runs NumPy's
    inner loop C values at a time: with 16 channels 3.8× slower than along whole rows."""
    width = x.shape[-1] * (x.shape[-2] if x.ndim > 2 else 1)
    repeats = width // x.shape[-1]
    return x.reshape(-1, width), [np.tile(vector, repeats) for vector in vectors]


def column_sums(matrix: np.ndarray) -> np.ndarray:
    """Sum over axis 0 of (M, K) as one matrix-vector product: much faster than .sum(axis=0) for small K."""
    return np.ones(matrix.shape[0], dtype=matrix.dtype) @ matrix


def batch_chunks(n: int, bytes_per_sample: int, limit: int | None = None) -> list[tuple[int, int]]:
    """Split range(n) into (start, stop) slices of at most ``limit`` bytes (default ``CACHE_BYTES``)."""
    per_chunk = max(1, (CACHE_BYTES if limit is None else limit) // max(1, bytes_per_sample))
    return [(start, min(n, start + per_chunk)) for start in range(0, n, per_chunk)] or [(0, 0)]


# -- grouped, depthwise and dilated convolutions -----------------------------------------------------

def padded_slices(x: np.ndarray, p: int, bytes_per_sample: int, scratch: Scratch, name: str = "padded"):
    """(start, stop, the slice of x padded by p) for cache-sized slices of the batch: each slice is padded
    into one reused buffer (its zero border written once), so that the taps read it from cache."""
    n, h, w, c = x.shape
    for start, stop in batch_chunks(n, bytes_per_sample):
        if p == 0:
            yield start, stop, x[start:stop]
            continue
        buffer = scratch.zeros_once(name, (stop - start, h + 2 * p, w + 2 * p, c), x.dtype)
        buffer[:, p:p + h, p:p + w] = x[start:stop]
        yield start, stop, buffer


def grouped_conv(x: np.ndarray, weights: np.ndarray, p: int, s: int, d: int, groups: int, n_h: int, n_w: int,
                 scratch: Scratch, finish=None) -> np.ndarray:
    """z (N, n_H, n_W, K) of a grouped (and/or dilated) convolution of x (N, H, W, C) padded by p with W
    (f, f, C / groups, K): output channels [g·K/G, (g+1)·K/G) read input channels [g·C/G, (g+1)·C/G).
    Per group, im2col of its channels from the dilated window view and one product; a cache-sized
    slice of the batch at a time, ``finish`` (bias and activation, in place) applied to each slice of z
    while it is in cache. Its twin is ``tests/reference.conv2d_naive``."""
    f, _, c_group, k = weights.shape
    k_group = k // groups
    z = np.empty((x.shape[0], n_h, n_w, k), dtype=weights.dtype)
    for start, stop, xp in padded_slices(x, p, n_h * n_w * f * f * c_group * x.itemsize, scratch):
        view = windows(xp, f, s, n_h, n_w, d)
        cols = scratch.get("cols", (stop - start, n_h, n_w, f, f, c_group), x.dtype)
        rows = z[start:stop].reshape(-1, k)
        for g in range(groups):
            np.copyto(cols, view[..., g * c_group:(g + 1) * c_group])
            rows[:, g * k_group:(g + 1) * k_group] = (
                cols.reshape(-1, f * f * c_group) @ weights[..., g * k_group:(g + 1) * k_group].reshape(-1, k_group))
        if finish is not None:
            finish(z[start:stop])
    return z


def grouped_conv_grads(x: np.ndarray, dz: np.ndarray, weights: np.ndarray, p: int, s: int, d: int, groups: int,
                       input_grad: bool, scratch: Scratch) -> tuple[np.ndarray | None, np.ndarray]:
    """d loss / d x (N, H, W, C) (None unless ``input_grad``) and d loss / d W (f, f, C / G, K) of
    ``grouped_conv``, from dz (N, n_H, n_W, K): per group, colsᵀ · dz and dz · Wᵀ, the latter's columns
    added back onto their taps (one strided add per tap, never np.add.at)."""
    f, _, c_group, k = weights.shape
    k_group = k // groups
    n, n_h, n_w, _ = dz.shape
    h, w = x.shape[1:3]
    dw = np.zeros_like(weights)
    dx = np.empty(x.shape, dtype=dz.dtype) if input_grad else None
    for start, stop, xp in padded_slices(x, p, n_h * n_w * f * f * c_group * x.itemsize, scratch):
        view = windows(xp, f, s, n_h, n_w, d)
        cols = scratch.get("cols", (stop - start, n_h, n_w, f, f, c_group), x.dtype)
        dz_rows = dz[start:stop].reshape(-1, k)
        dxp = scratch.zeros("dxp", xp.shape, dz.dtype) if input_grad else None
        for g in range(groups):
            outputs = slice(g * k_group, (g + 1) * k_group)
            np.copyto(cols, view[..., g * c_group:(g + 1) * c_group])
            dz_group = dz_rows[:, outputs]
            dw[..., outputs] += weight_gradient(cols.reshape(-1, f * f * c_group), dz_group).reshape(
                f, f, c_group, k_group)
            if input_grad:
                dcols = (dz_group @ weights[..., outputs].reshape(-1, k_group).T).reshape(cols.shape)
                target = dxp[..., g * c_group:(g + 1) * c_group]
                for i in range(f):
                    for j in range(f):
                        offset_view(target, i, j, s, n_h, n_w, d)[...] += dcols[:, :, :, i, j]
        if input_grad:
            dx[start:stop] = dxp[:, p:p + h, p:p + w]
    return dx, dw


def _tap_rows(array: np.ndarray, i: int, j: int, s: int, d: int, n_h: int, n_w: int) -> np.ndarray:
    """``offset_view`` as rows of n_W·C values where the stride allows (s = 1: a tap's columns are one
    contiguous run per row), so that a per-channel vector tiled to a row broadcasts along whole rows."""
    view = offset_view(array, i, j, s, n_h, n_w, d)
    return view.reshape(*view.shape[:2], -1) if s == 1 else view


def _depthwise_source(xp: np.ndarray, m: int) -> np.ndarray:
    """The input each output channel reads: xp itself, or with each channel repeated m times (K = m·C)."""
    return xp if m == 1 else np.repeat(xp, m, axis=3)


def depthwise_conv(x: np.ndarray, weights: np.ndarray, p: int, s: int, d: int, n_h: int, n_w: int,
                   scratch: Scratch, finish=None) -> np.ndarray:
    """z (N, n_H, n_W, K) of a depthwise convolution (groups = C, K = m·C: output channel k reads input
    channel k // m) of x (N, H, W, C) padded by p with W (f, f, 1, K): for each tap, the tapped input
    times that tap's weights, summed — whole-array multiplies and adds along rows of n_W·K values, a
    cache-sized slice of the batch at a time (padded in cache, ``finish`` applied in cache), instead of
    C thin products."""
    f, _, _, k = weights.shape
    m = k // x.shape[3]
    z = np.empty((x.shape[0], n_h, n_w, k), dtype=weights.dtype)
    taps = weights.reshape(f, f, k)
    taps = np.tile(taps, (1, 1, n_w)) if s == 1 else taps
    for start, stop, xp in padded_slices(x, p, 3 * n_h * n_w * k * x.itemsize, scratch):
        source = _depthwise_source(xp, m)
        out = z[start:stop]
        rows = out.reshape(*out.shape[:2], -1) if s == 1 else out
        product = scratch.get("product", rows.shape, z.dtype)
        for i in range(f):
            for j in range(f):
                tapped = _tap_rows(source, i, j, s, d, n_h, n_w)
                if i == j == 0:
                    np.multiply(tapped, taps[0, 0], out=rows)
                else:
                    np.multiply(tapped, taps[i, j], out=product)
                    rows += product
        if finish is not None:
            finish(out)
    return z


def depthwise_conv_grads(x: np.ndarray, dz: np.ndarray, weights: np.ndarray, p: int, s: int, d: int,
                         input_grad: bool, scratch: Scratch) -> tuple[np.ndarray | None, np.ndarray]:
    """d loss / d x (or None) and d loss / d W (f, f, 1, K) of ``depthwise_conv``, from dz (N, n_H, n_W, K)."""
    f, _, _, k = weights.shape
    n, n_h, n_w, _ = dz.shape
    c, h, w = x.shape[3], x.shape[1], x.shape[2]
    m = k // c
    taps = weights.reshape(f, f, k)
    taps = np.tile(taps, (1, 1, n_w)) if s == 1 else taps
    dw = np.zeros((f, f, k), dtype=dz.dtype)
    dx = np.empty(x.shape, dtype=dz.dtype) if input_grad else None
    for start, stop, xp in padded_slices(x, p, 3 * n_h * n_w * k * x.itemsize, scratch):
        source = _depthwise_source(xp, m)
        grad = dz[start:stop]
        grad = grad.reshape(*grad.shape[:2], -1) if s == 1 else grad
        product = scratch.get("product", grad.shape, dz.dtype)
        target = scratch.zeros("dxp", source.shape, dz.dtype) if input_grad else None
        for i in range(f):
            for j in range(f):
                np.multiply(_tap_rows(source, i, j, s, d, n_h, n_w), grad, out=product)
                dw[i, j] += column_sums(product.reshape(-1, k))
                if input_grad:
                    np.multiply(grad, taps[i, j], out=product)
                    _tap_rows(target, i, j, s, d, n_h, n_w)[...] += product
        if input_grad:
            target = target if m == 1 else target.reshape(*target.shape[:3], c, m).sum(axis=4)
            dx[start:stop] = target[:, p:p + h, p:p + w]
    return dx, dw.reshape(weights.shape)
