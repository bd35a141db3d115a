"""conv2d: a set of filters, each f × f × n_C_prev weights plus one bias; Z = W·a_prev + b, a = g(Z)."""

from __future__ import annotations

import numpy as np

from yamlnet import kernels
from yamlnet.layers.activation import ACTIVATION_KEY, activate, activate_backward
from yamlnet.errors import ShapeError
from yamlnet.layers.base import INT_AT_LEAST_1, PADDING, WindowedLayer, register


@register("conv2d")
class Conv2D(WindowedLayer):
    """2-D convolution (cross-correlation, as in every framework), channels-last.

    Parameters: ``W`` (f, f, n_C_prev, n_filters) and ``b`` (n_filters,) — one bias per filter,
    added at every output position. Input (N, n_H_prev, n_W_prev, n_C_prev), output
    (N, n_H, n_W, n_filters) with n_H = floor((n_H_prev + 2p − f) / s) + 1.

    Forward is im2col: a strided window view, one copy into (N·n_H·n_W, f·f·n_C_prev) columns,
    one matrix multiply — a cache-sized slice of the batch at a time. Backward, at stride 1 with
    "same" padding, takes both gradients from dz's columns (``kernels.conv_grads_from_dz_columns``:
    two well-shaped multiplies); otherwise the weight gradient is one multiply with x's columns and
    the input gradient one small multiply and one strided add per kernel offset
    (``kernels.conv_input_grad``, never np.add.at). The first layer computes no input gradient.

    ``groups`` G splits the channels: output channels [g·K/G, (g+1)·K/G) read only input channels
    [g·C/G, (g+1)·C/G), and W is (f, f, C / G, K); G = C is a depthwise convolution. ``dilation`` d
    spaces the taps d apart: the window spans d·(f − 1) + 1 pixels. Both as PyTorch's Conv2d means
    them; a depthwise conv multiplies and adds whole arrays per tap (``kernels.depthwise_conv``), any
    other grouped or dilated one takes a product per group (``kernels.grouped_conv``).
    """

    description = "convolution: filters of f × f × n_C_prev weights plus one bias each"
    hyperparameters = {
        "filters": {**INT_AT_LEAST_1, "description": "number of filters = output channels n_C"},
        "size": {**INT_AT_LEAST_1, "description": "filter size f (f × f)"},
        "stride": {**INT_AT_LEAST_1, "default": 1, "description": "stride s"},
        "padding": {**PADDING, "description": "padding p: pixels of zeros on each side"},
        "activation": {**ACTIVATION_KEY, "description": "g applied to Z"},
        "groups": {**INT_AT_LEAST_1, "default": 1,
                   "description": "filters in groups: each reads n_C_prev / groups input channels; "
                                  "groups = n_C_prev is a depthwise convolution"},
        "dilation": {**INT_AT_LEAST_1, "default": 1,
                     "description": "spacing d of the kernel's taps: the window spans d·(f − 1) + 1 pixels"},
    }
    required = ("filters", "size")
    drawn_with_type = False
    other_names = ("conv", "convolution")
    takes_folded_batchnorm = fresh_output = True

    def __init__(self, name, config):
        super().__init__(name, config)
        self.scratch = kernels.Scratch()

    @property
    def groups(self) -> int:
        return self.config.get("groups", 1)

    @property
    def d(self) -> int:
        return self.config.get("dilation", 1)

    @property
    def extent(self) -> int:
        return self.d * (self.f - 1) + 1

    @property
    def ordinary(self) -> bool:
        """Neither grouped nor dilated: the fast paths of an ordinary convolution (and fusion) apply."""
        return self.groups == 1 and self.d == 1

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.input_shape[2]

    def hyperparameter_text(self):
        return super().hyperparameter_text() + (f" d={self.d}" if self.d > 1 else "") + \
            (f" g={self.groups}" if self.groups > 1 else "")

    def scratch_bytes(self, batch, itemsize):
        """im2col columns (a cache-sized slice of the batch at most) and the input-gradient buffers."""
        n_h, n_w, _ = self.output_shape
        per_sample = n_h * n_w * self.f * self.f * self.input_shape[2] // self.groups * itemsize
        return min(batch * per_sample, kernels.KEEP_COLS_BYTES) + 2 * batch * int(np.prod(self.input_shape)) * itemsize

    def onnx(self, graph, inputs, input_shape):
        weights = graph.constant(f"{self.name}/W", self.params["W"].transpose(3, 2, 0, 1))
        return graph.node("Conv", [inputs[0], weights, graph.constant(f"{self.name}/b", self.params["b"])],
                          f"{self.name}/conv", kernel_shape=[self.f, self.f], strides=[self.s, self.s],
                          pads=[self.p] * 4, dilations=[self.d, self.d], group=self.groups)

    def compute_output_shape(self, input_shape):
        n_c_prev, n_filters, groups = input_shape[2], self.config["filters"], self.groups
        if n_c_prev % groups or n_filters % groups:
            raise ShapeError(f"groups must divide both the input's channels and filters: {n_c_prev} input channels "
                             f"and {n_filters} filters in {groups} groups", key="groups")
        return self.windowed_shape(input_shape, n_filters)

    def param_shapes(self):
        n_c_prev = self.input_shape[2]
        return {"W": (self.f, self.f, n_c_prev // self.groups, self.config["filters"]),
                "b": (self.config["filters"],)}

    def fans(self):
        f, _, n_c_group, n_filters = self.param_shapes()["W"]
        return f * f * n_c_group, f * f * n_filters

    def macs(self):
        n_h, n_w, n_c = self.output_shape
        return n_h * n_w * n_c * self.f * self.f * self.input_shape[2] // self.groups

    def explain(self):
        f, n_c_prev, n_filters, groups = self.f, self.input_shape[2], self.config["filters"], self.groups
        n_h, n_w, n_c = self.output_shape
        per_filter = f"{n_c_prev}" if groups == 1 else f"({n_c_prev}/{groups})"
        return super().explain() + [
            f"params = {f}·{f}·{per_filter}·{n_filters} + {n_filters} = {self.param_count():,}",
            f"mult-adds = {n_h}·{n_w}·{n_c}·{f}·{f}·{per_filter} = {self.macs():,}",
        ]

    # -- math ----------------------------------------------------------------------------
    def forward(self, x, training=False):
        """x (N, n_H_prev, n_W_prev, n_C_prev) → a (N, n_H, n_W, n_filters)."""
        if not self.ordinary:
            return self._forward_grouped(x, training)
        f, s, p = self.f, self.s, self.p
        n_h, n_w, n_filters = self.output_shape
        weights = self.params["W"].reshape(-1, n_filters)  # (f·f·n_C_prev, n_filters)
        n, values_per_sample = x.shape[0], n_h * n_w * weights.shape[0]
        xp = kernels.pad(x, p)
        z = np.empty((n, n_h, n_w, n_filters), dtype=weights.dtype)
        from_dz = self._grads_from_dz_columns()  # then backward needs neither x's columns nor xp
        keep, slices = kernels.column_slices(self.scratch, n, values_per_sample, weights.dtype,
                                             training and not from_dz)
        bias_row = np.tile(self.params["b"], n_w)  # added to rows of n_W·K values: a fast broadcast
        kept = []
        for start, stop, part in slices:  # columns, multiply, bias and g while the slice is in cache
            cols = kernels.im2col(xp[start:stop], f, s, n_h, n_w, out=part)
            z_part = z[start:stop]
            np.matmul(cols, weights, out=z_part.reshape(-1, n_filters))
            z_part.reshape(-1, n_w * n_filters)[...] += bias_row
            a_part = activate(self.activation, z_part)
            if a_part is not z_part:
                z_part[...] = a_part
            kept.append((start, stop, cols if keep else None))
        if training:  # (not xp: backward pads x again where it needs to, slice by slice)
            self._cache = (x, from_dz, kept, self.kept_output(z))
        return z

    def _forward_grouped(self, x, training):
        n_h, n_w, n_filters = self.output_shape
        bias_row = np.tile(self.params["b"], n_w)

        def finish(z_part):  # bias and g while the slice is in cache
            z_part.reshape(-1, n_w * n_filters)[...] += bias_row
            a_part = activate(self.activation, z_part)
            if a_part is not z_part:
                z_part[...] = a_part

        if self.depthwise:
            a = kernels.depthwise_conv(x, self.params["W"], self.p, self.s, self.d, n_h, n_w, self.scratch, finish)
        else:
            a = kernels.grouped_conv(x, self.params["W"], self.p, self.s, self.d, self.groups, n_h, n_w,
                                     self.scratch, finish)
        if training:
            self._cache = (x, False, None, self.kept_output(a))
        return a

    def _backward_grouped(self, x, dz):
        if self.depthwise:
            dx, dw = kernels.depthwise_conv_grads(x, dz, self.params["W"], self.p, self.s, self.d,
                                                  self.needs_input_grad, self.scratch)
        else:
            dx, dw = kernels.grouped_conv_grads(x, dz, self.params["W"], self.p, self.s, self.d, self.groups,
                                                self.needs_input_grad, self.scratch)
        self.grads["W"][...] = dw
        return dx

    def _grads_from_dz_columns(self) -> bool:
        return self.needs_input_grad and kernels.grads_from_dz_columns_pay(self.f, self.s, self.p)

    def backward(self, grad):
        """grad (N, n_H, n_W, n_filters) → d loss / d x (N, n_H_prev, n_W_prev, n_C_prev), or None."""
        x, from_dz, kept, a = self._cache
        self._cache = None
        f, s = self.f, self.s
        n_h, n_w, n_filters = self.output_shape
        dz = activate_backward(self.activation, a, grad)
        dz2 = dz.reshape(-1, n_filters)
        self.grads["b"][...] = kernels.column_sums(dz2)
        if not self.ordinary:
            return self._backward_grouped(x, dz)
        if from_dz:  # forward chose dz's columns for both gradients
            dx, self.grads["W"][...] = kernels.conv_grads_from_dz_columns(x, dz, self.params["W"], self.p, self.scratch)
            return dx
        dw = self.grads["W"].reshape(-1, n_filters)
        rows_per_sample = n_h * n_w
        for start, stop, cols in kept:
            if cols is None:
                buffer = self.scratch.get("cols", ((stop - start) * rows_per_sample * dw.shape[0],), dw.dtype)
                cols = kernels.im2col(kernels.pad(x[start:stop], self.p), f, s, n_h, n_w, out=buffer)
            chunk_dw = kernels.weight_gradient(cols, dz2[start * rows_per_sample:stop * rows_per_sample])
            if start == 0:
                dw[...] = chunk_dw
            else:
                dw += chunk_dw
        if not self.needs_input_grad:
            return None
        padded_shape = (len(x), x.shape[1] + 2 * self.p, x.shape[2] + 2 * self.p, x.shape[3])
        return kernels.unpad(kernels.conv_input_grad(dz, self.params["W"], s, padded_shape, self.scratch), self.p)
