"""Layer types from other packages (entry points "yamlnet.layers"): the example package of the docs,
built as a wheel and installed with pip, through every command; and a broken package beside it."""

import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT

EXAMPLE = ROOT / "docs" / "examples" / "channelscale"


def wheel(folder: Path, name: str, files: dict[str, str], entry_points: dict[str, str]) -> Path:
    """A wheel (a zip with its .dist-info, as any build backend writes one) holding ``files`` (path →
    text) and declaring ``entry_points`` (name → "module:Class") in the group yamlnet.layers."""
    dist = f"{name.replace('-', '_')}-0.1.0.dist-info"
    files = {**files,
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: yamlnet-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
             f"{dist}/entry_points.txt": "[yamlnet.layers]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items())}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join(record + [f"{dist}/RECORD,,"]) + "\n"
    path = folder / f"{name.replace('-', '_')}-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            archive.writestr(member, text)
    return path


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The example package and a broken one, installed with pip into a folder of their own; the
    environment that puts it on the path (as a virtual environment's site-packages would be)."""
    folder = tmp_path_factory.mktemp("plugins")
    example = {str(path.relative_to(EXAMPLE)): path.read_text() for path in (EXAMPLE / "channelscale").glob("*.py")}
    wheels = [wheel(folder, "yamlnet-channelscale", example, {"channelscale": "channelscale.layers:ChannelScale"}),
              wheel(folder, "broken-layers", {"brokenlayers/__init__.py": "raise ImportError('no module named torch')\n"},
                    {"brokenlayer": "brokenlayers:Missing"}),
              wheel(folder, "clashing-layers", {"clashing/__init__.py": "from yamlnet.layers import Layer\n"
                                                "class Dense(Layer):\n    pass\nclass NotALayer:\n    pass\n"},
                    {"dense": "clashing:Dense", "notalayer": "clashing:NotALayer"})]
    target = folder / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target",
                    str(target), *map(str, wheels)], check=True)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}


MODEL = {"name": "scaled", "input": [28, 28, 1],  # big enough for its batches to be cut into two shards
         "layers": [{"name": "conv1", "type": "conv2d", "filters": 16, "size": 5, "padding": 2, "activation": "relu"},
                    {"name": "scale", "type": "channelscale", "init": 0.5},
                    {"name": "pool", "type": "maxpool2d", "size": 2},
                    {"name": "fc", "type": "dense", "units": 10}, {"type": "softmax"}],
         "data": {"dataset": "shapes", "n_samples": 200}, "training": {"epochs": 2, "batch_size": 64}}


def yamlnet(environment, *args, cwd=None):
    return subprocess.run([sys.executable, "-m", "yamlnet", *map(str, args)], capture_output=True, text=True,
                          env=environment, cwd=cwd)


def test_the_example_layer_type_through_every_command(installed, tmp_path):
    model = tmp_path / "scaled.yaml"
    model.write_text(yaml.safe_dump(MODEL, sort_keys=False))
    for args in (["validate", model], ["summary", model, "--explain"], ["draw", model, "--out", tmp_path / "m.png"]):
        result = yamlnet(installed, *args)
        assert result.returncode == 0, result.stderr
        lines = result.stderr.strip().splitlines()  # the broken packages: one warning line each, nothing more
        assert len(lines) == 3 and all(line.startswith("warning: layer type entry point") for line in lines), lines
    summary = yamlnet(installed, "summary", model, "--explain").stdout
    assert "channelscale" in summary and "one factor per channel" in summary
    schema = json.loads(yamlnet(installed, "schema").stdout)
    assert "channelscale" in schema["$defs"]["layer"]["properties"]["type"]["enum"]
    run = tmp_path / "run"
    # trained with its batches cut into shards in worker processes, which find the package as the trainer does
    result = yamlnet(installed, "train", model, "--out", run, "--quiet", "--set", "training.epochs=1")
    assert result.returncode == 0, result.stderr
    assert len(result.stderr.strip().splitlines()) == 3  # the warnings once: not again from every worker
    assert json.loads((run / "run.json").read_text())["cut"]["batch"] == [[0, 32], [32, 64]]
    result = yamlnet(installed, "train", "--resume", run, "--set", "training.epochs=2", "--quiet")
    assert result.returncode == 0, result.stderr
    assert yamlnet(installed, "evaluate", run).returncode == 0
    np.savez(tmp_path / "new.npz", x=np.random.default_rng(0).random((3, 28, 28, 1)) * 255)
    predicted = yamlnet(installed, "predict", run, tmp_path / "new.npz")
    assert predicted.returncode == 0 and len(predicted.stdout.strip().splitlines()) == 4
    exported = yamlnet(installed, "export", run, "--out", tmp_path / "m.onnx")
    assert exported.returncode == 0, exported.stderr
    from conftest import reference_module
    ort = reference_module("onnxruntime")
    check = subprocess.run([sys.executable, "-c", f"""
import numpy as np, yamlnet
model = yamlnet.load_model({str(run / 'checkpoints' / 'best.npz')!r})
x = np.random.default_rng(1).random((5, 28, 28, 1)).astype(np.float32) * 255
np.save({str(tmp_path / 'ours.npy')!r}, model.predict_proba(x)); np.save({str(tmp_path / 'x.npy')!r}, x)
"""], env=installed, check=True)
    assert check.returncode == 0
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    theirs = session.run(None, {"input": np.load(tmp_path / "x.npy")})[0]
    assert np.allclose(theirs, np.load(tmp_path / "ours.npy"), atol=1e-5)


def test_the_example_passes_yamlnets_gradient_check(installed):
    result = subprocess.run([sys.executable, "-c", "from yamlnet.gradcheck import check_layer\n"
                             "check_layer({'type': 'channelscale', 'init': 0.7}, (4, 4, 3))\n"
                             "check_layer({'type': 'channelscale'}, (5,))\nprint('ok')"],
                            capture_output=True, text=True, env=installed)
    assert result.stdout.strip() == "ok", result.stderr


def test_a_file_that_uses_a_broken_packages_type_gets_one_located_line(installed, tmp_path):
    model = tmp_path / "broken.yaml"
    model.write_text("input: [8, 8, 1]\nlayers:\n  - {type: conv2d, filters: 2, size: 3}\n  - {type: brokenlayer}\n"
                     "  - {type: dense, units: 10}\n")
    result = yamlnet(installed, "validate", model)
    assert result.returncode == 2
    error = result.stderr.strip().splitlines()[-1]
    assert error == (f"{model}:4:12: layers[1] (brokenlayer1).type: the layer type brokenlayer comes from the package "
                     f"broken-layers, which failed to load it (ImportError: no module named torch)")
    warnings = result.stderr.strip().splitlines()[:-1]
    assert any("brokenlayer = brokenlayers:Missing of the package broken-layers" in line for line in warnings)
    assert any("notalayer" in line and "is not a subclass of yamlnet.layers.Layer" in line for line in warnings)
    assert any("the type dense is yamlnet's own" in line for line in warnings)
    dense = yamlnet(installed, "summary", "simple")  # the built-in dense is untouched by the clashing package
    assert dense.returncode == 0 and "dense" in dense.stdout
