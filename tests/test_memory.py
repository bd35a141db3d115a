"""The training-memory estimate, from shapes alone."""

import pytest

from yamlnet.memory import training_memory
from yamlnet.sizes import format_bytes, parse_size
from yamlnet.plan import plan


def test_sizes_read_and_written():
    assert parse_size("2GiB") == 2 * 2**30 and parse_size(" 512 MB ") == 512 * 10**6 and parse_size(1000) == 1000
    assert parse_size("1.5KiB") == 1536
    assert format_bytes(512) == "512 B" and format_bytes(3 * 2**20) == "3.00 MiB"


def test_the_estimate_counts_weights_activations_and_a_convs_columns():
    config, layers = plan({"input": [8, 8, 1], "layers": [
        {"name": "c", "type": "conv2d", "filters": 4, "size": 3, "padding": 1},
        {"name": "fc", "type": "dense", "units": 10}], "training": {"batch_size": 2, "optimizer": "adam"}})
    (conv, conv_what), (dense, _) = training_memory(config, layers)
    weights = (3 * 3 * 1 * 4 + 4) * 4 * 4  # float32, with gradients and Adam's two slots
    activations = 2 * 2 * 8 * 8 * 4 * 4  # output and its gradient, batch 2
    columns = 2 * 8 * 8 * 9 * 4 + 2 * 2 * 8 * 8 * 1 * 4  # im2col columns and input-gradient buffers
    assert conv == weights + activations + columns and conv_what == "im2col and input-gradient buffers"
    assert dense == (256 * 10 + 10) * 4 * 4 + 2 * 2 * 10 * 4


def test_an_activation_that_overwrites_its_input_adds_only_its_gradient():
    config, layers = plan({"input": [8, 8, 1], "layers": [
        {"name": "c", "type": "conv2d", "filters": 4, "size": 3, "padding": 1},
        {"name": "r", "type": "activation", "activation": "relu"},            # in place: c is its alone
        {"name": "t", "type": "activation", "activation": "tanh"},            # r has its own g: a copy
        {"name": "fc", "type": "dense", "units": 10}], "training": {"batch_size": 2}})
    _, (in_place, _), (copying, _), _ = training_memory(config, layers)
    output = 2 * 8 * 8 * 4 * 4  # batch 2, float32
    assert in_place == output and copying == 2 * output


def test_the_estimate_of_generated_data_is_its_own_entry():
    config, layers = plan({"input": [8, 8, 1], "layers": [{"type": "dense", "units": 10}],
                           "data": {"dataset": "shapes", "n_samples": 100, "n_test": 0}})
    size, what = training_memory(config, layers)[-1]
    assert what == "100 images held in memory" and size == 100 * 64 * 4
    with pytest.raises(Exception):
        parse_size("lots")
