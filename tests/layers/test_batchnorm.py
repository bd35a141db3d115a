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


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_its_activation_is_a_batchnorm_then_that_activation(activation, rng):
    import yamlnet
    layers = [{"name": "c", "type": "conv2d", "filters": 3, "size": 3}, {"type": "flatten"},
              {"type": "dense", "units": 2}]
    joined = yamlnet.build_model({"input": [6, 6, 2], "layers": [
        layers[0], {"name": "bn", "type": "batchnorm", "activation": activation}, *layers[1:]],
        "training": {"dtype": "float64"}})
    apart = yamlnet.build_model({"input": [6, 6, 2], "layers": [
        layers[0], {"name": "bn", "type": "batchnorm"}, {"type": "activation", "activation": activation},
        *layers[1:]], "training": {"dtype": "float64"}})
    apart.load_weights({f"params/{k}": v for k, v in joined.parameters().items()} |
                       {f"state/{k}": v for k, v in joined.states().items()})
    x, y = rng.standard_normal((4, 6, 6, 2)), np.array([0, 1, 1, 0])
    assert joined.loss_and_grad(x, y) == pytest.approx(apart.loss_and_grad(x, y), rel=1e-12)
    for key, value in joined.gradients().items():
        assert rel_error(value, apart.gradients()[key]) < 1e-10, key
    assert rel_error(joined.forward(x), apart.forward(x)) < 1e-10  # at inference: folded into the conv


def test_gradients_with_an_activation(rng):
    layer = make_layer((4, 4, 3), {"type": "batchnorm", "activation": "tanh"})
    check_layer_gradients(layer, rng.standard_normal((5, 4, 4, 3)))
