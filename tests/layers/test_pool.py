import numpy as np
import pytest
from conftest import check_layer_gradients, make_layer
from gradcheck import rel_error
from reference import pool_naive

CASES = [  # input shape, size, stride, padding
    ((4, 4, 2), 2, 2, 0),   # tiles: the reshape path
    ((5, 5, 1), 2, 2, 0),   # floor drops a row and a column
    ((7, 6, 3), 3, 2, 1),
    ((6, 6, 2), 3, 1, "same"),
    ((8, 5, 2), 2, 3, 1),
    ((9, 9, 1), 3, 3, 0),
]


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("shape, size, stride, padding", CASES)
def test_forward_and_backward_match_plain_loops(mode, shape, size, stride, padding, rng):
    layer = make_layer(shape, {"type": f"{mode}pool2d", "size": size, "stride": stride, "padding": padding})
    x = rng.standard_normal((2,) + shape)
    out = layer.forward(x, training=True)
    grad = rng.standard_normal(out.shape)
    expected, expected_dx = pool_naive(x, size, stride, layer.p, mode, grad)
    assert rel_error(out, expected) < 1e-12
    assert rel_error(layer.backward(grad), expected_dx) < 1e-12


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("shape, size, stride, padding", CASES)
def test_gradients_match_numerical_without_ties(mode, shape, size, stride, padding, rng):
    layer = make_layer(shape, {"type": f"{mode}pool2d", "size": size, "stride": stride, "padding": padding})
    check_layer_gradients(layer, rng.standard_normal((2,) + shape))


@pytest.mark.parametrize("shape, size, stride", [((4, 4, 1), 2, 2), ((5, 5, 2), 3, 1)])
def test_max_ties_route_the_gradient_to_the_first_maximum(shape, size, stride, rng):
    layer = make_layer(shape, {"type": "maxpool2d", "size": size, "stride": stride})
    x = rng.integers(0, 2, (2,) + shape).astype(np.float64)  # many ties
    out = layer.forward(x, training=True)
    grad = rng.standard_normal(out.shape)
    dx = layer.backward(grad)
    assert rel_error(dx, pool_naive(x, size, stride, 0, "max", grad)[1]) < 1e-12
    if stride == size:  # windows do not overlap: each window's gradient lands once, in full
        assert np.isclose(dx.sum(), grad.sum())


def test_stride_defaults_to_size():
    layer = make_layer((8, 8, 1), {"type": "maxpool2d", "size": 2})
    assert layer.s == 2 and layer.output_shape == (4, 4, 1)


def test_max_padding_is_never_the_max(rng):
    layer = make_layer((3, 3, 1), {"type": "maxpool2d", "size": 3, "stride": 1, "padding": 1})
    x = -np.abs(rng.standard_normal((1, 3, 3, 1))) - 1  # all negative: zeros in padding would win
    assert np.all(layer.forward(x) < 0)


def test_global_average_pooling_is_the_mean_of_each_channel(rng):
    layer = make_layer((3, 5, 4), {"type": "globalavgpool2d"})
    assert layer.output_shape == (4,) and layer.param_count() == 0
    x = rng.standard_normal((2, 3, 5, 4))
    assert rel_error(layer.forward(x), x.mean(axis=(1, 2))) < 1e-14
    check_layer_gradients(layer, x)
