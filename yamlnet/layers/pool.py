"""maxpool2d and avgpool2d: f × f windows at stride s, each channel on its own; no parameters."""

from __future__ import annotations

import numpy as np

from yamlnet import kernels
from yamlnet.errors import ShapeError
from yamlnet.layers.base import INT_AT_LEAST_1, PADDING, Layer, WindowedLayer, register


class _Pool(WindowedLayer):
    """Input (N, n_H_prev, n_W_prev, n_C) → output (N, n_H, n_W, n_C), n_H = floor((n_H_prev + 2p − f) / s) + 1."""

    hyperparameters = {
        "size": {**INT_AT_LEAST_1, "description": "window size f (f × f)"},
        "stride": {**INT_AT_LEAST_1, "description": "stride s; defaults to size"},
        "padding": {**PADDING, "description": "padding p on each side, at most size // 2"},
    }
    required = ("size",)
    transparent_to_init = True
    #: the ONNX operator, and its attributes beyond the window's
    onnx_op: str = ""
    onnx_attributes: dict = {}

    @classmethod
    def complete(cls, config):
        config.setdefault("stride", config["size"])

    def onnx(self, graph, inputs, input_shape):
        return graph.node(self.onnx_op, inputs, f"{self.name}/pool", kernel_shape=[self.f, self.f],
                          strides=[self.s, self.s], pads=[self.p] * 4, **self.onnx_attributes)

    def compute_output_shape(self, input_shape):
        if self.p > self.f // 2:
            raise ShapeError(f"padding may be at most size // 2 = {self.f // 2}, got {self.p}", key="padding")
        return self.windowed_shape(input_shape, input_shape[2])

    def _offsets(self):
        return [(i, j) for i in range(self.f) for j in range(self.f)]


@register("maxpool2d")
class MaxPool2D(_Pool):
    """Max over each window. Padding counts as −∞, so it is never the max.

    Ties: the gradient goes to the first maximum of the window in row-major order (as in
    PyTorch and Caffe), so the gradient of each window sums to its upstream gradient.
    """

    description = "max over each f × f window"
    onnx_op = "MaxPool"
    other_names = ("maxpool",)

    def forward(self, x, training=False):
        n_h, n_w, _ = self.output_shape
        s = self.s
        # One whole-array maximum per window offset: f·f strided passes, no window copies. (For
        # 2 × 2 windows this is about 9× faster than reshape(N, H/2, 2, W/2, 2, C).max(axis=(2, 4)).)
        xp = kernels.pad(x, self.p, value=-np.inf)
        out = kernels.offset_view(xp, 0, 0, s, n_h, n_w).copy()
        for i, j in self._offsets()[1:]:
            np.maximum(out, kernels.offset_view(xp, i, j, s, n_h, n_w), out=out)
        if training:
            self._cache = (xp, out)
        return out

    def backward(self, grad):
        """Route each window's gradient to its first maximum, offset by offset in row-major order:
        ``remaining`` holds the gradient of windows whose maximum has not been met yet."""
        xp, out = self._cache
        self._cache = None
        n_h, n_w, _ = self.output_shape
        f, s, p = self.f, self.s, self.p
        # Windows that neither overlap nor leave gaps write each input once: no zeroing, no adds.
        tiles = s == f and p == 0 and xp.shape[1:3] == (n_h * f, n_w * f)
        dxp = np.empty_like(xp) if tiles else np.zeros_like(xp)
        remaining = grad.copy()
        offsets = self._offsets()
        for k, (i, j) in enumerate(offsets):
            is_max = kernels.offset_view(xp, i, j, s, n_h, n_w) == out
            target = kernels.offset_view(dxp, i, j, s, n_h, n_w)
            if tiles:
                np.multiply(remaining, is_max, out=target)
            else:
                target += remaining * is_max
            if k + 1 < len(offsets):
                np.logical_not(is_max, out=is_max)
                remaining *= is_max
        return kernels.unpad(dxp, p)


@register("avgpool2d")
class AvgPool2D(_Pool):
    """Mean over each window; padded zeros count in the mean (PyTorch's count_include_pad)."""

    description = "mean over each f × f window"
    onnx_op = "AveragePool"
    other_names = ("avgpool",)
    onnx_attributes = {"count_include_pad": 1}  # yamlnet counts padded zeros; ONNX's default does not

    def forward(self, x, training=False):
        n_h, n_w, _ = self.output_shape
        f, s = self.f, self.s
        scale = x.dtype.type(1.0 / (f * f))
        xp = kernels.pad(x, self.p)
        out = kernels.offset_view(xp, 0, 0, s, n_h, n_w).copy()
        for i, j in self._offsets()[1:]:
            out += kernels.offset_view(xp, i, j, s, n_h, n_w)
        out *= scale
        if training:
            self._cache = x.shape
        return out

    def backward(self, grad):
        n, h, w, c = self._cache
        p = self.p
        n_h, n_w, _ = self.output_shape
        dxp = np.zeros((n, h + 2 * p, w + 2 * p, c), dtype=grad.dtype)
        share = grad * grad.dtype.type(1.0 / (self.f * self.f))
        for i, j in self._offsets():
            kernels.offset_view(dxp, i, j, self.s, n_h, n_w)[...] += share
        return kernels.unpad(dxp, p)


@register("globalavgpool2d")
class GlobalAvgPool2D(Layer):
    """A volume (N, n_H, n_W, C) → a vector (N, C): each channel's mean over every position."""

    description = "a volume → a vector: each channel's mean over n_H × n_W"
    needs_volume = transparent_to_init = True

    def onnx(self, graph, inputs, input_shape):
        return graph.node("Flatten", [graph.node("GlobalAveragePool", inputs, f"{self.name}/gap")],
                          f"{self.name}/flat", axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[2],)

    def explain(self):
        n_h, n_w, n_c = self.input_shape
        return [f"{n_h} × {n_w} × {n_c} → {n_c}: the mean of each channel's {n_h}·{n_w} = {n_h * n_w} values"]

    def forward(self, x, training=False):
        return x.mean(axis=(1, 2))

    def backward(self, grad):
        n_h, n_w, n_c = self.input_shape
        dx = np.empty((len(grad), n_h, n_w, n_c), dtype=grad.dtype)
        dx[...] = (grad * grad.dtype.type(1.0 / (n_h * n_w)))[:, None, None, :]
        return dx
