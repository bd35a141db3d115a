"""channelscale: multiply each channel by a learned factor — a yamlnet layer type from a package of its own."""

from __future__ import annotations

import numpy as np

from yamlnet.layers import Layer


class ChannelScale(Layer):
    """Input (N, n_H, n_W, C) or (N, C) → the same shape, a = x · s, one factor per channel.

    Parameter ``s`` (C,), starting at ``init``.
    """

    description = "multiply each channel by a learned factor"
    hyperparameters = {"init": {"type": "number", "default": 1.0, "description": "the factors' starting value"}}
    drawn_inside = True         # drawn in the box of the layer it reads, as batchnorm is
    transparent_to_init = True  # initialization looks through it for a ReLU that follows

    def param_shapes(self):
        return {"s": (self.input_shape[-1],)}

    def initial_value(self, key, shape, rng, init):
        return np.full(shape, self.config["init"], dtype=self.dtype)

    def macs(self):
        return int(np.prod(self.input_shape))

    def explain(self):
        return [f"params = {self.input_shape[-1]}: one factor per channel"]

    def forward(self, x, training=False):
        if training:
            self._x = x
        return x * self.params["s"]

    def backward(self, grad):
        x, self._x = self._x, None
        self.grads["s"][...] = (grad * x).reshape(-1, x.shape[-1]).sum(axis=0)
        return grad * self.params["s"] if self.needs_input_grad else None

    def onnx(self, graph, inputs, input_shape):
        factors = self.params["s"].reshape((1, -1, 1, 1) if len(input_shape) == 3 else (1, -1))  # NCHW inside ONNX
        return graph.node("Mul", [inputs[0], graph.constant(f"{self.name}/s", factors)], f"{self.name}/scale")
