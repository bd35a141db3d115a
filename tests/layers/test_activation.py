import numpy as np
import pytest
from conftest import check_layer_gradients, make_layer

from yamlnet.layers.activation import ACTIVATIONS


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_gradients_match_numerical(name, rng):
    layer = make_layer((4, 3, 2), {"type": "activation", "activation": name})
    x = rng.standard_normal((2, 4, 3, 2))
    x[np.abs(x) < 1e-3] = 0.5  # keep clear of the kink at 0
    check_layer_gradients(layer, x)


def test_sigmoid_is_finite_for_huge_inputs():
    layer = make_layer((1, 1, 3), {"type": "activation", "activation": "sigmoid"}, dtype="float32")
    out = layer.forward(np.array([[[[-1e30, 0, 1e30]]]], dtype=np.float32))
    assert np.allclose(out.ravel(), [0, 0.5, 1]) and out.dtype == np.float32


def test_forward_does_not_change_its_input(rng):
    layer = make_layer((2, 2, 1), {"type": "activation", "activation": "relu"})
    x = rng.standard_normal((1, 2, 2, 1))
    kept = x.copy()
    layer.forward(x)
    assert np.array_equal(x, kept)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fast_forms_equal_the_definitions(dtype, rng):
    """ReLU against a broadcast row of zeros and leaky ReLU as max(z, 0.01·z) are the textbook g."""
    x = rng.standard_normal((3, 5, 4, 2)).astype(dtype)
    x[0, 0, 0] = [0.0, -0.0]
    definitions = {"relu": np.where(x > 0, x, 0), "leaky_relu": np.where(x > 0, x, x * x.dtype.type(0.01))}
    for name, expected in definitions.items():
        layer = make_layer((5, 4, 2), {"type": "activation", "activation": name}, dtype=dtype)
        out = layer.forward(x)
        assert out.dtype == x.dtype and np.array_equal(out, expected), name
