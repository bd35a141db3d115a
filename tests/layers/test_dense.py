import pytest
from conftest import check_layer_gradients, make_layer
from gradcheck import rel_error
from reference import dense_naive


@pytest.mark.parametrize("shape", [(7,), (3, 2, 4)])
@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid", "tanh", "leaky_relu"])
def test_gradients_match_numerical(shape, activation, rng):
    layer = make_layer(shape, {"type": "dense", "units": 5, "activation": activation})
    layer.params["b"][...] = rng.standard_normal(5) * 0.1
    check_layer_gradients(layer, rng.standard_normal((3,) + shape))


def test_forward_flattens_volumes_in_h_w_c_order(rng):
    layer = make_layer((3, 2, 4), {"type": "dense", "units": 5})
    layer.params["b"][...] = rng.standard_normal(5)
    x = rng.standard_normal((2, 3, 2, 4))
    assert layer.params["W"].shape == (24, 5)
    assert rel_error(layer.forward(x), dense_naive(x, layer.params["W"], layer.params["b"])) < 1e-12
    assert layer.param_count() == 24 * 5 + 5 and layer.macs() == 24 * 5
