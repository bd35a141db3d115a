"""Element-wise nonlinearities g: used fused inside conv2d and dense, or as their own layer.

Each backward is written in terms of the *output* a = g(z), so layers keep one array, not two.
"""

from __future__ import annotations

import numpy as np

from yamlnet.layers.base import Layer, register

LEAKY_SLOPE = 0.01


def _relu(z):
    return np.maximum(z, 0, out=z)


def _leaky_relu(z):
    return np.where(z > 0, z, z * z.dtype.type(LEAKY_SLOPE))


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
    hyperparameters = {"activation": {"enum": list(ACTIVATIONS)}}
    required = ("activation",)

    def forward(self, x, training=False):
        self.a = activate(self.activation, x.copy())
        return self.a

    def backward(self, grad):
        return activate_backward(self.activation, self.a, grad)
