"""Graphs: wiring checked before any data, one execution path for chains and graphs, gradients
through shared outputs, batchnorm state kept by save, load and resume."""

import numpy as np
import pytest
import yaml
from gradcheck import numerical_gradient, rel_error
from typer.testing import CliRunner

import yamlnet
from yamlnet import parallel
from yamlnet.cli import app
from yamlnet.errors import YamlnetError
from yamlnet.graph import INPUT, Graph
from yamlnet.train import train

# a residual block with batchnorm, a parallel 1 × 1 branch joined by concat, global pooling
RESIDUAL = {
    "name": "residual",
    "input": [6, 6, 2],
    "layers": [
        {"name": "stem", "type": "conv2d", "filters": 3, "size": 3, "padding": "same", "activation": "relu"},
        {"name": "c1", "type": "conv2d", "filters": 3, "size": 3, "padding": "same"},
        {"name": "bn1", "type": "batchnorm"},
        {"name": "r1", "type": "activation", "activation": "relu"},
        {"name": "c2", "type": "conv2d", "filters": 3, "size": 3, "padding": "same"},
        {"name": "sum", "type": "add", "inputs": ["c2", "stem"], "activation": "tanh"},
        {"name": "side", "type": "conv2d", "filters": 2, "size": 1, "inputs": "stem"},
        {"name": "cat", "type": "concat", "inputs": ["sum", "side", "input"]},
        {"name": "bn2", "type": "batchnorm"},
        {"name": "gap", "type": "globalavgpool2d"},
        {"name": "fc", "type": "dense", "units": 10},
        {"name": "prediction", "type": "softmax"},
    ],
    "data": {"dataset": "shapes", "n_samples": 120},
    "training": {"dtype": "float64", "epochs": 3, "batch_size": 16, "learning_rate": 0.05, "optimizer": "momentum",
                 "seed": 3},
}


def test_wiring_is_resolved_once():
    model = yamlnet.build_model(RESIDUAL)
    assert model.layers[0].inputs == ["input"] and model.layers[1].inputs == ["stem"]
    assert model.layers[7].inputs == ["sum", "side", "input"]
    assert model.layers[7].input_shape == [(6, 6, 3), (6, 6, 2), (6, 6, 2)] and model.layers[7].output_shape == (6, 6, 7)
    graph = model.graph
    assert graph.sources[7] == (5, 6, INPUT) and graph.readers[0] == (1, 5, 6)
    assert 0 in graph.release[6]  # stem is dropped after its last reader, side
    assert not graph.is_chain and Graph.of(yamlnet.build_model(CHAIN).layers).is_chain


CHAIN = {"input": [6, 6, 2], "layers": [{"type": "conv2d", "filters": 3, "size": 3, "activation": "relu"},
                                        {"type": "maxpool2d", "size": 2}, {"type": "dense", "units": 4}],
         "training": {"dtype": "float64"}}


def test_a_chain_with_its_inputs_spelled_out_is_the_same_model():
    spelled = {**CHAIN, "layers": [{**CHAIN["layers"][0], "inputs": "input"},
                                   {**CHAIN["layers"][1], "inputs": ["conv2d1"]},
                                   {**CHAIN["layers"][2], "inputs": "maxpool2d1"}]}
    x = np.random.default_rng(0).standard_normal((3, 6, 6, 2))
    assert np.array_equal(yamlnet.build_model(CHAIN).forward(x), yamlnet.build_model(spelled).forward(x))


def test_gradients_through_shared_outputs_match_central_differences():
    smooth = {**RESIDUAL, "layers": [{**layer, "activation": "tanh"} if layer.get("activation") == "relu" else layer
                                     for layer in RESIDUAL["layers"]]}  # no kinks for the differences to straddle
    model = yamlnet.build_model(smooth)
    rng = np.random.default_rng(1)
    for layer in model.layers:
        for key in ("gamma", "beta"):
            if key in layer.params:
                layer.params[key][...] = rng.standard_normal(layer.params[key].shape)
    x, y = rng.standard_normal((5, 6, 6, 2)), np.array([0, 1, 2, 3, 1])
    model.loss_and_grad(x, y)
    analytic = {key: grad.copy() for key, grad in model.gradients().items()}
    for key, param in model.parameters().items():
        numeric = numerical_gradient(lambda: model.loss_and_grad(x, y), param)
        # against the array's own scale: behind a batchnorm, some entries nearly cancel to 0
        assert np.max(np.abs(analytic[key] - numeric)) < 1e-7 * np.max(np.abs(numeric)) + 1e-11, key


def test_a_sharded_batch_equals_an_unsharded_one(monkeypatch):
    graph_without_batchnorm = {**RESIDUAL, "layers": [layer for layer in RESIDUAL["layers"]
                                                       if layer["type"] != "batchnorm"]}
    x = np.random.default_rng(2).standard_normal((8, 6, 6, 2))
    y = np.arange(8) % 4
    for config in (graph_without_batchnorm, RESIDUAL):
        monkeypatch.setattr(parallel, "MIN_SHARD_MACS", 1)
        whole = yamlnet.build_model({**config, "training": {**config.get("training", {}), "shards": 1}})
        cut = yamlnet.build_model(config)
        loss = whole.loss_and_grad(x, y)
        inference = whole.forward(x)
        assert len(cut.shards.cut(8)) == 2 and len(whole.shards.cut(8)) == 1
        assert abs(cut.loss_and_grad(x, y) - loss) < 1e-12
        scale = max(np.max(np.abs(grad)) for grad in whole.gradients().values())
        for key, grad in whole.gradients().items():  # (a bias before a batchnorm has a gradient of ~1e-17)
            assert np.max(np.abs(grad - cut.gradients()[key])) < 1e-12 * scale, key
        for key, state in whole.states().items():
            assert np.allclose(state, cut.states()[key], atol=1e-12), key  # batch statistics of the whole batch
        assert rel_error(cut.forward(x), inference) < 1e-10


def test_batchnorm_state_is_saved_loaded_and_checked(tmp_path):
    model = yamlnet.build_model({**RESIDUAL, "training": {**RESIDUAL["training"], "dtype": "float32"}})
    x = np.random.default_rng(0).standard_normal((6, 6, 6, 2)).astype(np.float32)
    model.loss_and_grad(x, np.arange(6) % 4)
    assert not np.allclose(model.states()["bn1/running_mean"], 0)
    model.save(tmp_path / "m.npz")
    same = yamlnet.load_model(tmp_path / "m.npz")
    for key, value in model.states().items():
        assert np.array_equal(value, same.states()[key]), key
    assert np.array_equal(model.forward(x), same.forward(x))
    arrays = dict(np.load(tmp_path / "m.npz", allow_pickle=False))
    arrays["state/bn1/running_var"] = np.ones(5, np.float32)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(YamlnetError, match=r"bn1/running_var has shape \(5,\) but layer bn1 expects \(3,\)"):
        yamlnet.load_model(tmp_path / "bad.npz")
    del arrays["state/bn1/running_var"]
    np.savez(tmp_path / "missing.npz", **arrays)
    with pytest.raises(YamlnetError, match="has no state for bn1/running_var"):
        yamlnet.load_model(tmp_path / "missing.npz")




def test_resume_of_a_graph_with_batchnorm_is_bit_for_bit(tmp_path):
    from yamlnet.progress import Reporter

    class Crash(Reporter):
        def end_epoch(self, record, epochs):
            if record["epoch"] == 1:
                raise RuntimeError("power cut")

    config = {**RESIDUAL, "training": {**RESIDUAL["training"], "dtype": "float32"}}
    whole = train(config, out=tmp_path / "whole").run_dir
    with pytest.raises(RuntimeError):
        train(config, out=tmp_path / "crashed", reporter=Crash())
    resumed = train(resume=tmp_path / "crashed").run_dir
    for name in ("last.npz", "best.npz"):
        with np.load(whole / "checkpoints" / name) as a, np.load(resumed / "checkpoints" / name) as b:
            for key in a.files:
                if key.startswith(("params/", "state/", "optim/")):
                    assert np.array_equal(a[key], b[key]), (name, key)
    assert (whole / "metrics.jsonl").read_text().count("\n") == 3


def test_initialization_follows_readers_to_a_relu():
    from yamlnet.plan import initializer
    model = yamlnet.build_model(RESIDUAL)
    kinds = {layer.name: initializer(model.layers, model.graph, i) for i, layer in enumerate(model.layers)}
    assert kinds["stem"] == "he"  # its own relu
    assert kinds["c1"] == "he"  # batchnorm, then a relu layer
    assert kinds["c2"] == "glorot"  # an add with tanh
    assert kinds["side"] == "glorot" and kinds["fc"] == "glorot"


@pytest.mark.parametrize("layers, message", [
    ([{"name": "a", "type": "dense", "units": 4, "inputs": "inptu"}], "no layer named 'inptu'; did you mean 'input'?"),
    ([{"name": "a", "type": "dense", "units": 4, "inputs": "b"}, {"name": "b", "type": "dense", "units": 4}],
     "b is layers[1], listed after this layer; inputs may name only input or layers listed earlier"),
    ([{"name": "a", "type": "dense", "units": 4, "inputs": "a"}], "layer a cannot read its own output"),
    ([{"name": "a", "type": "dense", "units": 4}, {"name": "b", "type": "dense", "units": 4, "inputs": "input"}],
     "the output of a is never used: no later layer reads it (a dead branch)"),
    ([{"name": "a", "type": "dense", "units": 4}, {"type": "add"}], "add joins two or more inputs, got one (a)"),
    ([{"name": "a", "type": "dense", "units": 4}, {"type": "dense", "units": 2, "inputs": ["a", "input"]}],
     "dense takes one input, got 2 (a, input); join them first with add or concat"),
    ([{"name": "input", "type": "dense", "units": 4}], "'input' names the model's input in inputs"),
    ([{"type": "batchnorm", "momentum": 1.5}], "momentum: must be at most 1, got 1.5"),
])
def test_malformed_graphs_are_one_located_line(layers, message, tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump({"input": [4, 4, 1], "layers": layers}, sort_keys=False))
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and message in result.output, result.output
    assert result.output.startswith(f"{path}:") and result.output.count("\n") == 1


def test_inputs_can_be_set_and_swept():
    model = yamlnet.build_model(RESIDUAL, overrides=["layers.sum.inputs=[c2, stem, stem]"])
    assert model.layers[5].inputs == ["c2", "stem", "stem"]


# a separate activation after each kind of layer: in place where it alone reads an output that is handed over
IN_PLACE = {
    "name": "in_place",
    "input": [6, 6, 2],
    "layers": [
        {"name": "raw", "type": "activation", "activation": "relu", "inputs": "input"},  # never the caller's array
        {"name": "c1", "type": "conv2d", "filters": 3, "size": 3, "padding": "same"},
        {"name": "bn", "type": "batchnorm"},
        {"name": "r_bn", "type": "activation", "activation": "relu"},                     # in place
        {"name": "c2", "type": "conv2d", "filters": 3, "size": 3, "padding": "same"},
        {"name": "r_c2", "type": "activation", "activation": "tanh"},                     # in place
        {"name": "sum", "type": "add", "inputs": ["r_c2", "r_bn"]},
        {"name": "r_sum", "type": "activation", "activation": "leaky_relu"},              # in place
        {"name": "c3", "type": "conv2d", "filters": 3, "size": 3, "padding": "same", "activation": "relu"},
        {"name": "r_c3", "type": "activation", "activation": "sigmoid"},                  # c3 has its own g
        {"name": "c4", "type": "conv2d", "filters": 3, "size": 1, "inputs": "r_sum"},
        {"name": "r_c4", "type": "activation", "activation": "tanh"},                     # c4 is read twice
        {"name": "pool", "type": "maxpool2d", "size": 2, "inputs": "c4"},
        {"name": "r_pool", "type": "activation", "activation": "tanh"},                   # a pool reads its output back
        {"name": "cat", "type": "concat", "inputs": ["r_c3", "r_c4", "raw"]},
        {"name": "gap", "type": "globalavgpool2d"},
        {"name": "flat", "type": "flatten", "inputs": "r_pool"},
        {"name": "join", "type": "concat", "inputs": ["gap", "flat"]},
        {"name": "fc", "type": "dense", "units": 3},
        {"type": "softmax"},
    ],
    "training": {"dtype": "float64"},
}


def test_a_separate_activation_overwrites_an_output_nothing_else_reads():
    from yamlnet.graph import run_forward
    model = yamlnet.build_model(IN_PLACE)
    in_place = {layer.name for layer in model.execution(training=True) if layer.overwrites_input}
    assert in_place == {"r_bn", "r_c2", "r_sum"}
    assert not any(layer.overwrites_input for layer in model.layers)  # the model's own stay as they are
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((5, 6, 6, 2)), np.array([0, 1, 2, 1, 0])
    seen = x.copy()
    # the plain twin: the model's own layers, each activation on a copy of its input
    plain_loss, _ = model.executor.step(model.layers, x, y, len(y))
    plain = {key: grad.copy() for key, grad in model.gradients().items()}
    loss, _ = model.executor.train_step(model.layers, x, y, len(y))
    assert loss == plain_loss
    for key, grad in model.gradients().items():
        assert np.array_equal(grad, plain[key]), key
    assert np.array_equal(x, seen)  # the caller's array is never written
    # at inference the layer that made the array applies g itself
    inference = {layer.name: layer for layer in model.execution(training=False)}
    assert {name for name, layer in inference.items() if layer.type == "activation (folded)"} == in_place
    assert [inference[name].activation for name in ("c1", "c2", "sum")] == ["relu", "tanh", "leaky_relu"]
    assert [layer.activation for layer in model.layers if layer.name in ("c1", "c2", "sum")] == ["linear"] * 3
    assert rel_error(model.forward(x), run_forward(model.layers, model.graph, x, training=False)) < 1e-10
    assert np.array_equal(x, seen)
    model.parameters()["c2/W"][...] *= 2  # weights that change between calls reach the copies
    assert rel_error(model.forward(x), run_forward(model.layers, model.graph, x, training=False)) < 1e-10


def test_inference_folds_batchnorm_into_the_layer_before_it():
    config = {**RESIDUAL, "training": {**RESIDUAL["training"], "dtype": "float32"}}
    model = yamlnet.build_model(config)
    rng = np.random.default_rng(4)
    for key, state in model.states().items():
        state[...] = rng.random(state.shape) + (0.5 if key.endswith("var") else -0.5)
    for key, param in model.parameters().items():
        param[...] = rng.standard_normal(param.shape).astype(np.float32)
    x = rng.standard_normal((7, 6, 6, 2)).astype(np.float32)
    folded = model.forward(x)
    assert [layer.type for layer in model.execution(training=False)][1:3] == ["conv2d", "batchnorm (folded)"]
    # the same layers, unfolded, through the graph: what a model without folding computes
    from yamlnet.graph import run_forward
    unfolded = run_forward(model.layers, model.graph, x, training=False)
    assert np.max(np.abs(folded - unfolded)) < 1e-5
    model.parameters()["c1/W"][...] *= 2  # weights that change between calls reach the folded copy
    assert np.max(np.abs(model.forward(x) - run_forward(model.layers, model.graph, x, training=False))) < 1e-5
