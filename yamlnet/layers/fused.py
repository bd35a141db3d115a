"""Layers run as one: a pass over the model's execution list, never a change to its file or weights.

``fuse`` finds each stride-1 conv2d (ReLU or linear) over few channels whose only reader is a
2 × 2 / 2 max-pool without padding, and runs the pair as one ``ConvMaxPool`` in the conv's place,
the pool's place holding a ``PassThrough``. ``Model.layers``, the summary, parameter names,
checkpoints and exports keep the layers as the file lists them; only the execution differs, and
its results equal the pair's.
"""

from __future__ import annotations

import math

import numpy as np

from yamlnet import kernels
from yamlnet.layers.activation import activate
from yamlnet.layers.base import Layer
from yamlnet.layers.conv import Conv2D
from yamlnet.layers.pool import MaxPool2D


class PassThrough(Layer):
    """Stands in for a layer whose work another one does (a fused pool, a folded batchnorm): its
    output is its input, and so is its gradient."""

    def __init__(self, layer: Layer, kind: str):
        super().__init__(layer.name, layer.config)
        self.type = f"{layer.type} ({kind})"
        self.inputs, self.input_shape, self.output_shape = layer.inputs, layer.input_shape, layer.output_shape
        self.needs_input_grad = layer.needs_input_grad

    def forward(self, x, training=False):
        return x

    def backward(self, grad):
        return grad


def fusable(layers: list[Layer], graph, index: int) -> bool:
    """Whether layer ``index`` is a conv that ``ConvMaxPool`` runs faster together with its only reader.

    Only where the conv's window rows are short (a first layer's one or three channels): there the
    columns by window position are cheap to build, and the pair alone ran 1.4–1.9× faster in
    training and 1.1–1.6× at inference (batch 32, LeNet's and the CIFAR net's first layers); over 6
    or more channels it ran 0.95–1.0×, alone and in whole networks (VGG, LeNet's second pair)."""
    conv = layers[index]
    if not isinstance(conv, Conv2D) or not conv.ordinary or conv.s != 1 or conv.activation not in ("relu", "linear"):
        return False
    if not kernels.short_window_rows(conv.f, conv.input_shape[2]):
        return False
    if len(graph.readers[index]) != 1:
        return False
    pool = layers[graph.readers[index][0]]
    return (isinstance(pool, MaxPool2D) and (pool.f, pool.s, pool.p) == (2, 2, 0)
            and graph.sources[graph.readers[index][0]] == (index,))


def fuse(layers: list[Layer], graph) -> list[Layer]:
    """``layers`` with every fusable conv + max-pool pair run as one (the list itself when there is none)."""
    fused = list(layers)
    for index in range(len(layers)):
        if fusable(layers, graph, index):
            reader = graph.readers[index][0]
            fused[index] = ConvMaxPool(layers[index], layers[reader])
            fused[reader] = PassThrough(layers[reader], "fused")
    return fused


class ConvMaxPool(Layer):
    """conv2d (stride 1, ReLU or linear) + maxpool2d (2 × 2, stride 2, no padding), as one layer.

    Input (N, n_H_prev, n_W_prev, n_C_prev) → output (N, n_H, n_W, n_filters), the pool's shape.
    The conv's product rows are ordered by their position (a, b) in the pooling window — block
    (a, b) holds the conv outputs at rows 2h + a and columns 2w + b — so pooling is three
    whole-array maxima over contiguous blocks instead of strided passes over interleaved ones, and
    conv outputs the pool never reads (an odd last row or column) are not computed at all. ReLU
    runs after the pool (max and ReLU commute) on a quarter of the values. Backward routes each
    window's gradient to its first maximum in row-major order, as ``MaxPool2D`` does; where ReLU
    cut the maximum to zero the gradient is zero either way. The weights and gradients are the
    conv's own arrays.
    """

    def __init__(self, conv: Layer, pool: Layer):
        super().__init__(f"{conv.name} + {pool.name}", conv.config)
        self.type = "conv2d + maxpool2d (fused)"
        self.conv, self.pool = conv, pool
        self.inputs, self.input_shape, self.output_shape = conv.inputs, conv.input_shape, pool.output_shape
        self.params, self.grads = conv.params, conv.grads
        self.needs_input_grad = conv.needs_input_grad
        self.scratch = kernels.Scratch()

    def forward(self, x, training=False):
        """x (N, n_H_prev, n_W_prev, n_C_prev) → a (N, n_H, n_W, n_filters), n_H = floor(conv's n_H / 2)."""
        conv = self.conv
        n_h, n_w, n_filters = self.output_shape
        weights = conv.params["W"].reshape(-1, n_filters)  # (f·f·n_C_prev, n_filters)
        n, rows_per_sample = len(x), n_h * n_w  # rows of one block, per sample
        values_per_sample = 4 * rows_per_sample * weights.shape[0]
        xp = kernels.pad(x, conv.p)
        keep, slices = kernels.column_slices(self.scratch, n, values_per_sample, weights.dtype, training)
        # z: the conv's outputs, chunk by chunk (``_blocks``); kept for backward while training
        z = self.scratch.get("z", (4 * n * rows_per_sample * n_filters,), weights.dtype)
        out = np.empty((n, n_h, n_w, n_filters), dtype=weights.dtype)
        bias_row = np.tile(conv.params["b"], n_w)
        kept = []
        for start, stop, part in slices:
            z_part = self._blocks(z, start, stop).reshape(4, (stop - start) * n_h, n_w * n_filters)
            cols = self._columns(xp[start:stop], part)
            np.matmul(cols, weights, out=z_part.reshape(4, -1, n_filters))
            z_part += bias_row
            pooled = out[start:stop].reshape(-1, n_w * n_filters)
            np.maximum(z_part[0], z_part[1], out=pooled)
            np.maximum(pooled, z_part[2], out=pooled)
            np.maximum(pooled, z_part[3], out=pooled)
            kept.append((start, stop, cols if keep else None))
        a = activate(conv.activation, out)  # g after the pool: they commute (ReLU works in place)
        if training:
            self._cache = (xp, kept, z, a)
        return a

    def _blocks(self, array: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Samples start..stop of a flat array of conv outputs (or their gradients), stored chunk by
        chunk, each chunk as (4, m, n_H, n_W, n_filters): block q holds window position q."""
        size = 4 * math.prod(self.output_shape)
        return array[start * size:stop * size].reshape(4, stop - start, *self.output_shape)

    def _columns(self, xp: np.ndarray, buffer: np.ndarray) -> np.ndarray:
        """The im2col columns of each window position (a, b): (4, m·n_H·n_W, f·f·n_C_prev)."""
        n_h, n_w, _ = self.output_shape
        return kernels.im2col_by_window_position(xp, self.conv.f, n_h, n_w, out=buffer)

    def backward(self, grad):
        """grad (N, n_H, n_W, n_filters) → d loss / d x (N, n_H_prev, n_W_prev, n_C_prev), or None."""
        xp, kept, z, a = self._cache
        self._cache = None
        conv = self.conv
        n, (n_h, n_w, n_filters) = len(grad), self.output_shape
        rows_per_sample = n_h * n_w
        if conv.activation == "relu":
            # where ReLU cut the maximum to 0 there is no gradient: elsewhere a is the maximum
            grad = grad * (a > 0)
        met = self.scratch.get("met", z.shape, bool)
        dz = z  # each block's gradient overwrites its outputs, once they have been compared
        dw = conv.grads["W"].reshape(-1, n_filters)
        dw[...] = 0
        for start, stop, cols in kept:
            dz_part, met_part = self._blocks(dz, start, stop), self._blocks(met, start, stop)
            # each window's gradient to its first maximum in row-major order: whether the maximum has
            # been met by block q (running ORs), then whether it is met first at q
            np.equal(dz_part, a[start:stop], out=met_part)
            for q in range(1, 4):  # (logical_or.accumulate over this axis runs element by element)
                np.logical_or(met_part[q], met_part[q - 1], out=met_part[q])
            for q in range(3, 0, -1):
                np.greater(met_part[q], met_part[q - 1], out=met_part[q])
            np.multiply(grad[start:stop], met_part, out=dz_part)
            if cols is None:
                buffer = self.scratch.get("cols", (4 * (stop - start) * rows_per_sample * dw.shape[0],),
                                          dw.dtype)
                cols = self._columns(xp[start:stop], buffer)
            dw += kernels.weight_gradient(cols, dz_part.reshape(4, -1, n_filters))
        conv.grads["b"][...] = kernels.column_sums(dz.reshape(-1, n_filters))
        if not self.needs_input_grad:
            return None
        # the conv's output gradient in place: zero where the pool read nothing (an odd last row or column)
        n_hc, n_wc, _ = conv.output_shape
        dz_conv = (np.empty if (n_hc, n_wc) == (2 * n_h, 2 * n_w) else np.zeros)((n, n_hc, n_wc, n_filters),
                                                                                 dtype=grad.dtype)
        for start, stop, _ in kept:
            for (row, column), block in zip(kernels.POOL_WINDOW_POSITIONS, self._blocks(dz, start, stop)):
                dz_conv[start:stop, row:2 * n_h:2, column:2 * n_w:2] = block
        return kernels.unpad(kernels.conv_input_grad(dz_conv, conv.params["W"], 1, xp.shape, self.scratch), conv.p)
