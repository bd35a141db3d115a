"""Gradient checks: a layer's backward against central differences (CS231n's ``rel_error``).

    from yamlnet.gradcheck import check_layer
    check_layer({"type": "channelscale"}, input_shape=(5, 5, 3))   # raises AssertionError when they differ

Used by yamlnet's own tests, and by anyone writing a layer type of their own.
"""

from __future__ import annotations

import numpy as np


def rel_error(a, b) -> float:
    """max |a − b| / max(1e-8, |a| + |b|), element by element."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def numerical_gradient(f, array: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """d f() / d array, perturbing ``array`` in place one entry at a time."""
    grad = np.zeros_like(array, dtype=np.float64)
    it = np.nditer(array, flags=["multi_index"], op_flags=["readwrite"])
    for _ in it:
        index = it.multi_index
        old = array[index]
        array[index] = old + h
        plus = f()
        array[index] = old - h
        minus = f()
        array[index] = old
        grad[index] = (plus - minus) / (2 * h)
    return grad


def build_layer(layer: dict, input_shape: tuple, seed: int = 0):
    """One float64 layer of the mapping ``layer`` (as a model file writes it), built for inputs of
    ``input_shape`` (a volume (n_H, n_W, n_C) or a vector (n,)) through the schema like any file."""
    from yamlnet.model import build_model

    volume = len(input_shape) == 3
    model = build_model({"input": list(input_shape) if volume else [1, 1, input_shape[0]],
                         "layers": ([] if volume else [{"type": "flatten"}]) + [layer],
                         "training": {"dtype": "float64", "seed": seed}})
    built = model.layers[-1]
    built.needs_input_grad = True
    return built


def check_layer(layer: dict, input_shape: tuple, *, batch: int = 3, tolerance: float = 1e-6, seed: int = 1) -> None:
    """Assert that the layer's backward gives d L / d x and d L / d every parameter as central
    differences of L = sum(forward(x) · R) do, for random x and R, in float64."""
    built = build_layer(layer, input_shape)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *input_shape))
    upstream = rng.standard_normal(built.forward(x, training=True).shape)

    def loss() -> float:
        return float(np.sum(built.forward(x, training=True) * upstream))

    built.forward(x, training=True)
    dx = built.backward(upstream.copy())
    assert rel_error(dx, numerical_gradient(loss, x)) < tolerance, "d loss / d input"
    for key, param in built.params.items():
        built.forward(x, training=True)
        built.backward(upstream.copy())
        assert rel_error(built.grads[key].copy(), numerical_gradient(loss, param)) < tolerance, key
