"""softmax: class probabilities. As the last layer, training fuses it with cross-entropy (losses.py)."""

from __future__ import annotations

import numpy as np

from yamlnet.layers.base import Layer, register


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, n), shifted by the row max so that huge values do not overflow."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    e /= e.sum(axis=-1, keepdims=True)
    return e


@register("softmax")
class Softmax(Layer):
    """(N, n) → (N, n) probabilities that sum to 1 along the last axis."""

    description = "probabilities over the classes"
    gives_probabilities = True

    def onnx(self, graph, inputs, input_shape):
        return graph.node("Softmax", inputs, f"{self.name}/softmax", axis=-1)

    def forward(self, x, training=False):
        self._p = softmax(x)
        return self._p

    def backward(self, grad):
        p = self._p
        return p * (grad - np.sum(grad * p, axis=-1, keepdims=True))
