"""A trained model as a user meets it: raw images in from Python, predictions that carry names, folders
to evaluate on, runs that work from any folder, and files others can read."""

import os
import stat

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import yamlnet
from yamlnet.cli import app
from yamlnet.errors import DataError

from data.test_folder import make_folder


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A model file beside a folder of images, its data path relative to the file, trained from
    another folder; (run directory, image folder)."""
    root = tmp_path_factory.mktemp("project")
    images = make_folder(root / "images", counts=(12, 12, 12))
    (root / "models").mkdir()
    (root / "models" / "pets.yaml").write_text(yaml.safe_dump({
        "name": "pets", "input": [12, 12, 3],
        "layers": [{"type": "conv2d", "filters": 4, "size": 3, "padding": "same", "activation": "relu"},
                   {"type": "maxpool2d", "size": 2}, {"type": "dense", "units": 3}, {"type": "softmax"}],
        "data": {"dataset": "folder", "path": "../images"},  # relative to the model file
        "training": {"epochs": 3, "batch_size": 8, "learning_rate": 0.02}}))
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    cwd = os.getcwd()
    os.chdir(elsewhere)
    try:
        result = yamlnet.train(str(root / "models" / "pets.yaml"), out=str(root / "run"))
    finally:
        os.chdir(cwd)
    return result.run_dir, images


def test_a_trained_model_takes_raw_images_of_any_dtype(folder_run):
    run_dir, images = folder_run
    model = yamlnet.load_model(run_dir / "checkpoints" / "best.npz")
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (5, 12, 12, 3)).astype(np.uint8)
    shift, scale = model.normalization
    by_hand = model.predict_proba((raw.astype(np.float32) - shift) / scale, normalized=True)
    assert np.allclose(model.predict_proba(raw), by_hand, atol=1e-6)
    assert np.allclose(model.predict_proba(raw.astype(np.float64)), by_hand, atol=1e-6)
    assert np.allclose(yamlnet.predict(run_dir, raw).probabilities, by_hand, atol=1e-6)


def test_a_built_model_knows_no_normalization_and_says_so():
    model = yamlnet.build_model("simple")
    with pytest.raises(DataError, match="knows no normalization"):
        model.predict_proba(np.zeros((2, 8, 8, 1), np.uint8))
    assert model.predict_proba(np.zeros((2, 8, 8)), normalized=True).shape == (2, 10)  # grey: no channel axis
    assert model.predict_proba(np.zeros((2, 8, 8)), normalized=True).shape == (2, 10)
    model.normalization = (np.zeros(1, np.float32), np.ones(1, np.float32))
    assert model.predict_proba(np.zeros((2, 8, 8), np.uint8)).shape == (2, 10)


def test_a_model_has_its_summary():
    result = CliRunner().invoke(app, ["summary", "simple"])
    assert yamlnet.build_model("simple").summary() == result.stdout.rstrip("\n")


def test_predictions_carry_file_and_class_names(folder_run):
    run_dir, images = folder_run
    predictions = yamlnet.predict(run_dir, images / "bar")
    assert len(predictions) == 12 and all(name.startswith(str(images / "bar")) for name in predictions.names)
    assert predictions.classes == ["bar", "line", "square"]
    assert np.asarray(predictions).shape == (12, 3) and set(predictions.predicted) <= {"bar", "line", "square"}
    best = predictions.top(2)
    assert len(best[0]) == 2 and best[0][0][1] >= best[0][1][1] and best[0][0][0] == predictions.predicted[0]
    both = yamlnet.predict(run_dir, [images / "bar", np.zeros((2, 12, 12, 3), np.uint8)])
    assert len(both) == 14 and both.names[-1] == "array 1[1]"
    assert predictions.to_csv(top=1).splitlines()[0] == "file,rank,class,probability"
    with pytest.raises(DataError, match="got int"):
        yamlnet.predict(run_dir, 3)


def test_evaluate_on_a_folder_by_class_names(folder_run, tmp_path):
    run_dir, images = folder_run
    report = yamlnet.evaluate(run_dir, str(images))
    assert report["samples"] == 36 and report["classes"] == ["bar", "line", "square"]
    result = CliRunner().invoke(app, ["evaluate", str(run_dir), "--data", str(images)])
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if line.startswith("confusion"))
    table = result.output.split(header)[1].splitlines()[1]
    assert table.split() == ["bar", "line", "square"]
    make_folder(tmp_path / "other", counts=(1, 1), names=("bar", "cat"))
    result = CliRunner().invoke(app, ["evaluate", str(run_dir), "--data", str(tmp_path / "other")])
    assert result.exit_code == 2 and "has class folder 'cat', which the training folder lacks" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_run_works_from_any_folder_and_after_it_moved(folder_run, tmp_path, monkeypatch):
    run_dir, images = folder_run
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["data"]["path"] == str(images)  # stored absolute
    moved = tmp_path / "moved"
    moved.mkdir()
    import shutil
    shutil.copytree(run_dir, moved / "run")
    monkeypatch.chdir(tmp_path)
    assert yamlnet.evaluate(moved / "run")["samples"] > 0  # its validation part, rebuilt from the images
    result = CliRunner().invoke(app, ["train", "--resume", str(moved / "run"), "--set", "training.epochs=4",
                                      "--quiet"])
    assert result.exit_code == 0, result.output


def test_set_paths_are_relative_to_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.yaml").write_text("input: [8, 8, 1]\nlayers:\n  - {type: dense, units: 10}\n"
                                                 "data: {dataset: npz, path: data.npz}\n")
    monkeypatch.chdir(tmp_path)
    assert yamlnet.load_config("models/m.yaml")["data"]["path"] == str(tmp_path / "models" / "data.npz")
    config = yamlnet.load_config("models/m.yaml", ["data.path=here.npz"])
    assert config["data"]["path"] == str(tmp_path / "here.npz")
    assert yamlnet.load_config({"input": [8, 8, 1], "layers": [{"type": "dense", "units": 10}],
                                "data": {"dataset": "npz", "path": "x.npz"}})["data"]["path"] == str(tmp_path / "x.npz")


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_honour_the_umask(tmp_path, mask, mode):
    previous = os.umask(mask)
    try:
        result = yamlnet.train("simple", out=tmp_path / "run", overrides=["training.epochs=1"])
    finally:
        os.umask(previous)
    for name in ("config.yaml", "run.json", "metrics.jsonl", "summary.txt", "checkpoints/last.npz",
                 "checkpoints/best.npz"):
        assert stat.S_IMODE((result.run_dir / name).stat().st_mode) == mode, name
