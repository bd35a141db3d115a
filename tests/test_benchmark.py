import json

from conftest import ROOT
from typer.testing import CliRunner

from yamlnet.cli import app


def test_per_layer_timings_cover_every_layer_and_show_fused_pairs_as_one():
    result = CliRunner().invoke(app, ["benchmark", str(ROOT / "models" / "lenet.yaml"), "--batch-size", "4",
                                      "--iterations", "2", "--json"])
    assert result.exit_code == 0, result.output
    timings = json.loads(result.output)
    assert [row["name"] for row in timings["layers"]][:3] == ["conv1 + pool1", "conv2", "pool2"]
    assert [row["fused"] for row in timings["layers"]][:3] == [True, False, False]
    assert len(timings["layers"]) == 8
    assert abs(sum(row["share"] for row in timings["layers"]) - 1) < 1e-6
    assert timings["layers"][0]["backward_ms"] > 0  # the weight gradient, though no input gradient


def test_table():
    result = CliRunner().invoke(app, ["benchmark", str(ROOT / "models" / "simple.yaml"), "--iterations", "1",
                                      "--set", "layers.conv1.filters=4"])
    assert result.exit_code == 0 and "conv1 (conv2d)" in result.output and "samples/s" in result.output
    assert "Fused:" not in result.output  # simple.yaml has no conv + max-pool pair
