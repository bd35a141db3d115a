"""Fault injection: a run killed at any moment, or whose disk fills up, loses nothing."""

import errno
import json
import os
import random
import signal
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


#: big enough that its batches are cut into two shards that run in worker processes (LeNet's size),
#: with batchnorm (totals across the shards) and dropout (draws for the whole batch)
SHARDED = {
    "name": "sharded",
    "input": [28, 28, 1],
    "layers": [{"name": "c1", "type": "conv2d", "filters": 6, "size": 5, "padding": 2, "activation": "relu"},
               {"name": "p1", "type": "maxpool2d", "size": 2},
               {"name": "c2", "type": "conv2d", "filters": 16, "size": 5, "activation": "relu"},
               {"name": "p2", "type": "maxpool2d", "size": 2},
               {"name": "bn", "type": "batchnorm"},
               {"name": "drop", "type": "dropout", "rate": 0.2},
               {"name": "fc", "type": "dense", "units": 10}, {"type": "softmax"}],
    "data": {"dataset": "shapes", "n_samples": 400, "validation_split": 0.2},
    "training": {"epochs": 12, "batch_size": 64, "learning_rate": 0.05, "optimizer": "momentum", "seed": 4},
}


def worker_pids(pid: int) -> list[int]:
    """The shard workers of process ``pid``."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            command = open(f"/proc/{entry}/cmdline").read()
        except OSError:
            continue
        if ppid == pid and "shard_worker" in command:
            found.append(int(entry))
    return found


def exited(pid: int) -> bool:
    """Gone, or a zombie waiting for its parent (init, for an orphan) to reap it."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def wait_for(condition, process):
    """Poll until ``condition()``; fail if the process ends first (its run was too quick to catch)."""
    while not condition():
        assert process.poll() is None, process.stderr.read().decode()
        time.sleep(0.002)


@pytest.fixture(scope="module")
def sharded_run(tmp_path_factory):
    """The model file and its uninterrupted run's weights and metrics."""
    folder = tmp_path_factory.mktemp("sharded")
    model = folder / "sharded.yaml"
    model.write_text(yaml.safe_dump(SHARDED))
    subprocess.run(yamlnet_command("train", model, "--out", folder / "whole", "--quiet"), check=True,
                   stdout=subprocess.DEVNULL)
    info = json.loads((folder / "whole" / "run.json").read_text())
    assert info["cut"]["batch"] == [[0, 32], [32, 64]]  # the model is cut, as the tests below need
    return model, weights_and_metrics(folder / "whole")


def assert_same_run(run_dir, expected):
    expected_weights, expected_metrics = expected
    weights, metrics = weights_and_metrics(run_dir)
    assert metrics == expected_metrics
    for key, value in expected_weights.items():
        assert np.array_equal(value, weights[key]), key


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_or_sighup_mid_epoch_then_resume_is_the_uninterrupted_run(sharded_run, tmp_path, signum):
    model, expected = sharded_run
    run_dir = tmp_path / "run"
    process = subprocess.Popen(yamlnet_command("train", model, "--out", run_dir, "--quiet"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: (run_dir / "metrics.jsonl").exists() and worker_pids(process.pid), process)
    workers = worker_pids(process.pid)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, stderr.decode()
    line = stdout.decode().strip()
    assert f"interrupted by {signal.Signals(signum).name}" in line and f"yamlnet train --resume {run_dir}" in line
    assert not any(os.path.exists(f"/proc/{pid}") for pid in workers)  # ended and reaped with the run
    subprocess.run(yamlnet_command("train", "--resume", run_dir, "--quiet"), check=True, stdout=subprocess.DEVNULL)
    assert_same_run(run_dir, expected)


def test_kill_9_with_checkpoint_every_loses_a_batch_at_most(sharded_run, tmp_path):
    """A mid-epoch checkpoint, then kill -9 of the trainer: its workers go too, and the resumed run
    is the uninterrupted one."""
    from yamlnet.runs import read_checkpoint
    model, expected = sharded_run
    run_dir = tmp_path / "run"
    process = subprocess.Popen(yamlnet_command("train", model, "--out", run_dir, "--quiet",
                                               "--set", "training.checkpoint_every=1"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def mid_epoch() -> bool:
        try:
            return read_checkpoint(run_dir / "checkpoints" / "last.npz")[1]["batch"] > 0
        except Exception:  # not there yet
            return False

    wait_for(lambda: worker_pids(process.pid) and mid_epoch(), process)
    workers = worker_pids(process.pid)
    process.kill()
    process.wait()
    for _ in range(6000):  # orphans: they see their pipe hang up and exit (a guard against a hang, not a timing)
        if all(exited(pid) for pid in workers):
            break
        time.sleep(0.01)
    assert all(exited(pid) for pid in workers)
    subprocess.run(yamlnet_command("train", "--resume", run_dir, "--quiet"), check=True, stdout=subprocess.DEVNULL)
    assert_same_run(run_dir, expected)


def test_a_worker_killed_mid_epoch_is_one_line_and_changes_nothing(sharded_run, tmp_path):
    model, expected = sharded_run
    run_dir = tmp_path / "run"
    process = subprocess.Popen(yamlnet_command("train", model, "--out", run_dir, "--quiet"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: (run_dir / "metrics.jsonl").exists() and worker_pids(process.pid), process)
    os.kill(worker_pids(process.pid)[0], signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr.decode()
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: sharded: a shard's worker process stopped; starting new")
    assert_same_run(run_dir, expected)


@pytest.mark.parametrize("how", ["one BLAS thread", "in a thread"])
def test_the_same_run_on_one_core_or_from_a_thread(sharded_run, tmp_path, how):
    """On one core the shards run as threads of the trainer; from a thread (a server, a threaded Dask
    worker) in worker processes: the same cut, the same weights, bit for bit."""
    model, expected = sharded_run
    run_dir = tmp_path / "run"
    if how == "one BLAS thread":
        subprocess.run(yamlnet_command("train", model, "--out", run_dir, "--quiet"), check=True,
                       stdout=subprocess.DEVNULL, env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
    else:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(1) as pool:
            pool.submit(train, str(model), out=run_dir).result()
    assert_same_run(run_dir, expected)


def test_the_same_run_in_a_threaded_dask_worker(sharded_run, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    model, expected = sharded_run
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        client.submit(train, str(model), out=tmp_path / "run", pure=False).result()
    assert_same_run(tmp_path / "run", expected)
