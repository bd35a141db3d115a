"""dense: fully connected; every input connects to every unit. z = x·W + b, a = g(z)."""

from __future__ import annotations

import numpy as np

from yamlnet.layers.activation import ACTIVATION_KEY, activate, activate_backward
from yamlnet.layers.base import INT_AT_LEAST_1, Layer, register


@register("dense")
class Dense(Layer):
    """Input (N, n) or a volume (N, n_H, n_W, n_C), flattened in H, W, C order; output (N, units).

    Parameters: ``W`` (inputs, units) and ``b`` (units,).
    """

    description = "fully connected: every input to every unit"
    hyperparameters = {
        "units": {**INT_AT_LEAST_1, "description": "number of outputs"},
        "activation": {**ACTIVATION_KEY, "description": "g applied to z"},
    }
    required = ("units",)
    drawn_with_type = False
    other_names = ("fully_connected", "fc", "linear")
    takes_folded_batchnorm = fresh_output = True

    def onnx(self, graph, inputs, input_shape):
        return graph.node("Gemm", [graph.flat(self.name, inputs[0], input_shape),
                                   graph.constant(f"{self.name}/W", self.params["W"]),
                                   graph.constant(f"{self.name}/b", self.params["b"])], f"{self.name}/gemm")

    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.input_shape))

    def compute_output_shape(self, input_shape):
        return (self.config["units"],)

    def param_shapes(self):
        return {"W": (self.n_inputs, self.config["units"]), "b": (self.config["units"],)}

    def fans(self):
        return self.n_inputs, self.config["units"]

    def macs(self):
        return self.n_inputs * self.config["units"]

    def explain(self):
        n, units = self.n_inputs, self.config["units"]
        return [f"params = {n}·{units} + {units} = {self.param_count():,}",
                f"mult-adds = {n}·{units} = {self.macs():,}"]

    def forward(self, x, training=False):
        """x (N, ...) → a (N, units)."""
        x2 = x.reshape(x.shape[0], -1)
        z = x2 @ self.params["W"]
        z += self.params["b"]
        a = activate(self.activation, z)
        if training:
            self._cache = (x2, x.shape, self.kept_output(a))
        return a

    def backward(self, grad):
        x2, x_shape, a = self._cache
        self._cache = None
        dz = activate_backward(self.activation, a, grad)
        np.matmul(x2.T, dz, out=self.grads["W"])
        np.sum(dz, axis=0, out=self.grads["b"])
        if not self.needs_input_grad:
            return None
        return (dz @ self.params["W"].T).reshape(x_shape)
