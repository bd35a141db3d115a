"""sweep.mode: tpe — Optuna's TPE with pruning: a learned search, resumable, in processes and on Dask."""

import json

import pytest
from typer.testing import CliRunner

from conftest import reference_module
from yamlnet.cli import app
from yamlnet.sweep import run_sweep

MODEL = """
input: [8, 8, 1]
layers:
  - {name: conv1, type: conv2d, filters: 4, size: 3, padding: 1, activation: relu}
  - {name: fc, type: dense, units: 10}
  - {type: softmax}
data: {validation_split: 0.3}
training: {epochs: 3, optimizer: momentum}
sweep:
  mode: tpe
  samples: SAMPLES
  prune: median
  training.learning_rate: {low: 0.001, high: 1.0, log: true}
  training.batch_size: {low: 16, high: 64, step: 16}
  layers.conv1.filters: [2, 4]
"""


@pytest.fixture
def model_file(tmp_path):
    reference_module("optuna")
    path = tmp_path / "model.yaml"
    path.write_text(MODEL.replace("SAMPLES", "8"))
    return path


def _study(sweep_dir):
    from yamlnet.search import open_study
    return open_study(sweep_dir)


def test_a_search_run_one_at_a_time_is_the_same_search_again(model_file, tmp_path):
    first = run_sweep(model_file, out=tmp_path / "a", workers=1)
    second = run_sweep(model_file, out=tmp_path / "b", workers=1)
    assert [row["set:training.learning_rate"] for row in first["rows"]] == \
        [row["set:training.learning_rate"] for row in second["rows"]]
    rows = first["rows"]
    assert len(rows) == 8 and {row["status"] for row in rows} <= {"ok", "pruned"}
    assert all(row["set:training.batch_size"] in (16, 32, 48, 64) and row["set:layers.conv1.filters"] in (2, 4)
               for row in rows)
    assert all(0.001 <= row["set:training.learning_rate"] <= 1.0 for row in rows)
    states = [trial.state.name for trial in _study(tmp_path / "a").trials]
    assert len(states) == 8 and set(states) <= {"COMPLETE", "PRUNED"}
    text = (tmp_path / "a" / "results.csv").read_text()
    assert text.splitlines()[0].startswith("run,training.learning_rate,training.batch_size,layers.conv1.filters,")


def test_pruned_trials_keep_their_run_directory_and_say_so(model_file, tmp_path):
    model_file.write_text(MODEL.replace("SAMPLES", "14").replace("epochs: 3", "epochs: 4"))
    rows = run_sweep(model_file, out=tmp_path / "s", workers=1)["rows"]
    pruned = [row for row in rows if row["status"] == "pruned"]
    assert pruned, [row["status"] for row in rows]
    run_dir = tmp_path / "s" / pruned[0]["run"]
    assert json.loads((run_dir / "status.json").read_text())["state"] == "pruned"
    assert (run_dir / "checkpoints" / "last.npz").is_file() and pruned[0]["epochs"] < 4


def test_a_stopped_search_goes_on_without_running_finished_trials_again(model_file, tmp_path):
    from yamlnet import search

    calls = []
    real = search.run_trial

    def counting(job):
        calls.append(job["number"])
        if len(calls) == 4:
            raise KeyboardInterrupt  # Ctrl-C during the fourth trial
        return real(job)

    search.run_trial = counting
    try:
        with pytest.raises(Exception, match="Continue the search with: yamlnet sweep"):
            run_sweep(model_file, out=tmp_path / "s", workers=1)
    finally:
        search.run_trial = real
    done_before = [t.number for t in _study(tmp_path / "s").trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(done_before) == 3
    cut_off = next(t for t in _study(tmp_path / "s").trials if t.state.name == "RUNNING")
    result = run_sweep(model_file, out=tmp_path / "s", workers=1)
    assert len(result["rows"]) == 8
    trials = _study(tmp_path / "s").trials
    assert [t.number for t in trials if t.state.name in ("COMPLETE", "PRUNED")][:3] == done_before
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials) == 8
    again = trials[cut_off.number + 1]  # the first trial of the new start: the cut-off one's values
    assert trials[cut_off.number].state.name == "FAIL" and again.params == cut_off.params


def test_trials_in_processes(model_file, tmp_path):
    result = CliRunner().invoke(app, ["sweep", str(model_file), "--out", str(tmp_path / "s"), "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert len({t.number for t in _study(tmp_path / "s").trials}) == 8
    assert "rerun it with: yamlnet train" in result.output


def test_on_a_dask_cluster_one_study(model_file, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None,
                                  processes=True) as cluster:
        result = run_sweep(model_file, out=tmp_path / "s", dask_address=cluster.scheduler_address)
    trials = _study(tmp_path / "s").trials
    assert len(result["rows"]) == 8 and len({t.number for t in trials}) == 8
    assert {row["status"] for row in result["rows"]} <= {"ok", "pruned"}


@pytest.mark.parametrize("change, message", [
    ("mode: tpe", "a range {low, high} is for mode: tpe; grid takes a list of values"),
    ("low: 0.001, high: 1.0, log: true", "a range needs low < high (and low > 0 with log: true), got 1.0..0.001"),
])
def test_mistakes_in_a_search_are_one_line(model_file, tmp_path, change, message):
    text = MODEL.replace("SAMPLES", "8")
    text = text.replace("mode: tpe", "mode: grid") if change == "mode: tpe" else \
        text.replace(change, "low: 1.0, high: 0.001, log: true")
    model_file.write_text(text)
    result = CliRunner().invoke(app, ["sweep", str(model_file), "--out", str(tmp_path / "s")])
    assert result.exit_code == 2 and message in result.output.strip().splitlines()[-1]


def test_tpe_without_optuna_is_one_line(model_file, tmp_path, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "optuna", None)
    result = CliRunner().invoke(app, ["sweep", str(model_file), "--out", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == 'sweep.mode: tpe searches with Optuna: pip install "yamlnet[search]"'
    assert not (tmp_path / "s").exists()
