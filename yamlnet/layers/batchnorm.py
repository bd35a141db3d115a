"""batchnorm: normalize each channel (or feature) by batch statistics, then scale and shift.

PyTorch's convention: while training, x̂ = (x − μ_B) / √(σ²_B + eps) with the batch mean and the
biased batch variance, and running ← (1 − momentum) · running + momentum · statistic (the running
variance with the unbiased batch variance); at inference the running statistics take their place.
"""

from __future__ import annotations

import numpy as np

from yamlnet import kernels, parallel
from yamlnet.layers.activation import ACTIVATION_KEY, activate, activate_backward
from yamlnet.layers.base import Layer, register


@register("batchnorm")
class BatchNorm(Layer):
    """Input (N, n_H, n_W, C) or (N, C) → the same shape, a = gamma · x̂ + beta per channel.

    A volume is normalized per channel over N × n_H × n_W values, a vector per feature over N.
    Parameters: ``gamma`` (C,) (starts at 1) and ``beta`` (C,) (starts at 0). State, saved but not
    trained: ``running_mean`` (C,) (starts at 0) and ``running_var`` (C,) (starts at 1).
    """

    description = "normalize each channel by batch statistics, then scale by gamma and shift by beta"
    hyperparameters = {
        "momentum": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.1,
                     "description": "running ← (1 − momentum) · running + momentum · batch statistic"},
        "eps": {"type": "number", "exclusiveMinimum": 0, "default": 1e-5, "description": "added to the variance"},
        "activation": {**ACTIVATION_KEY, "description": "g applied after the scale and shift"},
    }
    needs_whole_batch = True
    drawn_inside = transparent_to_init = folds_into_linear = fresh_output = True

    def onnx(self, graph, inputs, input_shape):
        constants = [graph.constant(f"{self.name}/{key}", table[key]) for table, key in (
            (self.params, "gamma"), (self.params, "beta"), (self.state, "running_mean"), (self.state, "running_var"))]
        return graph.node("BatchNormalization", [inputs[0], *constants], f"{self.name}/bn",
                          epsilon=float(self.config["eps"]))

    @property
    def channels(self) -> int:
        return self.input_shape[-1]

    @property
    def reduction_size(self) -> int:
        """The longest array totalled across shards: both backward sums of every channel, side by side."""
        return 2 * self.channels + 1

    def param_shapes(self):
        return {"gamma": (self.channels,), "beta": (self.channels,)}

    def state_shapes(self):
        return {"running_mean": ((self.channels,), 0.0), "running_var": ((self.channels,), 1.0)}

    def initial_value(self, key, shape, rng, init):
        return (np.ones if key == "gamma" else np.zeros)(shape, dtype=self.dtype)

    def explain(self):
        over = "N" if len(self.input_shape) == 1 else f"N × {self.input_shape[0]} × {self.input_shape[1]}"
        return [f"normalizes each of {self.channels} channels over {over} values (the batch"
                + ("" if len(self.input_shape) == 1 else " and every position") + ")",
                f"params = 2·{self.channels} = {self.param_count():,} (gamma, beta); running mean and variance: "
                f"2·{self.channels} more, saved, not trained"]

    def hyperparameter_text(self):
        return f"m={self.config['momentum']:g}"

    def scale_and_shift(self) -> tuple[np.ndarray, np.ndarray]:
        """(a, c), each (C,): at inference the layer is a = x · a + c (what folding into a conv uses)."""
        scale = self.params["gamma"] / np.sqrt(self.state["running_var"] + self.dtype.type(self.config["eps"]))
        return scale, self.params["beta"] - self.state["running_mean"] * scale

    #: set by the model when a training batch is cut into shards: the shards' sums are added up, so
    #: that every shard normalizes with the whole batch's statistics (``shard``: this one's place)
    reducer: parallel.Reducer | None = None
    shard: int = 0

    def forward_traced(self, x):
        """The inference output (running statistics), and a backward that scales by gamma / √(var + eps)."""
        a = self.forward(x, training=False)
        self._cache = ("traced", self.scale_and_shift()[0], a)
        return a

    def _batch_sums(self, sums: np.ndarray) -> np.ndarray:
        return sums if self.reducer is None else self.reducer.total(self.shard, sums)

    def forward(self, x, training=False):
        if not training:
            wide, (scale, shift) = kernels.channel_rows(x, *self.scale_and_shift())
            out = wide * scale
            out += shift
            return activate(self.activation, out.reshape(x.shape))
        rows = x.reshape(-1, self.channels)  # (m, C): every value of a channel in one column
        # column sums as matrix-vector products: NumPy's .sum(axis=0) over a few columns is many times slower
        sums = self._batch_sums(np.append(kernels.column_sums(rows), self.dtype.type(len(rows))))
        m = sums[-1]
        mean = sums[:-1] / m
        wide, (mean_row,) = kernels.channel_rows(x, mean)
        out = wide - mean_row
        var = self._batch_sums(kernels.column_sums(np.square(out).reshape(-1, self.channels))) / m
        if self.shard == 0:  # the state is shared by every shard's copy of the layer: update it once
            momentum = self.dtype.type(self.config["momentum"])
            self.state["running_mean"] *= 1 - momentum
            self.state["running_mean"] += momentum * mean
            self.state["running_var"] *= 1 - momentum
            self.state["running_var"] += momentum * var * (m / (m - 1) if m > 1 else self.dtype.type(1))
        inv_std = 1 / np.sqrt(var + self.dtype.type(self.config["eps"]))
        _, (scale, beta) = kernels.channel_rows(x, self.params["gamma"] * inv_std, self.params["beta"])
        out *= scale
        out += beta
        a = activate(self.activation, out.reshape(x.shape))
        self._cache = (x, mean, inv_std, m, self.kept_output(a))
        return a

    def backward(self, grad):
        """With x̂ = (x − μ) · inv_std, s = gamma · inv_std and sums over the m values of a channel:
        d beta = Σ grad, d gamma = Σ grad · x̂, and
        dx = s · (grad − d beta / m − x̂ · d gamma / m) = s · grad + k · x + c, per channel —
        computed from x itself, so that x̂ is never stored. A shard's grads hold its own part of
        the sums (the model adds the shards' grads); dx needs the whole batch's."""
        if isinstance(self._cache[0], str):  # ("traced", …): an inference forward: a per-channel scale and shift
            _, scale, a = self._cache
            self._cache = None
            return activate_backward(self.activation, a, grad) * scale
        x, mean, inv_std, m, a = self._cache
        self._cache = None
        grad = activate_backward(self.activation, a, grad)
        rows = grad.reshape(-1, self.channels)
        own = np.concatenate([kernels.column_sums(rows), kernels.column_sums((grad * x).reshape(-1, self.channels))])
        self.grads["beta"][...] = own[:self.channels]
        self.grads["gamma"][...] = (own[self.channels:] - mean * own[:self.channels]) * inv_std
        if not self.needs_input_grad:
            return None
        sums = self._batch_sums(own) if self.reducer is not None else own
        d_beta = sums[:self.channels]
        d_gamma = (sums[self.channels:] - mean * d_beta) * inv_std
        scale = self.params["gamma"] * inv_std
        k = -scale * d_gamma * inv_std / m
        c = -scale * d_beta / m - k * mean
        wide, (scale, k, c) = kernels.channel_rows(x, scale, k, c)
        dx = wide * k
        dx += c
        dx += grad.reshape(wide.shape) * scale
        return dx.reshape(x.shape)
