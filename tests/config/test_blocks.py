"""Blocks and repeat: expanded files are exactly the files written out by hand."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import yamlnet
from yamlnet.cli import app
from yamlnet.config.blocks import group_path
from yamlnet.plan import expanded_yaml

BLOCKS = """
input: [8, 8, 2]
blocks:
  residual:
    params: {filters: 4, stride: 1, skip: input}
    layers:
      - {name: c1, type: conv2d, filters: $filters, size: 3, stride: $stride, padding: 1, activation: relu}
      - {name: n1, type: batchnorm, activation: relu}
      - {name: c2, type: conv2d, filters: $filters, size: 3, padding: 1}
      - {name: out, type: add, inputs: [c2, $skip], activation: relu}
  twice:
    params: {width: ~}
    layers:
      - {name: proj, type: conv2d, filters: $width, size: 1}
      - {name: first, block: residual, with: {filters: $width}}
      - {name: join, type: concat, inputs: [first, input]}
layers:
  - {name: stem, type: conv2d, filters: 4, size: 3, padding: 1}
  - {name: stage1, block: residual, repeat: 2}
  - {name: stage2, block: twice, with: {width: 6}}
  - {name: c, type: conv2d, filters: 5, size: 1, repeat: 2}
  - {name: side, type: conv2d, filters: 3, size: 1, inputs: stage1}
  - {name: both, type: concat, inputs: [c, side]}
  - {type: globalavgpool2d}
  - {name: fc, type: dense, units: 10}
  - {type: softmax}
data: {dataset: shapes}
training: {dtype: float64, seed: 3}
"""

BY_HAND = """
input: [8, 8, 2]
layers:
  - {name: stem, type: conv2d, filters: 4, size: 3, padding: 1}
  - {name: stage1.1.c1, type: conv2d, filters: 4, size: 3, stride: 1, padding: 1, activation: relu}
  - {name: stage1.1.n1, type: batchnorm, activation: relu}
  - {name: stage1.1.c2, type: conv2d, filters: 4, size: 3, padding: 1}
  - {name: stage1.1.out, type: add, inputs: [stage1.1.c2, stem], activation: relu}
  - {name: stage1.2.c1, type: conv2d, filters: 4, size: 3, stride: 1, padding: 1, activation: relu}
  - {name: stage1.2.n1, type: batchnorm, activation: relu}
  - {name: stage1.2.c2, type: conv2d, filters: 4, size: 3, padding: 1}
  - {name: stage1.2.out, type: add, inputs: [stage1.2.c2, stage1.1.out], activation: relu}
  - {name: stage2.proj, type: conv2d, filters: 6, size: 1}
  - {name: stage2.first.c1, type: conv2d, filters: 6, size: 3, stride: 1, padding: 1, activation: relu}
  - {name: stage2.first.n1, type: batchnorm, activation: relu}
  - {name: stage2.first.c2, type: conv2d, filters: 6, size: 3, padding: 1}
  - {name: stage2.first.out, type: add, inputs: [stage2.first.c2, stage2.proj], activation: relu}
  - {name: stage2.join, type: concat, inputs: [stage2.first.out, stage1.2.out]}
  - {name: c.1, type: conv2d, filters: 5, size: 1}
  - {name: c.2, type: conv2d, filters: 5, size: 1}
  - {name: side, type: conv2d, filters: 3, size: 1, inputs: stage1.2.out}
  - {name: both, type: concat, inputs: [c.2, side]}
  - {type: globalavgpool2d}
  - {name: fc, type: dense, units: 10}
  - {type: softmax}
data: {dataset: shapes}
training: {dtype: float64, seed: 3}
"""


def _same_model(a, b, rng):
    assert [layer.name for layer in a.layers] == [layer.name for layer in b.layers]
    assert [layer.inputs for layer in a.layers] == [layer.inputs for layer in b.layers]
    for key, value in a.parameters().items():
        np.testing.assert_array_equal(value, b.parameters()[key], err_msg=key)
    x = rng.standard_normal((3, 8, 8, 2))
    np.testing.assert_array_equal(a.forward(x), b.forward(x))
    y = np.array([0, 1, 2])
    assert a.loss_and_grad(x, y) == b.loss_and_grad(x, y)


def test_blocks_give_exactly_the_model_written_by_hand(rng):
    blocks, by_hand = yamlnet.build_model(BLOCKS), yamlnet.build_model(BY_HAND)
    _same_model(blocks, by_hand, rng)
    assert blocks.summary() == by_hand.summary()


def test_expand_prints_a_plain_file_that_gives_the_same_model(rng):
    text = expanded_yaml(BLOCKS)
    assert "blocks" not in text and "$" not in text and "repeat" not in text
    _same_model(yamlnet.build_model(BLOCKS), yamlnet.build_model(text), rng)
    assert expanded_yaml(text) == text  # a plain file expands to itself


def test_the_expand_command(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text(BLOCKS)
    result = CliRunner().invoke(app, ["expand", str(path), "--set", "layers.stage2.with.width=2"])
    assert result.exit_code == 0, result.output
    assert "- {name: stage2.proj, type: conv2d, filters: 2, size: 1}" in result.output


def test_names_and_groups():
    assert group_path("stage1.2.c1") == ["stage1", "stage1.2"] and group_path("fc") == []
    from yamlnet.plan import plan
    from yamlnet.summary import render, summarize
    config, layers = plan(BLOCKS)
    summary = summarize(config, layers)
    by_name = {row["name"]: row for row in summary["layers"]}
    assert by_name["stage2.first.c1"]["block"] == ["stage2", "stage2.first"]
    assert by_name["c.2"]["block"] == ["c"] and by_name["fc"]["block"] == []
    folded = render(config, layers, depth=1)
    assert "stage1 (block × 2)" in folded and "c (conv2d × 2)" in folded and "stage1.1.c1" not in folded
    params = sum(layer.param_count() for layer in layers if layer.name.startswith("stage1."))
    assert f"{params:,}" in next(line for line in folded.splitlines() if line.startswith("stage1 "))
    full = render(config, layers)
    assert "  stage1.1 (block)" in full and "    stage1.1.c1 (conv2d)" in full


@pytest.mark.parametrize("override, layer, key, value", [
    ("layers.stage1.1.c1.filters=6", "stage1.1.c1", "filters", 6),   # a layer of the expansion
    ("layers.stage2.with.width=2", "stage2.proj", "filters", 2),       # a use's parameter
    ("blocks.residual.params.filters=2", "stage1.2.c2", "filters", 2),  # a block's default
    ("layers.c.2.size=3", "c.2", "size", 3),                            # one copy of a repeat
    ("layers.c.size=3", "c.1", "size", 3),                              # every copy
])
def test_overrides_reach_every_level(override, layer, key, value):
    overrides = [override] + (["layers.c.padding=1"] if "size=3" in override else [])
    config = yamlnet.load_config(BLOCKS, overrides)
    assert next(item for item in config["layers"] if item["name"] == layer)[key] == value


def test_expanded_names_work_in_freeze_and_init_layers():
    config = yamlnet.load_config(BLOCKS, ["training.freeze=[stage1.1.c1, c.2]"])
    assert config["training"]["freeze"] == ["stage1.1.c1", "c.2"]
    model = yamlnet.build_model(BLOCKS, ["training.freeze=[stage1.1.c1]"])
    assert "stage1.1.c1/W" in model.parameters()


def test_a_block_parameter_may_be_any_yaml_value():
    config = yamlnet.load_config(BLOCKS)
    assert config["layers"][4]["inputs"] == ["stage1.1.c2", "stem"]  # $skip: the block's input by default
    with_list = BLOCKS.replace("filters: $filters, size: 3, padding: 1}", "filters: $filters, size: $size, padding: 1}",
                               1).replace("params: {filters: 4, stride: 1, skip: input}",
                                          "params: {filters: 4, stride: 1, skip: input, size: 3}")
    assert yamlnet.load_config(with_list)["layers"][3]["size"] == 3


def test_a_repeated_single_layer_chains_its_copies():
    config = yamlnet.load_config(BLOCKS)
    copies = [item for item in config["layers"] if item["name"].startswith("c.")]
    assert [item["name"] for item in copies] == ["c.1", "c.2"]
    assert "inputs" not in copies[0] and "inputs" not in copies[1]  # each reads the layer before it
    side = next(item for item in config["layers"] if item["name"] == "side")
    assert side["inputs"] == "stage1.2.out"  # a use's name stands for its output


def test_draw_frames_each_block_use():
    from yamlnet.draw import mermaid
    from yamlnet.plan import plan
    text = mermaid(*plan(BLOCKS))
    assert 'subgraph stage1 ["stage1"]' in text and 'subgraph stage1_2 ["stage1.2"]' in text
    assert text.count("subgraph") == text.count("\nend")


def test_an_error_inside_a_block_names_the_line_inside_and_the_use():
    bad = BLOCKS.replace("  - {name: stage2, block: twice, with: {width: 6}}",
                         "  - {name: stage2, block: twice, with: {width: 0}}")
    with pytest.raises(yamlnet.ConfigError) as error:
        yamlnet.build_model(bad)
    # at the value given to the use, where the bad number was written
    assert str(error.value) == ("20:48: layers[9] (stage2.proj).filters: must be at least 1, got 0 (in block twice, "
                                "line 14, used as stage2 at line 20)")
    nested = bad.replace("{name: proj, type: conv2d, filters: $width, size: 1}",
                         "{name: proj, type: conv2d, filters: 4, size: 1}")
    with pytest.raises(yamlnet.ConfigError) as error:  # through a block inside a block: still there
        yamlnet.build_model(nested)
    assert str(error.value) == ("20:48: layers[10] (stage2.first.c1).filters: must be at least 1, got 0 (in block "
                                "residual, line 7, used as stage2.first at line 15; block twice, line 15, used as "
                                "stage2 at line 20)")


def test_a_file_may_not_expand_without_bound():
    huge = {"input": [4, 4, 1], "blocks": {"b": {"layers": [{"name": "x", "type": "activation", "activation": "relu",
                                                              "repeat": 1000}]}},
            "layers": [{"name": "u", "block": "b", "repeat": 100}, {"type": "flatten"}, {"type": "dense", "units": 10}]}
    with pytest.raises(yamlnet.ConfigError, match="expands to more than 10,000 layers"):
        yamlnet.load_config(huge)
