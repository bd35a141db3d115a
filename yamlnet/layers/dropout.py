"""dropout: inverted dropout; identity when not training."""

from __future__ import annotations

import numpy as np

from yamlnet.layers.base import Layer, register


@register("dropout")
class Dropout(Layer):
    """While training, zero each value with probability ``rate`` and scale the rest by 1 / (1 − rate),
    so that nothing needs rescaling at inference. Any input shape; the mask is drawn from the model's
    random generator, so runs repeat exactly.
    """

    description = "zero a random share of values while training"
    hyperparameters = {"rate": {"type": "number", "minimum": 0, "exclusiveMaximum": 1, "default": 0.5,
                                "description": "probability of dropping each value"}}
    drawn_inside = transparent_to_init = True

    def onnx(self, graph, inputs, input_shape):
        return inputs[0]  # identity at inference

    #: uniform draws (N, ...) for the next training forward, set by the model when it cuts a batch
    #: into shards: the whole batch's draws come from ``rng`` in one go, as they would unsharded
    noise: np.ndarray | None = None

    def build(self, input_shape, rng, dtype=np.float32, init="glorot"):
        super().build(input_shape, rng, dtype, init)
        self.rng = rng

    def replica(self):
        twin = super().replica()
        twin.rng = self.rng
        return twin

    @property
    def draws_noise(self) -> bool:
        return self.config["rate"] > 0

    def draw_noise(self, n: int) -> np.ndarray | None:
        """The uniform draws (n, ...) that a training forward of n samples would make; None at rate 0."""
        rate = self.config["rate"]
        return self.rng.random((n, *self.input_shape), dtype=self.dtype) if rate > 0 else None

    def forward(self, x, training=False):
        rate = self.config["rate"]
        noise, self.noise = self.noise, None
        if not training or rate == 0:
            self._mask = None
            return x
        keep = (self.rng.random(x.shape, dtype=x.dtype) if noise is None else noise) >= rate
        self._mask = keep * x.dtype.type(1.0 / (1.0 - rate))
        return x * self._mask

    def backward(self, grad):
        mask, self._mask = self._mask, None
        return grad if mask is None else grad * mask

    def forward_traced(self, x):
        return self.forward(x, training=False)  # the identity, and a backward that passes grad on
