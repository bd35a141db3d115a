"""Fault injection: a run killed at any moment, or whose disk fills up, loses nothing."""

import errno
import json
import os
import random
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import yamlnet
from yamlnet.cli import app
from yamlnet.errors import DataError
from yamlnet.train import train

MODEL = {
    "name": "faulty",
    "input": [8, 8, 1],
    "layers": [{"name": "conv1", "type": "conv2d", "filters": 4, "size": 3, "padding": 1, "activation": "relu"},
               {"name": "drop", "type": "dropout", "rate": 0.2},
               {"name": "fc", "type": "dense", "units": 10}, {"type": "softmax"}],
    "data": {"dataset": "digits", "validation_split": 0.2},
    "training": {"epochs": 300, "batch_size": 16, "learning_rate": 0.02, "optimizer": "momentum", "seed": 3},
}


def yamlnet_command(*args):
    return [sys.executable, "-m", "yamlnet", *map(str, args)]


def weights_and_metrics(run_dir):
    with np.load(run_dir / "checkpoints" / "last.npz", allow_pickle=False) as archive:
        weights = {k: archive[k] for k in archive.files if k.startswith(("params/", "optim/"))}
    metrics = [{k: v for k, v in json.loads(line).items() if k != "seconds"}
               for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return weights, metrics


def test_sigkill_at_random_moments_never_loses_the_run(tmp_path):
    model = tmp_path / "m.yaml"
    model.write_text(yaml.safe_dump(MODEL))
    started = time.monotonic()
    subprocess.run(yamlnet_command("train", model, "--out", tmp_path / "whole", "--quiet"), check=True,
                   stdout=subprocess.DEVNULL)
    # Kill moments are drawn as shares of what a whole run takes on this machine, now: a slow or a
    # fast machine gets the same pattern of kills (nothing here asserts a time).
    whole = time.monotonic() - started
    expected_weights, expected_metrics = weights_and_metrics(tmp_path / "whole")

    seed = int(os.environ.get("YAMLNET_FAULT_SEED", random.randrange(10**6)))  # different moments each run
    run_dir, chance, kills = tmp_path / "killed", random.Random(seed), 0
    while True:
        fresh = not (run_dir / "config.yaml").exists()  # killed before it held anything: start again
        command = yamlnet_command("train", model, "--out", run_dir) if fresh else \
            yamlnet_command("train", "--resume", run_dir)
        process = subprocess.Popen([*command, "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            process.wait(timeout=chance.uniform(0.05, 0.5) * whole if kills < 10 else None)
            assert process.returncode == 0, f"seed {seed}: {process.stderr.read().decode()}"
            break
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            kills += 1
        if (run_dir / "checkpoints" / "last.npz").exists():
            yamlnet.load_model(run_dir / "checkpoints" / "last.npz")  # always loadable
    assert kills >= 1, f"seed {seed}"  # the first attempt has the whole run to do in at most half its time
    weights, metrics = weights_and_metrics(run_dir)
    assert metrics == expected_metrics, f"seed {seed}"
    for key, value in expected_weights.items():
        assert np.array_equal(value, weights[key]), f"seed {seed}: {key}"
    assert not list(run_dir.rglob("*.tmp"))


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"),
                                     PermissionError(errno.EROFS, "Read-only file system")])
def test_a_full_or_read_only_disk_is_a_clear_error_and_keeps_the_last_checkpoint(tmp_path, monkeypatch, failure):
    config = {**MODEL, "training": {**MODEL["training"], "epochs": 3}}
    run_dir = tmp_path / "run"
    calls = {"n": 0}
    real_replace = os.replace

    def failing_replace(source, target):
        calls["n"] += 1
        if calls["n"] > 4:  # after the first epoch's checkpoints
            raise failure
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(DataError) as info:
        train(config, out=run_dir)
    assert failure.strerror in str(info.value) and "cannot be written" in str(info.value)
    monkeypatch.setattr(os, "replace", real_replace)
    assert not list(run_dir.rglob("*.tmp"))
    model = yamlnet.load_model(run_dir / "checkpoints" / "last.npz")
    assert model.param_count() > 0
    resumed = train(resume=run_dir)
    assert len(resumed.metrics) == 3


def test_cli_reports_a_full_disk_in_one_line(tmp_path, monkeypatch):
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({**MODEL, "training": {**MODEL["training"], "epochs": 1}}))

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    result = CliRunner().invoke(app, ["train", str(path), "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 2
    assert result.output.strip().endswith("cannot be written: No space left on device")
    assert len(result.output.strip().splitlines()) == 1


def test_checkpoints_from_another_model_or_damaged_are_refused(tmp_path):
    train({**MODEL, "training": {**MODEL["training"], "epochs": 1}}, out=tmp_path / "a")
    other = {**MODEL, "layers": [{**MODEL["layers"][0], "filters": 5}, *MODEL["layers"][1:]],
             "training": {**MODEL["training"], "epochs": 2}}
    train(other, out=tmp_path / "b")
    last = tmp_path / "b" / "checkpoints" / "last.npz"
    last.write_bytes((tmp_path / "a" / "checkpoints" / "last.npz").read_bytes())
    with pytest.raises(DataError, match="conv1/W has shape"):
        train(resume=tmp_path / "b")
    last.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="truncated or corrupt"):
        train(resume=tmp_path / "b")
