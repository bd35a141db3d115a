import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import yaml
from typer.testing import CliRunner

from yamlnet.cli import app
from yamlnet.errors import ConfigError
from yamlnet.sweep import combinations, run_sweep, sweep_spec

MODEL = {
    "name": "tiny",
    "input": [8, 8, 1],
    "layers": [{"name": "conv1", "type": "conv2d", "filters": 2, "size": 3, "padding": 1, "activation": "relu"},
               {"name": "fc", "type": "dense", "units": 10}, {"type": "softmax"}],
    "data": {"dataset": "digits", "validation_split": 0.2},
    "training": {"epochs": 1, "batch_size": 128, "learning_rate": 0.05},
    "sweep": {"training.learning_rate": [0.01, 0.2], "layers.conv1.filters": [2, 3]},
}


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(MODEL))
    return path


def test_grid_and_random_combinations():
    grid = combinations({"a.b": [1, 2], "c.d": ["x", "y", "z"], "mode": "grid", "seed": 0})
    assert len(grid) == 6 and grid[0] == {"a.b": 1, "c.d": "x"} and grid[-1] == {"a.b": 2, "c.d": "z"}
    drawn = combinations({"a.b": [1, 2], "c.d": ["x", "y", "z"], "mode": "random", "samples": 4, "seed": 1})
    assert len(drawn) == 4 and all(c in grid for c in drawn) and len({json.dumps(c) for c in drawn}) == 4


def test_sweep_runs_every_combination_and_sorts_them(model_file, tmp_path):
    result = run_sweep(model_file, out=tmp_path / "sweep", workers=2)
    rows = result["rows"]
    assert len(rows) == 4 and all(row["status"] == "ok" for row in rows)
    assert [row["best"] for row in rows] == sorted((row["best"] for row in rows), reverse=True)
    with open(tmp_path / "sweep" / "results.csv") as handle:
        table = list(csv.DictReader(handle))
    assert {row["run"] for row in table} == {"run-000", "run-001", "run-002", "run-003"}
    config = yaml.safe_load((tmp_path / "sweep" / "run-003" / "config.yaml").read_text())
    assert config["training"]["learning_rate"] == 0.2 and config["layers"][0]["filters"] == 3
    assert "sweep" not in config
    again = run_sweep(model_file, out=tmp_path / "sweep", workers=1)  # started again: nothing to do
    assert {row["status"] for row in again["rows"]} == {"done before"}
    with pytest.raises(ConfigError, match="holds another sweep"):
        run_sweep(model_file, out=tmp_path / "sweep", workers=1, overrides=["training.epochs=2"])


def test_an_interrupted_run_is_resumed_when_the_sweep_starts_again(model_file, tmp_path):
    first = run_sweep(model_file, out=tmp_path / "sweep", workers=2)
    run_dir = tmp_path / "sweep" / "run-002"
    (run_dir / "summary.txt").unlink()  # as if stopped: resumable, not finished
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    again = run_sweep(model_file, out=tmp_path / "sweep", workers=2)
    statuses = {row["run"]: row["status"] for row in again["rows"]}
    assert statuses["run-002"] == "ok" and list(statuses.values()).count("done before") == 3
    assert (run_dir / "metrics.jsonl").read_text().splitlines() == lines
    assert [r["best"] for r in first["rows"]] == [r["best"] for r in again["rows"]]


def test_a_failing_run_is_reported_and_the_others_go_on(model_file, tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text("training.learning_rate: [0.05, 1.0e+9]\n")
    result = run_sweep(model_file, sweep, out=tmp_path / "sweep", workers=1,
                       overrides=["layers.conv1.activation=linear"])
    statuses = {row["set:training.learning_rate"]: row for row in result["rows"]}
    assert statuses[0.05]["status"] == "ok"
    assert statuses[1e9]["status"] == "failed" and "the loss became" in statuses[1e9]["error"]
    assert result["rows"][0]["set:training.learning_rate"] == 0.05  # failures sort last


@pytest.mark.parametrize("sweep_text, message", [
    ("layers.conv9.filters: [1, 2]\n", "no layer named conv9"),
    ("training.learning_rate: [0.1, -1]\n", "training.learning_rate: must be greater than 0, got -1"),
    ("lr: [0.1]\n", "s.yaml:1:1: sweep.lr: unknown key 'lr'"),
    ("training.epochs: 3\n", "must be a list of values, or a range {low, high} (tpe), got 3"),
    ("mode: randm\n", "did you mean 'random'?"),
])
def test_bad_sweeps_are_refused_before_anything_runs(model_file, tmp_path, sweep_text, message):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(sweep_text)
    with pytest.raises(ConfigError) as info:
        run_sweep(model_file, sweep, out=tmp_path / "sweep", workers=1)
    assert message in str(info.value).replace(str(tmp_path) + "/", "")
    assert not (tmp_path / "sweep").exists()


def test_sweep_on_a_dask_cluster(model_file, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None,
                                  processes=True) as cluster:
        result = run_sweep(model_file, out=tmp_path / "sweep", dask_address=cluster.scheduler_address)
    assert len(result["rows"]) == 4 and all(row["status"] == "ok" for row in result["rows"])


def test_cli_sweep_compare_plot(model_file, tmp_path):
    runner = CliRunner()
    out = tmp_path / "sweep"
    result = runner.invoke(app, ["sweep", str(model_file), "--out", str(out), "--workers", "1",
                                 "--set", "training.epochs=2"])
    assert result.exit_code == 0, result.output
    assert "best val_accuracy" in result.output and "rerun it with: yamlnet train" in result.output
    rerun = result.output.strip().splitlines()[-1].split("rerun it with: yamlnet ")[1].split()
    assert rerun[:2] == ["train", str(model_file)] and "--set" in rerun

    compared = runner.invoke(app, ["compare", str(out / "run-000"), str(out / "run-003")])
    assert compared.exit_code == 0
    header = compared.output.splitlines()[0]
    assert "layers.conv1.filters" in header and "training.learning_rate" in header
    assert "training.epochs" not in header  # the same in both

    plotted = runner.invoke(app, ["plot", str(out)])
    assert plotted.exit_code == 0 and (out / "sweep_val_accuracy.png").stat().st_size > 1000
    plotted = runner.invoke(app, ["plot", str(out / "run-000")])
    assert plotted.exit_code == 0
    for name in ("learning_curves.png", "filters.png", "confusion.png"):
        assert (out / "run-000" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sweep_spec(model_file)["metric"] == "val_accuracy"


def test_an_impossible_combination_is_refused_before_any_run(model_file, tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text("layers.conv1.size: [3, 11]\n")
    result = CliRunner().invoke(app, ["sweep", str(model_file), "--sweep", str(sweep), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert "the sweep combination layers.conv1.size=11 is not possible:" in result.output
    assert "output would be smaller than 1" in result.output and result.output.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_a_failed_run_makes_the_sweep_exit_1_after_its_table(model_file, tmp_path):
    import numpy as np
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "good.npz", x=rng.random((40, 8, 8)), y=np.arange(40) % 10)
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"data.path: [{tmp_path / 'good.npz'}, {tmp_path / 'missing.npz'}]\n")
    result = CliRunner().invoke(app, ["sweep", str(model_file), "--sweep", str(sweep), "--out", str(tmp_path / "o"),
                                      "--workers", "1", "--set", "data={dataset: npz, path: x.npz}"])
    assert result.exit_code == 1, result.output
    assert "failed: " in result.output and "1 of 2 runs failed" in result.output


def test_the_table_fits_100_columns(model_file, tmp_path, monkeypatch):
    from yamlnet.sweep import render
    rows = [{"run": f"run-00{i}", "set:training.lr_schedule": {"type": "step", "step_size": 3, "gamma": 0.5},
             "set:layers.conv1.activation": "leaky_relu", "best": 0.9, "final_val_accuracy": 0.9, "epochs": 3,
             "status": "failed", "error": "x" * 300} for i in range(2)]
    text = render({"keys": ["training.lr_schedule", "layers.conv1.activation"], "metric": "val_accuracy",
                   "rows": rows, "dir": "d", "source": "m.yaml", "overrides": []})
    table = text.split("\n\n")[0].splitlines()
    assert max(len(line) for line in table) <= 100 and "lr_schedule" in table[0] and "…" in table[2]


def test_ctrl_c_names_the_command_that_continues_the_sweep(model_file, tmp_path, monkeypatch):
    import yamlnet.sweep as sweep_module
    from yamlnet.errors import Interrupted

    def interrupt(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(sweep_module, "_execute", interrupt)
    with pytest.raises(Interrupted) as info:
        run_sweep(model_file, out=tmp_path / "o", overrides=["training.epochs=2"])
    assert info.value.exit_code == 130
    assert str(info.value).endswith(f"yamlnet sweep {model_file} --out {tmp_path / 'o'} --set training.epochs=2")


def test_sweep_plot_axes_suit_the_swept_values():
    from yamlnet.plots import axis_scale
    assert axis_scale([0.001, 0.01, 0.1]) == "log" and axis_scale([0.01, 0.05]) == "linear"
    assert axis_scale([4, 8, 16]) == "whole" and axis_scale([1, 100]) == "log"
    assert axis_scale(["relu", "tanh"]) == "labels" and axis_scale([True, False]) == "labels"


def test_training_keys_are_not_sweep_settings(model_file, tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text("training.learning_rate: [0.01]\nfreeze: [conv1]\n")
    with pytest.raises(ConfigError, match="unknown key 'freeze'"):
        sweep_spec(model_file, sweep)


def interrupt_when(*paths, signum=signal.SIGINT, pid=None):
    """Send a signal (to this process by default) as soon as every one of ``paths`` exists."""
    def watch():
        for _ in range(60_000):  # a guard against waiting forever, not a timing
            if all(path.exists() for path in paths):
                os.kill(pid or os.getpid(), signum)
                return
            time.sleep(0.001)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_a_one_worker_sweep_and_starts_no_other_run(model_file, tmp_path, signum):
    from yamlnet.errors import Interrupted
    overrides = ["training.epochs=40"]
    watcher = interrupt_when(tmp_path / "sweep" / "run-000" / "metrics.jsonl", signum=signum)
    with pytest.raises(Interrupted) as info:
        run_sweep(model_file, out=tmp_path / "sweep", workers=1, overrides=overrides)
    watcher.join()
    assert info.value.exit_code == 128 + signum and "Continue the sweep with" in str(info.value)
    assert (tmp_path / "sweep" / "run-000" / "checkpoints" / "last.npz").exists()
    assert not (tmp_path / "sweep" / "run-000" / "summary.txt").exists()
    assert not (tmp_path / "sweep" / "run-001").exists()
    again = run_sweep(model_file, out=tmp_path / "sweep", workers=1, overrides=overrides)
    assert {row["status"] for row in again["rows"]} == {"ok"} and len(again["rows"]) == 4


def test_a_signal_to_a_sweep_of_processes_reaches_every_run_once(model_file, tmp_path):
    """Ctrl-C (here SIGINT to the sweep alone, as a terminal would send it: the runs have a session of
    their own) is passed on once: each running run checkpoints and stops, no new run starts."""
    command = [sys.executable, "-m", "yamlnet", "sweep", str(model_file), "--out", str(tmp_path / "sweep"),
               "--workers", "2", "--set", "training.epochs=200"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    runs = [tmp_path / "sweep" / run / "metrics.jsonl" for run in ("run-000", "run-001")]
    interrupt_when(*runs, pid=process.pid).join()
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr.decode()
    assert "Continue the sweep with: yamlnet sweep" in stderr.decode()
    for run in ("run-000", "run-001"):
        assert (tmp_path / "sweep" / run / "checkpoints" / "last.npz").exists()
        assert not (tmp_path / "sweep" / run / "summary.txt").exists()  # stopped, not finished
    assert not (tmp_path / "sweep" / "run-002").exists()


def test_an_interrupted_run_is_never_the_best():
    from yamlnet.sweep import _rows, render
    results = [{"run": "run-000", "out": "x/run-000", "combination": {"training.learning_rate": 0.1},
                "status": "interrupted", "error": "", "metrics": [{"epoch": 1, "val_accuracy": 0.99, "loss": 0.1}]},
               {"run": "run-001", "out": "x/run-001", "combination": {"training.learning_rate": 0.2},
                "status": "ok", "error": "", "metrics": [{"epoch": 1, "val_accuracy": 0.5, "loss": 0.9}]}]
    rows = _rows(results, "val_accuracy")
    assert [row["run"] for row in rows] == ["run-001", "run-000"]
    text = render({"dir": "x", "metric": "val_accuracy", "keys": ["training.learning_rate"], "rows": rows,
                   "source": "m.yaml", "overrides": []})
    assert "best: run-001" in text and "learning_rate=0.2" in text.splitlines()[-1]
