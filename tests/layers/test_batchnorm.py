"""batchnorm: PyTorch's convention by hand, gradients against central differences in both modes."""

import numpy as np
import pytest
from conftest import check_layer_gradients, make_layer
from gradcheck import numerical_gradient, rel_error


@pytest.mark.parametrize("shape", [(3, 4, 2), (5,)])
def test_training_mode_normalizes_with_batch_statistics_and_updates_the_running_ones(shape, rng):
    layer = make_layer(shape, {"type": "batchnorm", "momentum": 0.3})
    layer.params["gamma"][...] = rng.standard_normal(shape[-1])
    layer.params["beta"][...] = rng.standard_normal(shape[-1])
    x = rng.standard_normal((6,) + shape) * 3 + 2
    axes = tuple(range(x.ndim - 1))
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    expected = (x - mean) / np.sqrt(var + 1e-5) * layer.params["gamma"] + layer.params["beta"]
    assert rel_error(layer.forward(x, training=True), expected) < 1e-12
    m = x.size // shape[-1]
    assert np.allclose(layer.state["running_mean"], 0.3 * mean)
    assert np.allclose(layer.state["running_var"], 0.7 + 0.3 * var * m / (m - 1))  # unbiased, as PyTorch
    running = (x - layer.state["running_mean"]) / np.sqrt(layer.state["running_var"] + 1e-5)
    assert rel_error(layer.forward(x), running * layer.params["gamma"] + layer.params["beta"]) < 1e-12
    assert layer.param_count() == 2 * shape[-1]


@pytest.mark.parametrize("shape", [(3, 4, 2), (5,)])
def test_training_mode_gradients(shape, rng):
    layer = make_layer(shape, {"type": "batchnorm"})
    layer.params["gamma"][...] = rng.standard_normal(shape[-1])
    check_layer_gradients(layer, rng.standard_normal((4,) + shape) * 2 + 1)


@pytest.mark.parametrize("shape", [(3, 4, 2), (5,)])
def test_inference_mode_gradients(shape, rng):
    layer = make_layer(shape, {"type": "batchnorm"})
    layer.state["running_mean"][...] = rng.standard_normal(shape[-1])
    layer.state["running_var"][...] = rng.random(shape[-1]) + 0.5
    x = rng.standard_normal((3,) + shape)
    upstream = rng.standard_normal(x.shape)
    scale, _ = layer.scale_and_shift()

    def loss():
        return float(np.sum(layer.forward(x) * upstream))
    assert rel_error(upstream * scale, numerical_gradient(loss, x)) < 1e-8
