import numpy as np
from conftest import check_layer_gradients, make_layer


def test_flattens_in_h_w_c_order(rng):
    layer = make_layer((2, 3, 4), {"type": "flatten"})
    x = rng.standard_normal((2, 2, 3, 4))
    assert layer.output_shape == (24,)
    assert np.array_equal(layer.forward(x)[1], x[1].ravel(order="C"))


def test_gradients_match_numerical(rng):
    check_layer_gradients(make_layer((2, 3, 4), {"type": "flatten"}), rng.standard_normal((2, 2, 3, 4)))
