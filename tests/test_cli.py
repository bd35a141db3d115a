import json

import pytest
from conftest import ROOT
from typer.testing import CliRunner

from yamlnet.cli import app

SIMPLE = str(ROOT / "models" / "simple.yaml")
NG = str(ROOT / "models" / "ng_example.yaml")
LENET = str(ROOT / "models" / "lenet.yaml")


@pytest.fixture
def run():
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


def test_summary_shows_the_course_notes_shapes(run):
    result = run("summary", NG)
    assert result.exit_code == 0
    for shape in ("37 × 37 × 10", "17 × 17 × 20", "7 × 7 × 40", "1960"):
        assert shape in result.output
    assert "Total params: 44,950" in result.output


def test_summary_json_counts_like_keras(run):
    result = run("summary", LENET, "--json")
    summary = json.loads(result.output)
    assert summary["total_params"] == 61706
    assert set(summary) == {"name", "input", "layers", "total_params", "total_macs"}
    conv1 = summary["layers"][0]
    assert conv1 == {"name": "conv1", "type": "conv2d", "block": [], "inputs": ["input"], "output_shape": [28, 28, 6],
                     "params": 156, "macs": 28 * 28 * 6 * 5 * 5 * 1}
    assert summary["layers"][4]["output_shape"] == [400]
    assert summary["layers"][-1] == {"name": "prediction", "type": "softmax", "block": [], "inputs": ["fc3"],
                                     "output_shape": [10], "params": 0, "macs": 0}
    assert summary["total_macs"] == sum(layer["macs"] for layer in summary["layers"])


def test_summary_explain_shows_the_arithmetic(run):
    result = run("summary", NG, "--explain")
    assert "n_H = n_W = floor((39 + 2·0 − 3) / 1) + 1 = 37" in result.output
    assert "params = 3·3·3·10 + 10 = 280" in result.output


def test_summary_marks_dropped_pixels(run):
    result = run("summary", SIMPLE)
    assert "f=3 s=2 p=0 *" in result.output and "floor() leaves" in result.output


def test_validate(run, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: [8, 8, 1]\nlayers:\n  - {type: conv2d, filters: 0, size: 3}\n")
    result = run("validate", SIMPLE, NG, bad)
    assert result.exit_code == 2
    assert f"{SIMPLE}: ok" in result.output and f"{NG}: ok" in result.output
    assert f"{bad}:3:29: layers[0] (conv2d1).filters: must be at least 1, got 0" in result.output


def test_errors_are_one_line_with_exit_status_2(run, tmp_path):
    result = run("summary", tmp_path / "missing.yaml")
    assert result.exit_code == 2 and result.output.strip().endswith("no such file")
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    result = run("summary", SIMPLE, "--set", "layers.conv9.filters=3")
    assert result.exit_code == 2 and "no layer named conv9" in result.output


def test_schema_command_prints_the_committed_schema(run):
    committed = json.loads((ROOT / "schemas" / "yamlnet.schema.json").read_text(encoding="utf-8"))
    assert json.loads(run("schema").output) == committed


def test_python_dash_m_works():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "yamlnet", "summary", SIMPLE, "--json"], capture_output=True,
                         text=True, check=True)
    assert json.loads(out.stdout)["total_params"] == 2698


def test_data_prints_the_facts_and_draws_the_grid(run, tmp_path):
    result = run("data", SIMPLE, "--out", str(tmp_path / "grid.png"), "--augmented",
                 "--set", "data.augment={shift: 1}")
    assert "data set: digits    images: 8 × 8 × 1    classes: 10" in result.output
    assert "total" in result.output and (tmp_path / "grid.png").read_bytes()[:4] == b"\x89PNG"
    facts = json.loads(run("data", SIMPLE, "--json").output)
    assert sum(facts["counts"]["training"]) + sum(facts["counts"]["validation"]) == 1797
    assert facts["raw_range"] == [0.0, 16.0] and facts["classes"][0] == "0"


def test_help_texts_read_cleanly_and_show_defaults(run):
    import re
    for command in ("train", "sweep", "evaluate", "draw", "init", "export", "data"):
        text = run(command, "--help").output
        assert not re.search(r"\w \.(?=\s|$)|\w ;", text), (command, text)  # "Run directory ." as it was
    assert "the number of cores" in run("sweep", "--help").output
    evaluate = run("evaluate", "--help").output
    assert re.search(r"--test\s+Use the data set", evaluate) and "<bool>" not in evaluate  # a flag, shown as one



def test_tensorboard_without_its_extra_is_one_line(run, monkeypatch, tmp_path):
    import sys
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # as if not installed
    result = run("train", "simple", "--log", "tensorboard", "--out", str(tmp_path / "run"), "--set", "training.epochs=1")
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == \
        'training.log: tensorboard writes with tensorboardX: pip install "yamlnet[tensorboard]"'
