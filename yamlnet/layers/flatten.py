"""flatten: a volume (N, n_H, n_W, n_C) → vectors (N, n_H·n_W·n_C), in H, W, C order."""

from __future__ import annotations

import numpy as np

from yamlnet.layers.base import Layer, register


@register("flatten")
class Flatten(Layer):
    description = "volume → vector, in H, W, C order"
    transparent_to_init = True

    def onnx(self, graph, inputs, input_shape):
        return graph.flat(self.name, inputs[0], input_shape)

    def compute_output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, x, training=False):
        self._input_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad):
        return grad.reshape(self._input_shape)
