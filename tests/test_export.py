"""ONNX export, checked in onnxruntime: raw images in, the same probabilities as yamlnet's own
inference out, for every example model and for generated chains and graphs."""

import json
import os

import numpy as np
import pytest
from conftest import reference_module
from graphs import random_models
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import yamlnet
from yamlnet.cli import app
from yamlnet.config.builtin import builtin_models
from yamlnet.errors import ConfigError
from yamlnet.export import export, to_onnx

ort = reference_module("onnxruntime")
onnx = reference_module("onnx")


def trained_looking(model, seed=0):
    """Weights of a trained scale, a normalization that is not the identity, batchnorm statistics
    moved away from 0 and 1, class names: everything the exported graph must carry."""
    rng = np.random.default_rng(seed)
    for key, param in model.parameters().items():
        param[...] = rng.standard_normal(param.shape) * (0.5 if key.endswith(("/W", "/gamma")) else 0.1)
    for key, state in model.states().items():
        state[...] = rng.random(state.shape) + 0.5 if key.endswith("var") else rng.standard_normal(state.shape)
    n_c = model.input_shape[-1]
    model.normalization = (rng.random(n_c).astype(model.dtype) * 50, rng.random(n_c).astype(model.dtype) * 30 + 5)
    model.classes = [f"class {k}" for k in range(model.output_shape[0])]
    return model


def check_in_onnxruntime(model, tmp_path, seed=1):
    model.save(tmp_path / "m.npz")
    path, _ = export(tmp_path / "m.npz", tmp_path / "m.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    final = "probabilities" if model.layers[-1].type == "softmax" else "logits"
    assert [i.name for i in session.get_inputs()] == ["input"] and session.get_outputs()[0].name == final
    assert session.get_inputs()[0].shape[1:] == list(model.input_shape)
    rng = np.random.default_rng(seed)
    shift, scale = model.normalization
    for n in (1, 7):
        raw = (rng.random((n, *model.input_shape)) * 100).astype(np.float32)  # raw images, as predict takes
        theirs = session.run(None, {"input": raw})[0]
        ours = model.forward((raw - shift) / scale)
        if final == "probabilities":  # raw images straight into the model, as into the ONNX file
            assert np.max(np.abs(model.predict_proba(raw) - ours)) <= 1e-6 * max(1.0, np.max(np.abs(ours)))
        assert theirs.shape == ours.shape
        assert np.max(np.abs(theirs - ours)) <= 1e-5 * max(1.0, np.max(np.abs(ours)))
        assert np.array_equal(theirs.argmax(axis=1), ours.argmax(axis=1))
    return session


@pytest.mark.parametrize("name", sorted(builtin_models()))
def test_every_example_model_gives_onnxruntime_yamlnets_answers(name, tmp_path):
    model = trained_looking(yamlnet.build_model(name))
    session = check_in_onnxruntime(model, tmp_path)
    metadata = session.get_modelmeta().custom_metadata_map
    assert json.loads(metadata["classes"])[0] == "class 0"
    assert json.loads(metadata["yamlnet_config"])["name"] == name
    onnx.checker.check_model(onnx.load(str(tmp_path / "m.onnx")), full_check=True)


CHAINS = [
    [{"type": "conv2d", "filters": 3, "size": 3, "stride": 2, "padding": 1, "activation": "leaky_relu"},
     {"type": "avgpool2d", "size": 3, "stride": 2, "padding": 1}, {"type": "dropout", "rate": 0.3},
     {"type": "flatten"}, {"type": "dense", "units": 5, "activation": "sigmoid"}, {"type": "dense", "units": 4}],
    [{"type": "maxpool2d", "size": 3, "stride": 1, "padding": 1}, {"type": "conv2d", "filters": 2, "size": 4},
     {"type": "activation", "activation": "tanh"}, {"type": "dense", "units": 3}, {"type": "softmax"}],
    [{"type": "conv2d", "filters": 4, "size": 1}, {"type": "batchnorm"}, {"type": "globalavgpool2d"},
     {"type": "batchnorm"}, {"type": "dense", "units": 3, "activation": "relu"}, {"type": "dense", "units": 2},
     {"type": "softmax"}],
]


@pytest.mark.parametrize("layers", CHAINS)
def test_generated_chains(layers, tmp_path):
    model = trained_looking(yamlnet.build_model({"input": [9, 7, 2], "layers": layers}))
    check_in_onnxruntime(model, tmp_path)


@settings(max_examples=int(os.environ.get("YAMLNET_EXAMPLES", 25)), deadline=None,
          derandomize=not os.environ.get("YAMLNET_RANDOM"), database=None)
@given(random_models(), st.integers(0, 1000))
def test_generated_graphs(tmp_path_factory, config, seed):
    model = trained_looking(yamlnet.build_model(config), seed)
    check_in_onnxruntime(model, tmp_path_factory.mktemp("g"), seed)


def test_a_run_directory_exports_its_best_weights_and_says_so(tmp_path):
    yamlnet.train({"input": [8, 8, 1], "layers": [{"type": "dense", "units": 10}, {"type": "softmax"}],
                   "training": {"epochs": 1}}, out=tmp_path / "run")
    result = CliRunner().invoke(app, ["export", str(tmp_path / "run"), "--opset", "13"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"wrote {tmp_path / 'run' / 'model.onnx'}  (from " \
                                    f"{tmp_path / 'run' / 'checkpoints' / 'best.npz'})"
    assert onnx.load(str(tmp_path / "run" / "model.onnx")).ir_version == 7
    bad = CliRunner().invoke(app, ["export", str(tmp_path / "run"), "--opset", "9"])
    assert bad.exit_code == 2 and "--opset must be one of 13" in bad.output


def test_without_onnx_export_says_how_to_get_it(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ConfigError, match='needs the onnx package: pip install "yamlnet.onnx."'):
        to_onnx(yamlnet.build_model("simple"))
