"""The .npz layout: a model's arrays round trip, and what does not fit is refused in one line."""

import numpy as np
import pytest

import yamlnet
from yamlnet import checkpoint
from yamlnet.errors import DataError


def test_a_model_round_trips_and_spells_its_keys_one_way():
    model = yamlnet.build_model("resnet_small")
    model.normalization = (np.full(3, 0.5, np.float32), np.full(3, 2.0, np.float32))
    arrays = checkpoint.model_arrays(model)
    assert "params/stem/W" in arrays and "state/stem_bn/running_mean" in arrays
    assert checkpoint.layer_key("params", "stem", "W") == "params/stem/W"
    other = yamlnet.build_model("resnet_small", ["training.seed=1"])
    checkpoint.load_into(other, arrays)
    for key, value in model.parameters().items():
        assert np.array_equal(other.parameters()[key], value)
    assert np.array_equal(other.normalization[1], model.normalization[1])
    assert checkpoint.config_from_arrays(arrays) == model.config
    layer = model.layers[0]
    assert set(checkpoint.layer_arrays(arrays, layer)) == set(layer.params) | set(layer.state)


def test_what_does_not_fit_is_refused():
    model = yamlnet.build_model("simple")
    arrays = checkpoint.model_arrays(model)
    with pytest.raises(DataError, match="has shape"):
        checkpoint.load_into(model, {**arrays, "params/conv1/W": np.zeros((1, 1, 1, 1), np.float32)})
    with pytest.raises(DataError, match="holds weights the model does not have: ghost/W"):
        checkpoint.load_into(model, {**arrays, "params/ghost/W": np.zeros(1, np.float32)})
    with pytest.raises(DataError, match="holds no config"):
        checkpoint.config_from_arrays({})


def test_a_checkpoint_keeps_the_optimizer_and_the_epochs_order():
    model = yamlnet.build_model("simple")
    arrays = checkpoint.checkpoint_arrays(model, {"m/conv1/W": np.ones(2)}, np.arange(5))
    assert np.array_equal(checkpoint.optimizer_state(arrays)["m/conv1/W"], np.ones(2))
    assert np.array_equal(checkpoint.epoch_order(arrays), np.arange(5))
    back, state = checkpoint.split_loop_state(checkpoint.with_loop_state(arrays, {"epoch": 3}))
    assert state == {"epoch": 3} and "__state__" not in back
