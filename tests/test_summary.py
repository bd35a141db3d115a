"""The summary: the course notes' figures, before any training."""

from yamlnet.plan import plan
from yamlnet.summary import render, summarize


def test_ten_3x3x3_filters_have_280_parameters_whatever_the_image_size():
    for size in (8, 64):
        config, layers = plan({"input": [size, size, 3], "layers": [
            {"name": "conv", "type": "conv2d", "filters": 10, "size": 3}, {"type": "dense", "units": 10}],
            "data": {"dataset": "shapes"}})
        assert summarize(config, layers)["layers"][0]["params"] == 280


def test_the_summary_gives_shapes_params_and_mult_adds():
    config, layers = plan("ng_example")
    facts = summarize(config, layers)
    assert [layer["output_shape"] for layer in facts["layers"][:3]] == [[37, 37, 10], [17, 17, 20], [7, 7, 40]]
    assert facts["total_params"] == sum(layer["params"] for layer in facts["layers"])
    text = render(config, layers)
    assert f"Total params: {facts['total_params']:,}" in text and f"Total mult-adds: {facts['total_macs']:,}" in text
    assert "floor" in render(config, layers, explain=True)  # the size formula, with its numbers
