"""Element-wise nonlinearities g: used fused inside conv2d and dense, or as their own layer.

Each backward is written in terms of the *output* a = g(z), so layers keep one array, not two.
"""

from __future__ import annotations

import copy

import numpy as np

from yamlnet.layers.base import Layer, register

LEAKY_SLOPE = 0.01


_ZEROS: dict[tuple, np.ndarray] = {}


def _zeros_like_sample(z: np.ndarray) -> np.ndarray:
    """A read-only array of zeros shaped like one sample of the batch ``z``, kept for reuse.

    NumPy's maximum against the scalar 0 runs about 4× slower than against an array of zeros
    (its SIMD loop is taken only when both operands are arrays), so ReLU broadcasts this instead.
    """
    key = (z.shape[1:], z.dtype)
    zeros = _ZEROS.get(key)
    if zeros is None:
        zeros = _ZEROS[key] = np.zeros(z.shape[1:], dtype=z.dtype)
        zeros.flags.writeable = False
    return zeros


def _relu(z):
    return np.maximum(z, _zeros_like_sample(z), out=z)


def _leaky_relu(z):
    # max(z, slope·z) is z above zero and slope·z below, for 0 < slope < 1: two fast passes, no np.where
    return np.maximum(z, z * z.dtype.type(LEAKY_SLOPE), out=z)


def _sigmoid(z):
    # 1 / (1 + e^-z) overflows for very negative z; this form never does.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype, copy=False)


# name → (g(z) (may overwrite z), d loss / dz from (a, d loss / da))
ACTIVATIONS = {
    "linear": (lambda z: z, lambda a, grad: grad),
    "relu": (_relu, lambda a, grad: grad * (a > 0)),
    "leaky_relu": (_leaky_relu, lambda a, grad: np.where(a > 0, grad, grad * a.dtype.type(LEAKY_SLOPE))),
    "sigmoid": (_sigmoid, lambda a, grad: grad * a * (1 - a)),
    "tanh": (lambda z: np.tanh(z, out=z), lambda a, grad: grad * (1 - a * a)),
}
RELU_LIKE = {"relu", "leaky_relu"}

ACTIVATION_KEY = {"enum": list(ACTIVATIONS), "default": "linear"}


def activate(name: str, z: np.ndarray) -> np.ndarray:
    return ACTIVATIONS[name][0](z)


def activate_backward(name: str, a: np.ndarray, grad: np.ndarray) -> np.ndarray:
    return ACTIVATIONS[name][1](a, grad)


@register("activation")
class Activation(Layer):
    """a = g(x), element-wise; any input shape. ``leaky_relu`` has slope 0.01 below zero."""

    description = "element-wise nonlinearity g"
    hyperparameters = {"activation": {"enum": list(ACTIVATIONS), "description": "g, applied to each value"}}
    required = ("activation",)
    drawn_inside = transparent_to_init = runs_in_place = True
    other_names = ("relu",)

    def label(self):
        return self.name  # (its activation is what it is: said where it is drawn)

    def drawn_after(self, chain):
        return f" + {self.activation}" if chain else f"\n+ {self.activation}"

    def onnx(self, graph, inputs, input_shape):
        return inputs[0]  # the exporter adds the activation

    def in_place(self) -> "Activation":
        """A copy of this layer that applies g to its input array itself — for an execution list, where
        nothing else reads that array (the model's layers stay as they are: inspection reads every output)."""
        twin = copy.copy(self)
        twin.overwrites_input = True
        return twin

    def forward(self, x, training=False):
        a = activate(self.activation, x if self.overwrites_input else x.copy())
        if training:
            self._a = a
        return a

    def backward(self, grad):
        a, self._a = self._a, None  # (held no longer than backward needs it: the next step's forward peaks without it)
        return activate_backward(self.activation, a, grad)
