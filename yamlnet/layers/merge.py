"""add and concat: the join layers that make a graph of a chain (residual blocks, parallel branches).

Each reads two or more inputs, named in ``inputs``; ``forward`` takes their arrays as a list, in
that order, and ``backward`` returns one gradient per input. No parameters.
"""

from __future__ import annotations

import numpy as np

from yamlnet.errors import ShapeError
from yamlnet.layers.activation import ACTIVATION_KEY, activate, activate_backward
from yamlnet.layers.base import Layer, register, shape_text


@register("add")
class Add(Layer):
    """Inputs x_1 … x_k, each (N, ...) of one shape → a = g(x_1 + … + x_k), the same shape."""

    description = "element-wise sum of two or more inputs of one shape, then g (a residual connection)"
    hyperparameters = {"activation": {**ACTIVATION_KEY, "description": "g applied after the sum"}}
    joins = transparent_to_init = fresh_output = True

    def onnx(self, graph, inputs, input_shape):
        return graph.node("Sum", inputs, f"{self.name}/sum")

    def compute_output_shape(self, input_shapes):
        first = input_shapes[0]
        for name, shape in zip(self.inputs[1:], input_shapes[1:]):
            if shape != first:
                raise ShapeError(f"add needs inputs of one shape: {self.inputs[0]} is {shape_text(first)} but "
                                 f"{name} is {shape_text(shape)}", key="inputs")
        return first

    def explain(self):
        return [f"{' + '.join(self.inputs)}: {len(self.inputs)} inputs of {shape_text(self.output_shape)} summed "
                f"element-wise; no parameters"]

    def forward(self, xs, training=False):
        z = xs[0] + xs[1]
        for x in xs[2:]:
            z += x
        a = activate(self.activation, z)
        if training:
            self._a = self.kept_output(a)
        return a

    def backward(self, grad):
        """d loss / d x_i = d loss / d z for every input: the same array (layers never write to a gradient)."""
        dz = activate_backward(self.activation, self._a, grad)
        self._a = None
        return [dz] * len(self.inputs)


@register("concat")
class Concat(Layer):
    """Volumes (N, n_H, n_W, C_i) with one n_H × n_W → (N, n_H, n_W, ΣC_i), joined along channels in
    ``inputs`` order; vectors (N, n_i) → (N, Σn_i), end to end."""

    description = "join two or more inputs along channels (volumes of one n_H × n_W) or end to end (vectors)"
    joins = transparent_to_init = True

    def onnx(self, graph, inputs, input_shape):
        return graph.node("Concat", inputs, f"{self.name}/concat", axis=1)

    def compute_output_shape(self, input_shapes):
        first_name, first = self.inputs[0], input_shapes[0]
        for name, shape in zip(self.inputs[1:], input_shapes[1:]):
            if len(shape) != len(first):
                volume, vector = ((first_name, first), (name, shape)) if len(first) == 3 else ((name, shape),
                                                                                              (first_name, first))
                raise ShapeError(f"concat cannot join a volume and a vector: {volume[0]} is {shape_text(volume[1])}, "
                                 f"{vector[0]} is a vector of {vector[1][0]}; flatten the volume first",
                                 key="inputs")
            if len(shape) == 3 and shape[:2] != first[:2]:
                raise ShapeError(f"concat joins volumes of one n_H × n_W: {first_name} is {shape_text(first)} but "
                                 f"{name} is {shape_text(shape)}", key="inputs")
        return (*first[:-1], sum(shape[-1] for shape in input_shapes))

    def explain(self):
        sizes = [shape[-1] for shape in self.input_shape]
        what = "channels" if len(self.output_shape) == 3 else "values"
        return [f"{what}: {' + '.join(map(str, sizes))} = {sum(sizes)} ({', '.join(self.inputs)}, in that order); "
                f"no parameters"]

    def forward(self, xs, training=False):
        return np.concatenate(xs, axis=-1)

    def backward(self, grad):
        bounds = np.cumsum([shape[-1] for shape in self.input_shape])[:-1]
        return np.split(grad, bounds, axis=-1)
