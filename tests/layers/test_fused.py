"""Fused conv + max-pool against its slow twin, the two layers run one after the other."""

import numpy as np
import pytest
from conftest import check_layer_gradients
from gradcheck import rel_error

import yamlnet
from yamlnet.layers.fused import ConvMaxPool, PassThrough, fuse

CASES = [  # input shape, filters, size, padding, activation
    ((28, 28, 1), 6, 5, 2, "relu"),     # LeNet's first pair: column-major columns
    ((9, 11, 3), 4, 2, 0, "relu"),      # odd conv output (8 × 10 → 4 × 5) and an odd input
    ((7, 9, 3), 2, 3, 1, "linear"),     # odd conv output 7 × 9: the last row and column are never read
    ((10, 10, 6), 3, 3, 0, "relu"),     # wider windows: row-major columns
]


def pair(shape, filters, size, padding, activation, dtype="float64", seed=0):
    """A model of conv → 2 × 2 max-pool, its layers, and its fused execution."""
    model = yamlnet.build_model({
        "input": list(shape),
        "layers": [{"type": "conv2d", "filters": filters, "size": size, "padding": padding, "activation": activation},
                   {"type": "maxpool2d", "size": 2}, {"type": "flatten"}],
        "training": {"dtype": dtype, "seed": seed}})
    conv, pool = model.layers[:2]
    conv.needs_input_grad = True
    return model, conv, pool, ConvMaxPool(conv, pool)


@pytest.mark.parametrize("shape, filters, size, padding, activation", CASES)
def test_equals_the_conv_then_the_pool(shape, filters, size, padding, activation, rng):
    _, conv, pool, fused = pair(shape, filters, size, padding, activation)
    conv.params["b"][...] = rng.standard_normal(filters)
    x = rng.standard_normal((5,) + shape)
    expected = pool.forward(conv.forward(x, training=True), training=True)
    grad = rng.standard_normal(expected.shape)
    expected_dx = conv.backward(pool.backward(grad))
    expected_grads = {key: value.copy() for key, value in conv.grads.items()}
    out = fused.forward(x, training=True)
    dx = fused.backward(grad)
    assert rel_error(out, expected) < 1e-12
    assert rel_error(dx, expected_dx) < 1e-10
    for key, value in expected_grads.items():
        assert rel_error(conv.grads[key], value) < 1e-10, key
    assert np.array_equal(fused.forward(x), out)  # inference: the same, nothing kept


def test_ties_go_to_the_first_maximum_in_row_major_order(rng):
    """Whole-number inputs and weights make exact ties (and ReLU's zeros tie too): the gradients must
    still equal the unfused pair's, which routes each window's gradient to its first maximum."""
    _, conv, pool, fused = pair((8, 8, 1), 2, 1, 0, "relu")
    conv.params["W"][...] = np.array([1.0, -1.0]).reshape(1, 1, 1, 2)
    x = rng.integers(-2, 3, (4, 8, 8, 1)).astype(np.float64)
    grad = rng.standard_normal((4, 4, 4, 2))
    pool.forward(conv.forward(x, training=True), training=True)
    expected_dx = conv.backward(pool.backward(grad))
    expected_dw = conv.grads["W"].copy()
    fused.forward(x, training=True)
    assert np.array_equal(fused.backward(grad), expected_dx)  # routed to the same inputs
    assert rel_error(conv.grads["W"], expected_dw) < 1e-12  # summed in another order


@pytest.mark.parametrize("activation", ["relu", "linear"])
def test_gradients_match_numerical(activation, rng):
    _, conv, _, fused = pair((7, 8, 2), 3, 3, 1, activation)
    conv.params["b"][...] = rng.standard_normal(3) * 0.1
    fused.type = "conv2d"  # check_layer_gradients treats it as any layer with params
    check_layer_gradients(fused, rng.standard_normal((2, 7, 8, 2)))


def test_chunked_and_rebuilt_columns_give_the_same_result(rng, monkeypatch):
    from yamlnet import kernels

    _, conv, _, fused = pair((12, 12, 1), 4, 3, 1, "relu")
    x, grad = rng.standard_normal((5, 12, 12, 1)), rng.standard_normal((5, 6, 6, 4))
    whole = fused.forward(x, training=True), fused.backward(grad), conv.grads["W"].copy()
    monkeypatch.setattr(kernels, "KEEP_COLS_BYTES", 1)  # columns rebuilt in backward
    monkeypatch.setattr(kernels, "CACHE_BYTES", 1)  # one sample per chunk
    chunked = fused.forward(x, training=True), fused.backward(grad), conv.grads["W"].copy()
    for a, b in zip(whole, chunked):
        assert rel_error(a, b) < 1e-12


def lenet_like(**changes):
    conv = {"name": "conv", "type": "conv2d", "filters": 4, "size": 3, "padding": 1, "activation": "relu"}
    pool = {"name": "pool", "type": "maxpool2d", "size": 2}
    conv.update(changes.pop("conv", {}))
    pool.update(changes.pop("pool", {}))
    return {"input": changes.pop("input", [8, 8, 1]),
            "layers": [conv, pool, {"type": "flatten"}, {"type": "dense", "units": 3}, {"type": "softmax"}],
            **changes}


@pytest.mark.parametrize("change, fused", [
    ({}, True),
    ({"input": [8, 8, 3]}, True),
    ({"conv": {"activation": "linear"}}, True),
    ({"input": [8, 8, 6]}, False),                       # wide windows: the pair runs faster apart
    ({"conv": {"stride": 2}}, False),
    ({"conv": {"activation": "tanh"}}, False),
    ({"pool": {"size": 3}}, False),
    ({"pool": {"stride": 1}}, False),
    ({"pool": {"padding": 1}}, False),
    ({"pool": {"type": "avgpool2d"}}, False),
])
def test_fuse_applies_where_it_is_exact_and_pays(change, fused):
    model = yamlnet.build_model(lenet_like(**change))
    run = fuse(model.layers, model.graph)
    assert isinstance(run[0], ConvMaxPool) is fused
    assert isinstance(run[1], PassThrough) is fused
    assert [layer.type for layer in model.layers[:2]] == ["conv2d", change.get("pool", {}).get("type", "maxpool2d")]


def test_a_conv_read_by_another_layer_too_is_not_fused():
    config = lenet_like()
    config["layers"][2:2] = [{"name": "skip", "type": "maxpool2d", "size": 2, "inputs": "conv"},
                             {"name": "join", "type": "add", "inputs": ["pool", "skip"]}]
    model = yamlnet.build_model(config)
    assert not any(isinstance(layer, ConvMaxPool) for layer in fuse(model.layers, model.graph))


@pytest.mark.parametrize("dtype, shards", [("float32", 1), ("float64", 1), ("float64", 2)])
def test_a_model_trains_the_same_fused_or_not(dtype, shards, monkeypatch):
    """Training steps, the file's layers and parameter names: the same with and without the pass,
    on whole batches and in shards (each shard's copies of the layers fused on their own)."""
    from yamlnet import execution, parallel, workers

    monkeypatch.setattr(parallel, "MIN_SHARD_MACS", 1)
    monkeypatch.setattr(workers, "ENABLED", False)  # shards on threads, where the pass can be turned off

    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 12, 12, 1)).astype(dtype)
    y = rng.integers(0, 3, 40)
    config = lenet_like(input=[12, 12, 1], training={"dtype": dtype, "learning_rate": 0.1, "shards": shards})
    results = []
    for fusing in (True, False):
        if not fusing:
            monkeypatch.setattr(execution, "fuse", lambda layers, graph: list(layers))
        model = yamlnet.build_model(config)
        assert isinstance(model.execution(training=True)[0], ConvMaxPool) is fusing
        losses = []
        for _ in range(3):
            losses.append(model.loss_and_grad(x, y))
            for key, param in model.parameters().items():
                param -= 0.1 * model.gradients()[key]
        results.append((losses, model.parameters(), model.forward(x)))
    (fused_losses, fused_params, fused_out), (losses, params, out) = results
    tolerance = 1e-12 if dtype == "float64" else 1e-5
    assert np.allclose(fused_losses, losses, rtol=tolerance, atol=0)
    assert list(fused_params) == list(params) == ["conv/W", "conv/b", "dense1/W", "dense1/b"]
    for key in params:
        assert np.max(np.abs(fused_params[key] - params[key])) <= tolerance * np.max(np.abs(params[key])), key
    assert np.max(np.abs(fused_out - out)) < tolerance
