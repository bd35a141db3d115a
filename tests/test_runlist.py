"""yamlnet runs: every run below a folder, its state (a killed run is interrupted, not running), and the
settings that differ."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import yamlnet
from yamlnet import runs
from yamlnet.cli import app
from yamlnet.runlist import list_runs


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for rate in (0.01, 0.05):
        yamlnet.train("simple", out=root / f"lr-{rate}", overrides=["training.epochs=2",
                                                                   f"training.learning_rate={rate}"])
    with pytest.raises(yamlnet.TrainingError):  # a loss that runs away: failed
        yamlnet.train("simple", out=root / "nan", overrides=["training.epochs=2", "training.learning_rate=1e30"])
    killed = root / "deep" / "killed"
    yamlnet.train("simple", out=killed, overrides=["training.epochs=1"])
    (killed / runs.SUMMARY).unlink()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    status = json.loads((killed / runs.STATUS).read_text())
    (killed / runs.STATUS).write_text(json.dumps({**status, "state": "running", "pid": int(dead.stdout)}) + "\n")
    return root


def test_every_run_with_its_state(folder):
    rows = {row["run"].rsplit("/", 1)[-1]: row for row in list_runs(folder)["rows"]}
    assert {name: row["state"] for name, row in rows.items()} == {
        "lr-0.01": "finished", "lr-0.05": "finished", "nan": "failed", "killed": "interrupted"}
    assert "became" in rows["nan"]["error"] and rows["lr-0.05"]["epochs"] == 2 and rows["lr-0.05"]["of"] == 2
    assert "training.learning_rate" in list_runs(folder)["keys"]


def test_a_live_run_is_running(tmp_path):
    yamlnet.train("simple", out=tmp_path / "run", overrides=["training.epochs=1"])
    runs.mark(tmp_path / "run", "running")  # this very process
    assert runs.run_status(tmp_path / "run")[0] == "running"


def test_sort_filter_json_and_last(folder):
    runner = CliRunner()
    table = runner.invoke(app, ["runs", str(folder), "--sort", "best", "--filter", "state=finished"])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split()[:7] == ["run", "model", "state", "epochs", "best", "time", "started"]
    assert len(lines) == 3 and all("finished" in line for line in lines[1:])
    data = json.loads(runner.invoke(app, ["runs", str(folder), "--json", "--filter", "training.learning_rate=0.05"]).output)
    assert [row["run"].rsplit("/", 1)[-1] for row in data["rows"]] == ["lr-0.05"]
    assert runner.invoke(app, ["runs", str(folder), "--last"]).output.strip().endswith("killed")
    bad = runner.invoke(app, ["runs", str(folder), "--filter", "state"])
    assert bad.exit_code == 2 and "expected KEY=VALUE" in bad.output
