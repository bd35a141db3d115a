"""conv2d: a set of filters, each f × f × n_C_prev weights plus one bias; Z = W·a_prev + b, a = g(Z)."""

from __future__ import annotations

import numpy as np

from yamlnet import kernels
from yamlnet.layers.activation import ACTIVATION_KEY, activate, activate_backward
from yamlnet.layers.base import (INT_AT_LEAST_1, PADDING, Layer, drops_pixels, explain_window, register,
                                 require_volume, resolve_padding, windowed_shape)


@register("conv2d")
class Conv2D(Layer):
    """2-D convolution (cross-correlation, as in every framework), channels-last.

    Parameters: ``W`` (f, f, n_C_prev, n_filters) and ``b`` (n_filters,) — one bias per filter,
    added at every output position. Input (N, n_H_prev, n_W_prev, n_C_prev), output
    (N, n_H, n_W, n_filters) with n_H = floor((n_H_prev + 2p − f) / s) + 1.

    Forward is im2col: a strided window view, one copy into (N·n_H·n_W, f·f·n_C_prev) columns,
    one matrix multiply. The input gradient is one multiply and f·f strided adds (no np.add.at).
    """

    description = "convolution: filters of f × f × n_C_prev weights plus one bias each"
    hyperparameters = {
        "filters": {**INT_AT_LEAST_1, "description": "number of filters = output channels n_C"},
        "size": {**INT_AT_LEAST_1, "description": "filter size f (f × f)"},
        "stride": {**INT_AT_LEAST_1, "default": 1, "description": "stride s"},
        "padding": {**PADDING, "description": "padding p: pixels of zeros on each side"},
        "activation": {**ACTIVATION_KEY, "description": "g applied to Z"},
    }
    required = ("filters", "size")

    @property
    def f(self) -> int:
        return self.config["size"]

    @property
    def s(self) -> int:
        return self.config["stride"]

    @property
    def p(self) -> int:
        return resolve_padding(self.config["padding"], self.f, self.s)

    def compute_output_shape(self, input_shape):
        require_volume(self, input_shape)
        return windowed_shape(self, input_shape, self.f, self.s, self.p, self.config["filters"])

    def param_shapes(self):
        n_c_prev = self.input_shape[2]
        return {"W": (self.f, self.f, n_c_prev, self.config["filters"]), "b": (self.config["filters"],)}

    def fans(self):
        f, _, n_c_prev, n_filters = self.param_shapes()["W"]
        return f * f * n_c_prev, f * f * n_filters

    def macs(self):
        n_h, n_w, n_c = self.output_shape
        return n_h * n_w * n_c * self.f * self.f * self.input_shape[2]

    def hyperparameter_text(self):
        return f"f={self.f} s={self.s} p={self.p}"

    def drops_pixels(self) -> bool:
        return drops_pixels(self.input_shape, self.f, self.s, self.p)

    def explain(self):
        f, n_c_prev, n_filters = self.f, self.input_shape[2], self.config["filters"]
        n_h, n_w, n_c = self.output_shape
        return explain_window(self.input_shape, self.output_shape, self.f, self.s, self.p) + [
            f"params = {f}·{f}·{n_c_prev}·{n_filters} + {n_filters} = {self.param_count():,}",
            f"mult-adds = {n_h}·{n_w}·{n_c}·{f}·{f}·{n_c_prev} = {self.macs():,}",
        ]

    # -- math ----------------------------------------------------------------------------
    def forward(self, x, training=False):
        """x (N, n_H_prev, n_W_prev, n_C_prev) → a (N, n_H, n_W, n_filters)."""
        f, s, p = self.f, self.s, self.p
        n_h, n_w, n_filters = self.output_shape
        weights = self.params["W"].reshape(-1, n_filters)  # (f·f·n_C_prev, n_filters)
        xp = kernels.pad(x, p)
        z = np.empty((x.shape[0], n_h, n_w, n_filters), dtype=weights.dtype)
        chunks = kernels.batch_chunks(x.shape[0], n_h * n_w * weights.shape[0] * weights.itemsize)
        for start, stop in chunks:
            cols = kernels.im2col(xp[start:stop], f, s, n_h, n_w)
            np.matmul(cols, weights, out=z[start:stop].reshape(-1, n_filters))
        z += self.params["b"]
        a = activate(self.activation, z)
        if training:
            # One chunk: keep the columns for the weight gradient; else recompute them per chunk.
            self._cache = (xp, x.shape, cols if len(chunks) == 1 else None, chunks, a)
        return a

    def backward(self, grad):
        """grad (N, n_H, n_W, n_filters) → d loss / d x (N, n_H_prev, n_W_prev, n_C_prev), or None."""
        xp, x_shape, cols, chunks, a = self._cache
        self._cache = None
        f, s, p = self.f, self.s, self.p
        n_h, n_w, n_filters = self.output_shape
        dz = activate_backward(self.activation, a, grad).reshape(-1, n_filters)
        weights = self.params["W"].reshape(-1, n_filters)
        dw = self.grads["W"].reshape(-1, n_filters)
        dw[...] = 0
        rows_per_sample = n_h * n_w
        dxp = np.zeros(xp.shape, dtype=xp.dtype) if self.needs_input_grad else None
        for start, stop in chunks:
            dz_chunk = dz[start * rows_per_sample:stop * rows_per_sample]
            chunk_cols = cols if cols is not None else kernels.im2col(xp[start:stop], f, s, n_h, n_w)
            dw += chunk_cols.T @ dz_chunk
            if dxp is not None:
                kernels.col2im_add(dz_chunk @ weights.T, dxp[start:stop], f, s, n_h, n_w)
        np.sum(dz, axis=0, out=self.grads["b"])
        if dxp is None:
            return None
        return kernels.unpad(dxp, p)

