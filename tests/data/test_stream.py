"""data.cache none and disk: images read a batch at a time, ahead of training, with the numbers of memory."""

import threading

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from data.test_folder import make_folder
from yamlnet.cli import app
from yamlnet.config import load_config
from yamlnet.data import Feed, Streamed, load_data
from yamlnet.errors import DataError, ReadError
from yamlnet.npzio import read_npz
from yamlnet.progress import Reporter
from yamlnet.train import train


def folder_model(root, **data):
    return {"name": "s", "input": [12, 12, 3], "layers": [
        {"type": "conv2d", "filters": 4, "size": 3, "padding": "same", "activation": "relu"},
        {"type": "maxpool2d", "size": 2}, {"type": "dense", "units": 3}, {"type": "softmax"}],
        "data": {"dataset": "folder", "path": str(root), **data},
        "training": {"epochs": 2, "batch_size": 8, "learning_rate": 0.02, "optimizer": "momentum"}}


def weights(run_dir):
    return read_npz(run_dir / "checkpoints" / "last.npz")


def assert_same_arrays(a: dict, b: dict):
    """The weights, batchnorm state and optimizer state of two checkpoints (not their configs) are equal."""
    assert a.keys() == b.keys()
    for key in (key for key in a if not key.startswith("__")):
        assert np.array_equal(a[key], b[key]), key


def test_memory_none_and_disk_train_the_same_weights_bit_for_bit(tmp_path):
    root = make_folder(tmp_path / "images", counts=(14, 14, 14))
    augment = {"flip": "horizontal", "shift": 1, "brightness": 0.2, "cutout": 3}
    runs = {}
    for cache in ("memory", "none", "disk"):
        runs[cache] = train(folder_model(root, cache=cache, augment=augment, prefetch=3), out=tmp_path / cache,
                            quiet=True)
    assert [r["val_loss"] for r in runs["memory"].metrics] == [r["val_loss"] for r in runs["disk"].metrics]
    for cache in ("none", "disk"):
        assert_same_arrays(weights(runs["memory"].run_dir), weights(runs[cache].run_dir))
    # a second run of the disk cache reads the cache made by the first: no image is decoded again
    from yamlnet.data import folder
    calls = []
    real = folder.read_image
    folder.read_image = lambda *args: calls.append(1) or real(*args)
    try:
        again = train(folder_model(root, cache="disk", augment=augment, prefetch=3), out=tmp_path / "again",
                      quiet=True)
    finally:
        folder.read_image = real
    drop = lambda records: [{k: v for k, v in r.items() if k != "seconds"} for r in records]  # noqa: E731
    assert calls == [] and drop(again.metrics) == drop(runs["disk"].metrics)


@pytest.mark.parametrize("store", ["npz", "npy folder"])
def test_arrays_read_in_place_train_as_they_do_in_memory(tmp_path, store):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (60, 8, 8)).astype(np.uint8)  # (N, H, W): a channel axis is added
    y = (x[:, :4].mean(axis=(1, 2)) > x[:, 4:].mean(axis=(1, 2))).astype(np.int64)
    if store == "npz":
        path = tmp_path / "d.npz"
        np.savez(path, x=x, y=y)
    else:
        path = tmp_path / "arrays"
        path.mkdir()
        np.save(path / "x.npy", x)
        np.save(path / "y.npy", y)
    model = {"input": [8, 8, 1], "layers": [{"type": "conv2d", "filters": 3, "size": 3, "activation": "relu"},
                                            {"type": "dense", "units": 2}, {"type": "softmax"}],
             "data": {"dataset": "npz", "path": str(path)}, "training": {"epochs": 2, "batch_size": 16}}
    ran = {cache: train({**model, "data": {**model["data"], "cache": cache}}, out=tmp_path / cache, quiet=True)
           for cache in ("memory", "none")}
    assert_same_arrays(weights(ran["memory"].run_dir), weights(ran["none"].run_dir))
    splits = load_data(load_config({**model, "data": {**model["data"], "cache": "none"}}), 2)
    assert isinstance(splits.x, Streamed) and splits.x.shape == (60, 8, 8, 1)


def test_a_compressed_npz_that_must_be_read_in_place_is_one_line(tmp_path):
    path = tmp_path / "c.npz"
    np.savez_compressed(path, x=np.zeros((10, 4, 4, 1)), y=np.zeros(10, np.int64))
    model = tmp_path / "m.yaml"
    model.write_text(yaml.safe_dump({"input": [4, 4, 1], "layers": [{"type": "dense", "units": 2}],
                                     "data": {"dataset": "npz", "path": str(path), "cache": "none"}}))
    result = CliRunner().invoke(app, ["train", str(model), "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()[-1:]
    assert "is compressed (numpy.savez_compressed)" in line and "store it with numpy.savez" in line
    assert "Traceback" not in result.output


def test_without_a_cache_setting_yamlnet_picks_memory_when_it_fits_and_disk_otherwise_and_says_so(tmp_path):
    from yamlnet.memory import model_bytes
    from yamlnet.plan import plan
    root = make_folder(tmp_path / "images", counts=(60, 60, 60))
    splits = load_data(load_config(folder_model(root)), 3)
    assert splits.cache == "memory" and isinstance(splits.x, np.ndarray) and splits.note == ""
    model = {**folder_model(root), "data": {**folder_model(root)["data"], "prefetch": 1}}
    config, layers = plan({**model, "training": {"max_memory": 200_000}})
    splits = load_data(config, 3, model_bytes=model_bytes(config, layers))
    assert splits.cache == "disk" and isinstance(splits.x, Streamed)
    assert splits.note.startswith("data.cache: disk — the 180 decoded images (") and "training.max_memory" in splits.note
    # streaming only where it holds fewer images than memory would: 180 images, read 2 × 128 at a time
    config, layers = plan({**model, "training": {"max_memory": 200_000, "batch_size": 128}})
    assert load_data(config, 3, model_bytes=model_bytes(config, layers)).cache == "memory"


def test_train_from_the_shell_streams_a_folder_too_large_for_its_limit_and_says_so(tmp_path):
    from yamlnet.memory import model_bytes
    from yamlnet.plan import plan
    root = make_folder(tmp_path / "images", counts=(60, 60, 60))
    model = tmp_path / "m.yaml"
    model.write_text(yaml.safe_dump(folder_model(root, cache_dir=str(tmp_path / "cache"), prefetch=1)))
    config, layers = plan(model)
    # a limit the model and its streamed batches fit (2 × 64 images), and its 180 decoded images do not
    limit = model_bytes(config, layers) + 150 * 12 * 12 * 3 * 4
    result = CliRunner().invoke(app, ["train", str(model), "--out", str(tmp_path / "run"),
                                      "--set", f"training.max_memory={limit}", "--set", "training.epochs=1"])
    assert result.exit_code == 0, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("data.cache:")]
    assert line.startswith("data.cache: disk — the 180 decoded images")
    assert len(list((tmp_path / "cache").glob("images-*.npy"))) == 1


def test_the_memory_estimate_of_streamed_data_is_the_batches_read_ahead(tmp_path):
    from yamlnet.memory import training_memory
    from yamlnet.plan import plan
    root = make_folder(tmp_path / "images", counts=(5, 5, 5))
    config, layers = plan(folder_model(root, cache="none", prefetch=2))
    size, what = training_memory(config, layers)[-1]
    assert what == "batches read ahead (data.cache: none)" and size > 0


def test_a_cache_for_a_data_set_held_in_memory_is_refused_by_validate(tmp_path):
    model = tmp_path / "m.yaml"
    model.write_text("input: [8, 8, 1]\nlayers:\n  - {type: dense, units: 10}\ndata:\n  dataset: digits\n  cache: disk\n")
    result = CliRunner().invoke(app, ["validate", str(model)])
    assert result.exit_code == 2
    assert result.output.strip() == (f"{model}:6:10: data.cache: the digits data set is held in memory; none and "
                                      f"disk are for folder and npz")


def test_the_disk_cache_is_rebuilt_when_an_image_changes_and_never_left_half_written(tmp_path, monkeypatch):
    import os

    from yamlnet.data import cache as cache_module
    root = make_folder(tmp_path / "images", counts=(6, 6, 6))
    where = tmp_path / "cache"
    config = load_config(folder_model(root, cache="disk", cache_dir=str(where)))
    first = load_data(config, 3)
    made = sorted(where.glob("images-*.npy"))
    assert len(made) == 1 and len(list(where.glob("*.json"))) == 1
    changed = sorted((root / "line").iterdir())[0]
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    second = load_data(config, 3)
    assert len(list(where.glob("images-*.npy"))) == 2
    assert np.array_equal(first.x[np.arange(18)], second.x[np.arange(18)])
    # a disk that fills while writing: one line, and nothing left that a later run could take for a cache
    changed.touch()
    real = cache_module.write_atomic

    def full(path, write, mode="wb"):
        def failing(handle):
            handle.write(b"\0" * 100)
            raise OSError(28, "No space left on device")
        real(path, failing, mode)
    monkeypatch.setattr(cache_module, "write_atomic", full)
    with pytest.raises(DataError) as info:
        load_data(config, 3)
    assert "cannot write the image cache" in info.value.message and "No space left on device" in info.value.message
    assert "data.cache_dir" in info.value.message
    assert len(list(where.glob("images-*.npy"))) == 2 and not list(where.glob(".*tmp"))
    # too little room is said before a byte is written
    monkeypatch.setattr(cache_module.shutil, "disk_usage", lambda path: type("U", (), {"free": 10})())
    with pytest.raises(DataError, match="10 bytes are free"):
        load_data(config, 3)


class Waits(Reporter):
    def __init__(self):
        self.shares = []

    def waiting(self, share):
        self.shares.append(share)


def test_a_feed_reads_ahead_in_threads_and_ends_them(tmp_path):
    root = make_folder(tmp_path / "images", counts=(10, 10, 10))
    splits = load_data(load_config(folder_model(root, cache="none")), 3)
    order = np.random.default_rng(0).permutation(splits.train)
    batches = [order[i:i + 7] for i in range(0, len(order), 7)]
    with Feed(splits.x, batches, ahead=3) as feed:
        assert any(t.name.startswith("yamlnet-read") for t in threading.enumerate())
        read = list(feed)
    assert not any(t.name.startswith("yamlnet-read") for t in threading.enumerate())
    memory = load_data(load_config(folder_model(root)), 3)
    for (index, images), batch in zip(read, batches):
        assert np.array_equal(index, batch) and np.array_equal(images, memory.x[batch])
    # the trainer says how long it waited
    reporter = Waits()
    train(folder_model(root, cache="none"), out=tmp_path / "run", reporter=reporter)
    assert reporter.shares and all(0 <= share <= 1 for share in reporter.shares)
    assert not any(t.name.startswith("yamlnet-read") for t in threading.enumerate())


def test_an_image_deleted_while_training_stops_the_run_with_a_checkpoint_naming_it(tmp_path):
    root = make_folder(tmp_path / "images", counts=(10, 10, 10))
    victim = sorted((root / "square").iterdir())[3]
    kept = victim.read_bytes()

    def delete_after_first_epoch(record):
        victim.unlink()

    with pytest.raises(ReadError) as info:
        train({**folder_model(root, cache="none"), "training": {"epochs": 3, "batch_size": 8}},
              out=tmp_path / "run", quiet=True, on_epoch=delete_after_first_epoch)
    error = info.value
    assert error.file == str(victim) and "is gone (deleted or moved" in error.message
    assert "checkpoint written" in error.message and f"yamlnet train --resume {tmp_path / 'run'}" in error.message
    assert "\n" not in str(error)
    assert (tmp_path / "run" / "checkpoints" / "last.npz").is_file()
    victim.write_bytes(kept)  # put back, the run goes on from its checkpoint
    resumed = train(resume=tmp_path / "run", quiet=True)
    assert [record["epoch"] for record in resumed.metrics] == [1, 2, 3]


def test_with_skip_bad_an_image_damaged_while_training_is_counted_at_the_epochs_end(tmp_path):
    root = make_folder(tmp_path / "images", counts=(10, 10, 10))
    victims = sorted((root / "bar").glob("*.png"))[:2]

    class Lines(Reporter):
        lines = []

        def message(self, text):
            self.lines.append(text)

    def damage(record):
        if record["epoch"] == 1:
            for path in victims:
                path.write_bytes(path.read_bytes()[:40])

    result = train({**folder_model(root, cache="none", skip_bad=True, validation_split=0),
                    "training": {"epochs": 2, "batch_size": 8}}, out=tmp_path / "run", reporter=Lines(),
                   on_epoch=damage)
    assert len(result.metrics) == 2
    (line,) = [line for line in Lines.lines if "unreadable" in line]
    assert line.startswith("epoch 2: skipped 2 unreadable images (data.skip_bad): ") and str(victims[0]) in line


def test_a_data_file_cut_short_while_training_is_one_line(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (40, 4, 4, 1)).astype(np.uint8)
    path = tmp_path / "x"
    path.mkdir()
    np.save(path / "x.npy", x)
    np.save(path / "y.npy", np.arange(40) % 2)

    def cut(record):
        data = (path / "x.npy").read_bytes()
        (path / "x.npy").write_bytes(data[:len(data) // 2])

    with pytest.raises(ReadError) as info:
        train({"input": [4, 4, 1], "layers": [{"type": "dense", "units": 2}],
               "data": {"dataset": "npz", "path": str(path), "cache": "none", "validation_split": 0},
               "training": {"epochs": 2, "batch_size": 40}}, out=tmp_path / "run", quiet=True, on_epoch=cut)
    assert info.value.file == str(path / "x.npy") and "ends early" in info.value.message


def test_ctrl_c_while_images_are_read_ahead_ends_the_threads_and_the_run_resumes_bit_for_bit(tmp_path):
    import signal
    root = make_folder(tmp_path / "images", counts=(10, 10, 10))

    class CtrlC(Reporter):
        def batch(self, done, loss, accuracy, samples_per_s):
            if getattr(self, "epoch", None) == 2 and done == 1:
                signal.raise_signal(signal.SIGINT)

        def start_epoch(self, epoch, epochs, n_batches, done):
            self.epoch = epoch

    model = {**folder_model(root, cache="none", augment={"flip": "horizontal"}), "training": {"epochs": 3, "batch_size": 4}}
    stopped = train(model, out=tmp_path / "run", reporter=CtrlC())
    assert stopped.interrupted and stopped.stopped_by == "Ctrl-C"
    assert not any(t.name.startswith("yamlnet-read") for t in threading.enumerate())
    resumed = train(resume=tmp_path / "run", quiet=True)
    whole = train({**model, "data": {**model["data"], "cache": "memory"}}, out=tmp_path / "whole", quiet=True)
    assert len(resumed.metrics) == 3
    assert_same_arrays(weights(resumed.run_dir), weights(whole.run_dir))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_8_bit_images_are_normalized_by_a_table_that_equals_the_arithmetic(dtype):
    from yamlnet.data.stream import normalize
    raw = np.random.default_rng(0).integers(0, 256, (20, 5, 6, 3), dtype=np.uint8)
    shift, scale = np.array([101.3, 0.5, 250.0]), np.array([60.1, 0.013, 3.7])
    images = Streamed(raw, (5, 6, 3), dtype)
    images.set_normalization(shift, scale)
    index = np.array([3, 0, 19, 3])
    expected = normalize(raw[index].astype(dtype), shift, scale)  # the slow, obvious twin
    assert images[index].dtype == dtype and np.array_equal(images[index], expected)
