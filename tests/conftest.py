import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

import yamlnet  # noqa: E402
from gradcheck import numerical_gradient, rel_error  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def make_layer(input_shape, layer: dict, dtype="float64", seed=0):
    """One built layer of ``layer``'s type, resolved through the schema like any model file."""
    model = yamlnet.build_model({"input": list(input_shape) if len(input_shape) == 3 else [1, 1, input_shape[0]],
                                 "layers": ([{"type": "flatten"}] if len(input_shape) == 1 else []) + [layer],
                                 "training": {"dtype": dtype, "seed": seed}})
    built = model.layers[-1]
    built.needs_input_grad = True
    built.rng = np.random.default_rng(seed)
    return built


def check_layer_gradients(layer, x, *, tolerance=1e-6, seed=1):
    """Compare a layer's backward with central differences of sum(forward(x) · R)."""
    rng = np.random.default_rng(seed)
    out = layer.forward(x, training=True)
    upstream = rng.standard_normal(out.shape)
    dx = layer.backward(upstream.copy())

    def loss():
        if layer.type == "dropout":
            layer.rng = np.random.default_rng(seed)
        return float(np.sum(layer.forward(x, training=True) * upstream))

    if layer.type == "dropout":
        layer.rng = np.random.default_rng(seed)
        layer.forward(x, training=True)
        dx = layer.backward(upstream.copy())
    assert rel_error(dx, numerical_gradient(loss, x)) < tolerance
    for key, param in layer.params.items():
        layer.forward(x, training=True)
        layer.backward(upstream.copy())
        analytic = layer.grads[key].copy()
        assert rel_error(analytic, numerical_gradient(loss, param)) < tolerance, key


@pytest.fixture
def rng():
    return np.random.default_rng(0)
