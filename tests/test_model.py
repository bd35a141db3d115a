import re

import numpy as np
import pytest
from gradcheck import numerical_gradient, rel_error

import yamlnet
from yamlnet import parallel
from yamlnet.errors import DataError, ShapeError
from yamlnet.plan import make_layers


def shape_of(input_shape, layer):
    from yamlnet.config import load_config
    config = load_config({"input": list(input_shape), "layers": [layer]})
    return make_layers(config)[0].output_shape


@pytest.mark.parametrize("input_shape, layer, expected", [
    ((39, 39, 3), {"type": "conv2d", "filters": 10, "size": 3}, (37, 37, 10)),
    ((37, 37, 10), {"type": "conv2d", "filters": 20, "size": 5, "stride": 2}, (17, 17, 20)),
    ((17, 17, 20), {"type": "conv2d", "filters": 40, "size": 5, "stride": 2}, (7, 7, 40)),
    ((6, 6, 1), {"type": "conv2d", "filters": 1, "size": 3}, (4, 4, 1)),
    ((6, 6, 1), {"type": "conv2d", "filters": 1, "size": 3, "padding": 1}, (6, 6, 1)),
    ((6, 6, 1), {"type": "conv2d", "filters": 1, "size": 3, "padding": 2}, (8, 8, 1)),
    ((7, 7, 1), {"type": "conv2d", "filters": 1, "size": 3, "stride": 3}, (2, 2, 1)),
    ((7, 5, 2), {"type": "conv2d", "filters": 3, "size": 5, "padding": "same"}, (7, 5, 3)),
    ((10, 6, 3), {"type": "conv2d", "filters": 2, "size": 3, "stride": 2, "padding": 1}, (5, 3, 2)),
    ((9, 9, 1), {"type": "conv2d", "filters": 1, "size": 4, "padding": "valid"}, (6, 6, 1)),
    ((28, 28, 6), {"type": "maxpool2d", "size": 2}, (14, 14, 6)),
    ((5, 5, 2), {"type": "avgpool2d", "size": 2}, (2, 2, 2)),
    ((7, 6, 3), {"type": "maxpool2d", "size": 3, "stride": 2, "padding": 1}, (4, 3, 3)),
    ((7, 7, 40), {"type": "flatten"}, (1960,)),
    ((7, 7, 40), {"type": "dense", "units": 10}, (10,)),
])
def test_shape_formula_by_hand(input_shape, layer, expected):
    assert shape_of(input_shape, layer) == expected


@pytest.mark.parametrize("input_shape, layer, message", [
    ((4, 4, 1), {"type": "conv2d", "filters": 1, "size": 5},
     "layers[0] (conv2d1).size: output would be smaller than 1: n_H = floor((4 + 2·0 − 5) / 1) + 1 = 0"),
    ((8, 8, 1), {"type": "conv2d", "filters": 1, "size": 4, "padding": "same"},
     "'same' padding needs stride 1 and an odd size, got size 4 and stride 1"),
    ((8, 8, 1), {"type": "conv2d", "filters": 1, "size": 3, "stride": 2, "padding": "same"}, "needs stride 1"),
    ((8, 8, 1), {"type": "maxpool2d", "size": 2, "padding": 2}, "padding may be at most size // 2 = 1, got 2"),
])
def test_impossible_shapes_are_shape_errors(input_shape, layer, message):
    with pytest.raises(ShapeError, match=re.escape(message)):
        shape_of(input_shape, layer)


def test_conv_after_flatten_is_a_shape_error():
    with pytest.raises(ShapeError, match="needs a volume"):
        yamlnet.build_model({"input": [4, 4, 1], "layers": [{"type": "flatten"},
                                                             {"type": "conv2d", "filters": 1, "size": 1}]})


TINY = {
    "input": [7, 6, 2],
    "layers": [
        {"type": "conv2d", "filters": 3, "size": 3, "stride": 1, "padding": 1, "activation": "tanh"},
        {"type": "maxpool2d", "size": 2},
        {"type": "conv2d", "filters": 4, "size": 2, "stride": 2, "padding": "valid", "activation": "sigmoid"},
        {"type": "avgpool2d", "size": 1},
        {"type": "dropout", "rate": 0.0},
        {"type": "flatten"},
        {"type": "dense", "units": 5, "activation": "leaky_relu"},
        {"type": "activation", "activation": "tanh"},
        {"type": "dense", "units": 3},
        {"type": "softmax"},
    ],
    "training": {"dtype": "float64", "seed": 3},
}


def test_whole_model_gradients_match_numerical():
    model = yamlnet.build_model(TINY)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 7, 6, 2)), np.array([0, 2, 1, 2])
    for key, param in model.parameters().items():
        model.loss_and_grad(x, y)  # the numerical checks of earlier keys left their last probe's grads
        analytic = model.gradients()[key].copy()
        numerical = numerical_gradient(lambda: model.loss_and_grad(x, y), param)
        assert rel_error(analytic, numerical) < 1e-6, key


def test_forward_gives_probabilities_and_same_seed_same_weights():
    first, second = yamlnet.build_model(TINY), yamlnet.build_model(TINY)
    for key, value in first.parameters().items():
        assert np.array_equal(value, second.parameters()[key])
    probs = first.forward(np.ones((2, 7, 6, 2)))
    assert probs.shape == (2, 3) and np.allclose(probs.sum(axis=1), 1)
    other = yamlnet.build_model({**TINY, "training": {"seed": 4, "dtype": "float64"}})
    assert not np.array_equal(other.layers[0].params["W"], first.layers[0].params["W"])


@pytest.mark.parametrize("shards", [2, 3])
def test_a_batch_cut_into_shards_gives_what_the_whole_batch_gives(shards, monkeypatch):
    """Shards on threads (yamlnet.parallel): same loss, probabilities, gradients and dropout masks."""
    from yamlnet import workers
    monkeypatch.setattr(workers, "ENABLED", False)
    monkeypatch.setattr(parallel, "MIN_SHARD_MACS", 1)
    layers = [{**layer, "rate": 0.4} if layer["type"] == "dropout" else layer for layer in TINY["layers"]]
    whole = yamlnet.build_model({**TINY, "layers": layers, "training": {**TINY["training"], "shards": 1}})
    sharded = yamlnet.build_model({**TINY, "layers": layers, "training": {**TINY["training"], "shards": shards}})
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((10, 7, 6, 2)), rng.integers(0, 3, 10)
    for step in range(2):  # the second time after an update of the shared weights
        expected = [whole.train_step_forward(x, y), whole.forward(x)]
        got = [sharded.train_step_forward(x, y), sharded.forward(x)]
        assert len(sharded.shards.cut(len(x))) == shards
        assert got[0][0] == pytest.approx(expected[0][0], abs=1e-12)
        assert np.allclose(got[0][1], expected[0][1], atol=1e-12) and np.allclose(got[1], expected[1], atol=1e-12)
        for key, grad in whole.gradients().items():
            assert np.allclose(sharded.gradients()[key], grad, atol=1e-12), key
        assert sharded.rng.bit_generator.state == whole.rng.bit_generator.state  # the same draws
        for model in (whole, sharded):
            for key, param in model.parameters().items():
                param -= 0.1 * model.gradients()[key]


def test_initialisation_is_he_before_relu_and_glorot_otherwise():
    model = yamlnet.build_model({"input": [32, 32, 16], "layers": [
        {"type": "conv2d", "filters": 64, "size": 3, "activation": "relu"},
        {"type": "conv2d", "filters": 64, "size": 3},
        {"type": "dropout"}, {"type": "activation", "activation": "relu"},
        {"type": "conv2d", "filters": 64, "size": 3, "activation": "tanh"}]})
    stds = [layer.params["W"].std() for layer in model.layers if layer.params]
    fan_in, fan_out = 3 * 3 * 16, 3 * 3 * 64
    assert abs(stds[0] / np.sqrt(2 / fan_in) - 1) < 0.05
    assert abs(stds[1] / np.sqrt(2 / (3 * 3 * 64)) - 1) < 0.05  # followed by a relu layer
    assert abs(stds[2] / np.sqrt(2 / (3 * 3 * 64 + fan_out)) - 1) < 0.05  # Glorot: limit √(6/(in+out))
    assert all(np.all(layer.params["b"] == 0) for layer in model.layers if layer.params)
    assert model.layers[0].params["W"].dtype == np.float32


def test_save_load_round_trip(tmp_path):
    model = yamlnet.build_model(TINY)
    for value in model.parameters().values():
        value += 0.5  # not the seed's weights
    model.save(tmp_path / "m.npz")
    loaded = yamlnet.load_model(tmp_path / "m.npz")
    x = np.random.default_rng(1).standard_normal((3, 7, 6, 2))
    assert np.array_equal(model.forward(x), loaded.forward(x))
    assert loaded.config == model.config


def test_loading_checks_every_array(tmp_path):
    model = yamlnet.build_model(TINY)
    arrays = model.arrays()
    arrays["params/conv2d1/W"] = np.zeros((2, 2))
    np.savez(tmp_path / "wrong.npz", **arrays)
    with pytest.raises(DataError, match=r"conv2d1/W has shape \(2, 2\) but layer conv2d1 expects \(3, 3, 2, 3\)"):
        yamlnet.load_model(tmp_path / "wrong.npz")
    del arrays["params/conv2d1/W"]
    np.savez(tmp_path / "missing.npz", **arrays)
    with pytest.raises(DataError, match="has no weights for conv2d1/W"):
        yamlnet.load_model(tmp_path / "missing.npz")
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="object arrays"):
        yamlnet.load_model(tmp_path / "objects.npz")
    (tmp_path / "cut.npz").write_bytes((tmp_path / "missing.npz").read_bytes()[:200])
    with pytest.raises(DataError, match="truncated or corrupt"):
        yamlnet.load_model(tmp_path / "cut.npz")


def test_float32_model_stays_float32():
    model = yamlnet.build_model({**TINY, "training": {"seed": 0}})
    x = np.random.default_rng(0).standard_normal((2, 7, 6, 2))  # float64 in
    assert model.forward(x).dtype == np.float32
    model.loss_and_grad(x, np.array([0, 1]))
    assert all(g.dtype == np.float32 for g in model.gradients().values())


@pytest.mark.parametrize("content, kind", [
    (b"\x89PNG\r\n\x1a\n" + bytes(20), "a PNG image"), (b"name: x\ninput: [8, 8, 1]\n", "a text file"),
    (b"\x93NUMPY\x01\x00", "a single .npy array"), (b"", "it is empty"),
])
def test_a_file_that_is_not_an_npz_is_named_for_what_it_is(tmp_path, content, kind):
    path = tmp_path / "not.npz"
    path.write_bytes(content)
    with pytest.raises(DataError, match=f"is not an .npz file \\({kind}\\); a model file is an .npz archive"):
        yamlnet.load_model(path)
