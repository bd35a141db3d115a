"""Run directories: names, config and run.json, metrics that survive a crash, checkpoints, which file answers."""

import json

import numpy as np
import pytest

from yamlnet import runs
from yamlnet.errors import DataError


def test_a_new_run_directory_is_named_by_time_and_never_reused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first, second = runs.new_run_dir({"name": "m"}, None), runs.new_run_dir({"name": "m"}, None)
    assert first.parent == second.parent == tmp_path.joinpath("runs", "m").relative_to(tmp_path)
    assert first != second and (first / "checkpoints").is_dir()
    out = runs.new_run_dir({"name": "m"}, tmp_path / "mine")
    runs.append_metrics(out, {"epoch": 1})
    with pytest.raises(DataError, match="already holds a run"):
        runs.new_run_dir({"name": "m"}, out)


def test_config_and_run_json_say_where_a_run_came_from_and_how_it_is_cut(tmp_path):
    runs.write_config(tmp_path, {"name": "m", "training": {"epochs": 2}}, "m.yaml", ["training.epochs=2"],
                      {"shards": 2, "min_shard_macs": 5, "batch": [[0, 4], [4, 8]]})
    assert "#   --set training.epochs=2" in (tmp_path / runs.CONFIG).read_text()
    info = runs.read_info(tmp_path)
    assert info["source"] == "m.yaml" and info["cut"]["min_shard_macs"] == 5
    runs.extend(tmp_path, {"name": "m", "training": {"epochs": 5}}, ["training.epochs=5"])
    assert runs.read_info(tmp_path)["resumed_with"] == ["training.epochs=5"]
    assert "# resumed with --set training.epochs=5" in (tmp_path / runs.CONFIG).read_text()
    (tmp_path / "run.json").write_text("{not json")
    assert runs.read_info(tmp_path) == {}


def test_metrics_cut_short_by_a_crash_and_cut_back_to_the_checkpoint(tmp_path):
    for epoch in (1, 2, 3):
        runs.append_metrics(tmp_path, {"epoch": epoch, "loss": 1.0 / epoch})
    with open(tmp_path / runs.METRICS, "a") as handle:
        handle.write('{"epoch": 4, "lo')
    assert [record["epoch"] for record in runs.read_metrics(tmp_path)] == [1, 2, 3]
    runs.truncate_metrics(tmp_path, 2)
    assert [json.loads(line)["epoch"] for line in (tmp_path / runs.METRICS).read_text().splitlines()] == [1, 2]


def test_checkpoints_round_trip_and_best_answers_before_last(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    runs.save_checkpoint(tmp_path / runs.LAST, {"params/a/W": np.arange(3.0)}, {"epoch": 2, "batch": 1})
    arrays, state = runs.read_checkpoint(tmp_path / runs.LAST)
    assert np.array_equal(arrays["params/a/W"], np.arange(3.0)) and state == {"epoch": 2, "batch": 1}
    assert runs.model_file(tmp_path) == tmp_path / runs.LAST
    runs.save_checkpoint(tmp_path / runs.BEST, {}, {})
    assert runs.model_file(tmp_path) == tmp_path / runs.BEST
    (tmp_path / "checkpoints" / ".last.npz.123.tmp").write_bytes(b"half")
    runs.remove_stale_temporaries(tmp_path)
    assert not list(tmp_path.rglob("*.tmp"))
    with pytest.raises(DataError, match="no such run directory"):
        runs.model_file(tmp_path / "nothing")
