import numpy as np
import pytest
from conftest import check_layer_gradients, make_layer
from gradcheck import rel_error
from reference import conv2d_naive

from yamlnet import kernels

CASES = [  # input shape, filters, size, stride, padding
    ((5, 5, 1), 2, 3, 1, 0),
    ((6, 7, 3), 4, 3, 2, 1),
    ((7, 5, 2), 3, 2, 3, 2),
    ((9, 9, 2), 2, 5, 2, "same_ok"),
    ((5, 6, 3), 3, 3, 1, "same"),
    ((8, 8, 2), 2, 4, 3, 0),
    ((6, 20, 1), 3, 5, 1, 2),   # wide and thin: the column-major im2col path
    ((9, 25, 3), 2, 3, 2, 1),
]


@pytest.mark.parametrize("shape, filters, size, stride, padding", CASES)
def test_forward_matches_plain_loops(shape, filters, size, stride, padding, rng):
    padding = 0 if padding == "same_ok" else padding
    layer = make_layer(shape, {"type": "conv2d", "filters": filters, "size": size, "stride": stride,
                               "padding": padding})
    layer.params["b"][...] = rng.standard_normal(filters)
    x = rng.standard_normal((2,) + shape)
    expected = conv2d_naive(x, layer.params["W"], layer.params["b"], stride, layer.p)
    assert rel_error(layer.forward(x), expected) < 1e-10


@pytest.mark.parametrize("shape, filters, size, stride, padding", CASES)
@pytest.mark.parametrize("activation", ["linear", "tanh"])
def test_gradients_match_numerical(shape, filters, size, stride, padding, activation, rng):
    padding = 0 if padding == "same_ok" else padding
    layer = make_layer(shape, {"type": "conv2d", "filters": filters, "size": size, "stride": stride,
                               "padding": padding, "activation": activation})
    layer.params["b"][...] = rng.standard_normal(filters) * 0.1
    check_layer_gradients(layer, rng.standard_normal((2,) + shape))


GROUPED = [  # input shape, filters, size, stride, padding, groups, dilation
    ((6, 6, 4), 4, 3, 1, 1, 4, 1),     # depthwise
    ((7, 6, 3), 6, 3, 2, 2, 3, 1),     # depthwise, two filters per channel, strided
    ((9, 8, 4), 6, 3, 1, 0, 2, 1),     # grouped
    ((9, 9, 2), 4, 3, 1, 2, 1, 2),     # dilated
    ((10, 9, 4), 4, 3, 2, 2, 2, 2),    # grouped, dilated, strided
    ((9, 9, 3), 3, 3, 1, "same", 3, 3),  # depthwise, dilated, same padding
    ((8, 7, 2), 2, 2, 1, "same", 1, 2),  # an even size: same padding works where d·(f − 1) is even
]


@pytest.mark.parametrize("shape, filters, size, stride, padding, groups, dilation", GROUPED)
def test_grouped_and_dilated_forward_matches_plain_loops(shape, filters, size, stride, padding, groups, dilation,
                                                         rng):
    layer = make_layer(shape, {"type": "conv2d", "filters": filters, "size": size, "stride": stride,
                               "padding": padding, "groups": groups, "dilation": dilation})
    assert layer.params["W"].shape == (size, size, shape[2] // groups, filters)
    layer.params["b"][...] = rng.standard_normal(filters)
    x = rng.standard_normal((2,) + shape)
    expected = conv2d_naive(x, layer.params["W"], layer.params["b"], stride, layer.p, groups, dilation)
    assert rel_error(layer.forward(x), expected) < 1e-10
    assert (2, *layer.output_shape) == expected.shape


@pytest.mark.parametrize("shape, filters, size, stride, padding, groups, dilation", GROUPED)
@pytest.mark.parametrize("activation", ["linear", "tanh"])
def test_grouped_and_dilated_gradients_match_numerical(shape, filters, size, stride, padding, groups, dilation,
                                                       activation, rng):
    layer = make_layer(shape, {"type": "conv2d", "filters": filters, "size": size, "stride": stride,
                               "padding": padding, "groups": groups, "dilation": dilation, "activation": activation})
    layer.params["b"][...] = rng.standard_normal(filters) * 0.1
    check_layer_gradients(layer, rng.standard_normal((2,) + shape))


def test_groups_must_divide_channels_and_filters():
    import yamlnet
    with pytest.raises(yamlnet.ShapeError, match="groups must divide both the input's channels and filters: "
                                                 "3 input channels and 4 filters in 2 groups"):
        make_layer((6, 6, 3), {"type": "conv2d", "filters": 4, "size": 3, "groups": 2})


def test_dilation_in_the_size_formula_and_the_counts():
    layer = make_layer((9, 9, 4), {"type": "conv2d", "filters": 8, "size": 3, "dilation": 2, "groups": 2})
    assert layer.output_shape == (5, 5, 8)  # floor((9 − 2·2 − 1) / 1) + 1
    assert layer.explain()[0] == "n_H = n_W = floor((9 + 2·0 − 2·(3 − 1) − 1) / 1) + 1 = 5"
    assert layer.param_count() == 3 * 3 * 2 * 8 + 8 and layer.macs() == 5 * 5 * 8 * 3 * 3 * 2
    assert layer.hyperparameter_text() == "f=3 s=1 p=0 d=2 g=2"


def test_relu_gradients_match_numerical(rng):
    layer = make_layer((6, 6, 2), {"type": "conv2d", "filters": 3, "size": 3, "padding": 1, "activation": "relu"})
    check_layer_gradients(layer, rng.standard_normal((2, 6, 6, 2)))


def test_chunked_and_rebuilt_columns_give_the_same_result(rng, monkeypatch):
    layer = make_layer((7, 7, 3), {"type": "conv2d", "filters": 4, "size": 3, "stride": 2, "padding": 1})
    x = rng.standard_normal((5, 7, 7, 3))
    grad = rng.standard_normal((5, 4, 4, 4))
    whole = layer.forward(x, training=True)
    dx_whole = layer.backward(grad)
    dw_whole = layer.grads["W"].copy()
    monkeypatch.setattr(kernels, "KEEP_COLS_BYTES", 1)  # columns rebuilt in backward
    monkeypatch.setattr(kernels, "CACHE_BYTES", 1)  # one sample per chunk
    assert len(kernels.batch_chunks(5, 100)) == 5
    chunked = layer.forward(x, training=True)
    dx_chunked = layer.backward(grad)
    assert rel_error(whole, chunked) < 1e-12
    assert rel_error(dx_whole, dx_chunked) < 1e-12
    assert rel_error(dw_whole, layer.grads["W"]) < 1e-12


def test_both_backward_paths_give_the_same_gradients(rng, monkeypatch):
    layer = make_layer((6, 7, 3), {"type": "conv2d", "filters": 4, "size": 3, "padding": "same", "activation": "relu"})
    assert layer._grads_from_dz_columns()
    x, grad = rng.standard_normal((3, 6, 7, 3)), rng.standard_normal((3, 6, 7, 4))
    results = []
    for from_dz in (True, False):
        monkeypatch.setattr(kernels, "grads_from_dz_columns_pay", lambda f, s, p: from_dz)
        a = layer.forward(x, training=True)
        results.append((a, layer.backward(grad), layer.grads["W"].copy(), layer.grads["b"].copy()))
    for from_dz, from_x in zip(*results):
        assert rel_error(from_dz, from_x) < 1e-12


def test_first_layer_computes_no_input_gradient(rng):
    import yamlnet
    model = yamlnet.build_model({"input": [5, 5, 1], "layers": [
        {"type": "conv2d", "filters": 2, "size": 3}, {"type": "conv2d", "filters": 2, "size": 3},
        {"type": "dense", "units": 3}, {"type": "softmax"}]})
    first, second = model.layers[:2]
    assert not first.needs_input_grad and second.needs_input_grad
    first.forward(rng.standard_normal((1, 5, 5, 1)).astype(np.float32), training=True)
    assert first.backward(np.ones((1, 3, 3, 2), np.float32)) is None


def test_course_notes_ten_3x3x3_filters_have_280_parameters():
    layer = make_layer((39, 39, 3), {"type": "conv2d", "filters": 10, "size": 3})
    assert layer.param_count() == 280
    assert layer.params["W"].shape == (3, 3, 3, 10) and layer.params["b"].shape == (10,)
    from yamlnet.config import load_config
    from yamlnet.plan import make_layers
    config = load_config({"input": [1000, 1000, 3], "layers": [{"type": "conv2d", "filters": 10, "size": 3}]})
    assert make_layers(config)[0].param_count() == 280  # whatever the image size


def test_float32_forward_and_backward_stay_float32(rng):
    layer = make_layer((6, 6, 2), {"type": "conv2d", "filters": 3, "size": 3, "stride": 2, "padding": 1,
                                   "activation": "relu"}, dtype="float32")
    x = rng.standard_normal((2, 6, 6, 2)).astype(np.float32)
    out = layer.forward(x, training=True)
    dx = layer.backward(np.ones_like(out))
    assert out.dtype == dx.dtype == layer.grads["W"].dtype == np.float32
