"""The layer contract, checked for every registered type (so a new type is covered when it registers)."""

import gc
import weakref

import numpy as np
import pytest
import yaml
from conftest import make_layer, minimal_layer
from typer.testing import CliRunner

import yamlnet
from yamlnet.cli import app
from yamlnet.layers import LAYERS

VOLUME_ONLY = sorted(name for name, cls in LAYERS.items() if cls.needs_volume)


def test_the_volume_only_types_are_the_sliding_window_ones():
    assert {"conv2d", "maxpool2d", "avgpool2d"} <= set(VOLUME_ONLY)


@pytest.mark.parametrize("type_name", VOLUME_ONLY)
@pytest.mark.parametrize("before", ["flatten", "dense"])
def test_a_volume_layer_after_a_vector_is_one_located_line(type_name, before, tmp_path):
    first = {"type": "flatten"} if before == "flatten" else {"type": "dense", "units": 12}
    model = {"input": [8, 8, 1], "layers": [first, minimal_layer(type_name), {"type": "dense", "units": 10},
                                             {"type": "softmax"}]}
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(model, default_flow_style=None, sort_keys=False))
    line = next(number for number, text in enumerate(path.read_text().splitlines(), 1) if type_name in text)
    for command in ("validate", "summary"):
        result = CliRunner().invoke(app, [command, str(path)])
        assert result.exit_code == 2, result.output
        assert result.output.startswith(f"{path}:{line}:"), result.output
        assert f".type: {type_name} needs a volume n_H × n_W × n_C as input, got a vector of" in result.output
        assert result.output.count("\n") == 1 and "Traceback" not in result.output


def model_around(type_name: str) -> dict:
    """The smallest trainable model holding one layer of ``type_name``: after a conv (a join reads it
    and the input), before a dense classifier."""
    layer = {**minimal_layer(type_name), "name": "it"}
    if LAYERS[type_name].joins:
        layer["inputs"] = ["c1", "c1"]
    if LAYERS[type_name].gives_probabilities:  # it ends the model
        tail = [{"name": "flat", "type": "flatten"}, {"name": "fc", "type": "dense", "units": 10}, layer]
        return {"input": [8, 8, 1], "layers": [{"name": "c1", "type": "conv2d", "filters": 2, "size": 3}, *tail],
                "training": {"batch_size": 4}}
    return {"input": [8, 8, 1], "layers": [
        {"name": "c1", "type": "conv2d", "filters": 2, "size": 3, "padding": "same"}, layer,
        {"name": "fc", "type": "dense", "units": 10}, {"name": "prediction", "type": "softmax"}],
        "training": {"batch_size": 4}}


@pytest.mark.parametrize("type_name", sorted(LAYERS))
def test_every_registered_type_answers_what_every_command_asks(type_name, tmp_path):
    """summary (with --explain), draw (chain, graph, Mermaid), the memory estimate, initialization,
    a training step, save and load, and ONNX export: a type that cannot answer one of them fails here."""
    import numpy as np

    import yamlnet
    from yamlnet.draw import graph_nodes, mermaid, stages
    from yamlnet.memory import training_memory
    from yamlnet.plan import plan
    from yamlnet.summary import render

    config, layers = plan(model_around(type_name))
    assert render(config, layers, explain=True) and stages(config, layers) and graph_nodes(config, layers)
    assert mermaid(config, layers) and all(size >= 0 for size, _ in training_memory(config, layers))
    layer = next(layer for layer in layers if layer.name == "it")
    assert isinstance(layer.label(), str) and isinstance(layer.drawn_after(chain=True), str)
    model = yamlnet.build_model(config)
    x = np.random.default_rng(0).standard_normal((4, 8, 8, 1))
    loss = model.loss_and_grad(x, np.arange(4))
    assert np.isfinite(loss)
    model.normalization = (np.zeros(1, model.dtype), np.ones(1, model.dtype))
    model.save(tmp_path / "m.npz")
    assert np.allclose(yamlnet.load_model(tmp_path / "m.npz").predict_proba(x), model.predict_proba(x))
    from conftest import reference_module
    reference_module("onnx")
    from yamlnet.export import export
    export(tmp_path / "m.npz", tmp_path / "m.onnx")  # every built-in type has its ONNX form
    assert (tmp_path / "m.onnx").stat().st_size > 0


def test_a_type_without_an_onnx_form_is_refused_in_one_line(tmp_path):
    """A layer type that defines no onnx() (a plugin's, say) stops export with its name and the method."""
    import numpy as np

    import yamlnet
    from conftest import reference_module
    from yamlnet.errors import ConfigError
    from yamlnet.export import export
    from yamlnet.layers.base import Layer
    reference_module("onnx")
    model = yamlnet.build_model(model_around("flatten"))
    model.normalization = (np.zeros(1, model.dtype), np.ones(1, model.dtype))
    model.save(tmp_path / "m.npz")
    original = type(model.layers[1]).onnx
    try:
        type(model.layers[1]).onnx = Layer.onnx
        with pytest.raises(ConfigError, match=r"layer it: type flatten has no ONNX form \(Flatten defines no onnx"):
            export(tmp_path / "m.npz", tmp_path / "m.onnx")
    finally:
        type(model.layers[1]).onnx = original


FRESH_OUTPUT = sorted(name for name, cls in LAYERS.items() if cls.fresh_output)


@pytest.mark.parametrize("type_name", FRESH_OUTPUT)
@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_training_keeps_a_layers_output_only_for_its_activation(type_name, activation):
    """An output read by one layer alone is freed once that one is done with it: the layer that made it
    keeps it for backward only where g′ needs it (a batchnorm's or a projection's before an add)."""
    x = np.random.default_rng(0).standard_normal((3, 6, 6, 4))
    if LAYERS[type_name].joins:  # two inputs of one shape
        model = yamlnet.build_model({"input": [6, 6, 4], "layers": [
            {"name": "a", "type": "activation", "activation": "tanh"},
            {"name": "join", "type": type_name, "inputs": ["a", "input"], "activation": activation}],
            "training": {"dtype": "float64"}})
        layer, x = model.layers[-1], [x, x]
    else:
        layer = make_layer((6, 6, 4), {**minimal_layer(type_name), "activation": activation})
    out = weakref.ref(layer.forward(x, training=True))
    gc.collect()
    assert (out() is not None) == (activation == "relu")


@pytest.mark.parametrize("type_name", sorted(LAYERS))
def test_after_backward_a_layer_holds_nothing_of_the_step(type_name):
    """What forward kept for backward is let go in backward: the next step's forward peaks without it."""
    x = np.random.default_rng(0).standard_normal((3, 6, 6, 4))
    if LAYERS[type_name].joins:
        model = yamlnet.build_model({"input": [6, 6, 4], "layers": [
            {"name": "a", "type": "activation", "activation": "tanh"},
            {"name": "join", "type": type_name, "inputs": ["a", "input"]}], "training": {"dtype": "float64"}})
        layer, x = model.layers[-1], [x, x.copy()]
    else:
        config = minimal_layer(type_name)
        if "activation" in LAYERS[type_name].hyperparameters and type_name != "activation":
            config["activation"] = "relu"  # (a g′ to keep the output for)
        layer = make_layer((6, 6, 4), config)
    out = layer.forward(x, training=True)
    if layer.gives_probabilities:
        pytest.skip("its backward is the loss's (fused)")
    watched = weakref.ref(out)
    layer.backward(np.ones_like(out))
    del out
    gc.collect()
    assert watched() is None
