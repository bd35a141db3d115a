import json
import os
import signal

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import yamlnet
from yamlnet.cli import app
from yamlnet.errors import TrainingError
from yamlnet.progress import Reporter
from yamlnet.train import train

SMALL = {
    "name": "small",
    "input": [8, 8, 1],
    "layers": [
        {"name": "conv1", "type": "conv2d", "filters": 4, "size": 3, "padding": 1, "activation": "relu"},
        {"name": "pool", "type": "maxpool2d", "size": 2},
        {"name": "drop", "type": "dropout", "rate": 0.2},
        {"name": "fc", "type": "dense", "units": 10},
        {"name": "prediction", "type": "softmax"},
    ],
    "data": {"dataset": "digits", "validation_split": 0.25},
    "training": {"epochs": 3, "batch_size": 64, "learning_rate": 0.05, "optimizer": "momentum", "seed": 1},
}


def with_training(**changes):
    return {**SMALL, "training": {**SMALL["training"], **changes}}


def metrics_without_seconds(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]


def weights(run_dir, name="last.npz"):
    with np.load(run_dir / "checkpoints" / name, allow_pickle=False) as archive:
        return {k: archive[k] for k in archive.files if k.startswith("params/")}


def test_a_run_leaves_everything_behind(tmp_path):
    result = train(SMALL, out=tmp_path / "run")
    run_dir = result.run_dir
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoints", "config.yaml", "metrics.jsonl", "run.json",
                                                         "status.json", "summary.txt"]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert set(records[0]) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds"}
    assert records[-1]["val_accuracy"] > 0.5  # three epochs on digits learn something
    config = yamlnet.load_config(run_dir / "config.yaml")
    assert config["training"]["beta1"] == 0.9  # defaults filled in
    assert "best val_accuracy" in result.final_line() and str(run_dir) in result.final_line()
    best = yamlnet.load_model(run_dir / "checkpoints" / "best.npz")
    assert best.param_count() == 4 * 9 + 4 + 64 * 10 + 10
    assert not list((run_dir / "checkpoints").glob("*.tmp"))


def test_same_file_and_seed_same_run(tmp_path):
    first = train(SMALL, out=tmp_path / "a").run_dir
    second = train(SMALL, out=tmp_path / "b").run_dir
    assert metrics_without_seconds(first) == metrics_without_seconds(second)
    for key, value in weights(first).items():
        assert np.array_equal(value, weights(second)[key])


class _Interrupt(Reporter):
    """Sends a real signal (Ctrl-C's SIGINT by default) at one batch of one epoch; ``times`` of them."""

    def __init__(self, epoch, batch, signum=signal.SIGINT, times=1):
        self.at, self.epoch, self.signum, self.times = (epoch, batch), None, signum, times
        self.messages = []

    def start_epoch(self, epoch, epochs, n_batches, done):
        self.epoch = epoch

    def batch(self, done, loss, accuracy, samples_per_s):
        if (self.epoch, done) == self.at:
            for _ in range(self.times):
                os.kill(os.getpid(), self.signum)

    def end_epoch(self, record, epochs):
        if (record["epoch"], None) == self.at:  # batch None: as the epoch ends (during validation)
            os.kill(os.getpid(), self.signum)

    def message(self, text):
        self.messages.append(text)


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_ctrl_c_then_resume_ends_like_an_uninterrupted_run(tmp_path, optimizer):
    config = with_training(optimizer=optimizer, learning_rate=0.01 if optimizer == "adam" else 0.05)
    whole = train(config, out=tmp_path / "whole").run_dir
    stopped = train(config, out=tmp_path / "stopped", reporter=_Interrupt(epoch=2, batch=5))
    assert stopped.interrupted and len(stopped.metrics) == 1 and stopped.exit_code == 130
    resumed = train(resume=tmp_path / "stopped").run_dir
    assert metrics_without_seconds(resumed) == metrics_without_seconds(whole)
    for key, value in weights(whole).items():
        assert np.array_equal(value, weights(resumed)[key]), key


@pytest.mark.parametrize("signum, name, code", [(signal.SIGTERM, "SIGTERM", 143), (signal.SIGHUP, "SIGHUP", 129)])
def test_sigterm_and_sighup_stop_like_ctrl_c(tmp_path, signum, name, code):
    """What Slurm, Kubernetes, docker stop, timeout and a closed terminal send: the batch finishes, a
    checkpoint is written, one line says so, the final line gives the resume command."""
    whole = train(SMALL, out=tmp_path / "whole").run_dir
    reporter = _Interrupt(epoch=2, batch=3, signum=signum)
    stopped = train(SMALL, out=tmp_path / "stopped", reporter=reporter)
    assert stopped.interrupted and stopped.exit_code == code and stopped.stopped_by == name
    assert reporter.messages[-1] == f"interrupted by {name} in epoch 2 (batch 3 of 22); checkpoint written"
    assert stopped.final_line().endswith(f"resume with: yamlnet train --resume {tmp_path / 'stopped'}")
    assert signal.getsignal(signum) is signal.SIG_DFL  # the handler is the run's only while it runs
    resumed = train(resume=tmp_path / "stopped").run_dir
    assert metrics_without_seconds(resumed) == metrics_without_seconds(whole)
    for key, value in weights(whole).items():
        assert np.array_equal(value, weights(resumed)[key]), key


def test_a_signal_as_an_epoch_ends_then_resume_is_the_uninterrupted_run(tmp_path):
    """Stopped between two epochs (the signal came while validating): the next epoch has not drawn
    its order of samples yet, so that the resumed run draws the one the uninterrupted run drew."""
    whole = train(SMALL, out=tmp_path / "whole").run_dir
    stopped = train(SMALL, out=tmp_path / "stopped", reporter=_Interrupt(epoch=1, batch=None, signum=signal.SIGTERM))
    assert stopped.interrupted and len(stopped.metrics) == 1
    resumed = train(resume=tmp_path / "stopped").run_dir
    assert metrics_without_seconds(resumed) == metrics_without_seconds(whole)
    for key, value in weights(whole).items():
        assert np.array_equal(value, weights(resumed)[key]), key


def test_a_second_signal_stops_at_once(tmp_path):
    with pytest.raises(SystemExit) as info:
        train(SMALL, out=tmp_path / "run", reporter=_Interrupt(epoch=1, batch=2, signum=signal.SIGTERM, times=2))
    assert info.value.code == 143
    with pytest.raises(KeyboardInterrupt):
        train(SMALL, out=tmp_path / "run2", reporter=_Interrupt(epoch=1, batch=2, times=2))


class _Killed(Reporter):
    """A kill -9 after one batch: nothing more is written (the exception stands for the kill)."""

    def __init__(self, epoch, batch):
        self.at, self.epoch = (epoch, batch), None

    def start_epoch(self, epoch, epochs, n_batches, done):
        self.epoch = epoch

    def batch(self, done, loss, accuracy, samples_per_s):
        if (self.epoch, done) == self.at:
            raise SystemError("killed")


def test_checkpoint_every_loses_at_most_that_many_batches_and_resumes_bit_for_bit(tmp_path):
    config = with_training(checkpoint_every=2)
    whole = train(config, out=tmp_path / "whole").run_dir
    with pytest.raises(SystemError):
        train(config, out=tmp_path / "killed", reporter=_Killed(epoch=2, batch=5))
    from yamlnet.runs import read_checkpoint
    _, state = read_checkpoint(tmp_path / "killed" / "checkpoints" / "last.npz")
    assert (state["epoch"], state["batch"]) == (1, 4)  # batch 5 was lost, batch 4's checkpoint was not
    resumed = train(resume=tmp_path / "killed").run_dir
    assert metrics_without_seconds(resumed) == metrics_without_seconds(whole)
    for key, value in weights(whole).items():
        assert np.array_equal(value, weights(resumed)[key]), key


class _Crash(Reporter):
    def __init__(self, epoch):
        self.crash_after = epoch

    def end_epoch(self, record, epochs):
        if record["epoch"] == self.crash_after:
            raise RuntimeError("power cut")


def test_a_crash_after_any_epoch_resumes_to_the_same_end(tmp_path):
    whole = train(SMALL, out=tmp_path / "whole").run_dir
    with pytest.raises(RuntimeError):
        train(SMALL, out=tmp_path / "crashed", reporter=_Crash(epoch=2))
    with open(tmp_path / "crashed" / "metrics.jsonl", "a") as handle:
        handle.write('{"epoch": 3, "loss": 1')  # a line cut short as the process died
    resumed = train(resume=tmp_path / "crashed").run_dir
    assert metrics_without_seconds(resumed) == metrics_without_seconds(whole)
    assert all(np.array_equal(v, weights(resumed)[k]) for k, v in weights(whole).items())


def test_nan_loss_stops_with_exit_1_and_keeps_good_weights(tmp_path):
    runner = CliRunner()
    path = tmp_path / "m.yaml"
    config = with_training(learning_rate=1e6, optimizer="sgd")
    config["layers"] = [{**SMALL["layers"][0], "activation": "linear"}, *SMALL["layers"][1:]]
    path.write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["train", str(path), "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 1
    assert "the loss became" in result.output and "epoch 1, batch" in result.output
    assert "smaller learning_rate" in result.output
    last = weights(tmp_path / "run")
    assert all(np.all(np.isfinite(v)) for v in last.values())


def test_early_stopping(tmp_path):
    config = with_training(epochs=20, learning_rate=1e-12, optimizer="sgd",
                           early_stopping={"metric": "val_loss", "patience": 2, "min_delta": 0.01})
    result = train(config, out=tmp_path / "run")
    assert len(result.metrics) == 3


@pytest.mark.parametrize("schedule, expected", [
    ({"type": "step", "step_size": 2, "gamma": 0.5}, [0.05, 0.05, 0.025, 0.025]),
    ({"type": "cosine"}, [0.05, 0.05 * (1 + np.cos(np.pi / 4)) / 2, 0.025, 0.05 * (1 + np.cos(3 * np.pi / 4)) / 2]),
])
def test_learning_rate_schedules(tmp_path, schedule, expected):
    result = train(with_training(epochs=4, lr_schedule=schedule), out=tmp_path / "run")
    assert np.allclose([r["learning_rate"] for r in result.metrics], expected)


def test_cli_train_evaluate_predict(tmp_path):
    runner = CliRunner()
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["train", str(path), "--out", str(run_dir), "--quiet",
                                 "--set", "training.epochs=2"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"run: {run_dir}  best val_accuracy")
    assert len(result.output.strip().splitlines()) == 1
    assert "--set training.epochs=2" in (run_dir / "config.yaml").read_text()
    assert json.loads((run_dir / "run.json").read_text())["overrides"] == ["training.epochs=2"]

    report = json.loads(runner.invoke(app, ["evaluate", str(run_dir), "--json"]).stdout)
    assert report["samples"] == round(1797 * 0.25)
    assert np.array(report["confusion"]).sum() == report["samples"]
    assert 0 <= report["accuracy"] <= 1 and len(report["precision"]) == 10

    from yamlnet.data.digits import load_digits
    x, y, _, _ = load_digits(None, None, 0)
    np.savez(tmp_path / "in.npz", x=x[:7], y=y[:7])
    predicted = runner.invoke(app, ["predict", str(run_dir), str(tmp_path / "in.npz")])
    assert predicted.stderr == f"model: {run_dir / 'checkpoints' / 'best.npz'}\n"  # which checkpoint answered
    csv = predicted.stdout.splitlines()
    assert csv[0] == "index,predicted,class," + ",".join(str(k) for k in range(10)) and len(csv) == 8
    assert abs(sum(float(p) for p in csv[1].split(",")[3:]) - 1) < 1e-4
    assert runner.invoke(app, ["evaluate", str(run_dir), "--data", str(tmp_path / "in.npz")]).exit_code == 0
    result = runner.invoke(app, ["predict", str(run_dir), str(tmp_path / "nothing.npz")])
    assert result.exit_code == 2 and "no such input file" in result.output


def test_training_with_float64_and_no_validation(tmp_path):
    config = {**with_training(dtype="float64", epochs=1), "data": {"dataset": "digits", "validation_split": 0}}
    result = train(config, out=tmp_path / "run")
    assert result.metrics[0]["val_accuracy"] is None and result.best_metric == "accuracy"
    assert "best accuracy" in result.final_line()
    with pytest.raises(TrainingError.__bases__[0], match="already holds a run"):
        train(config, out=tmp_path / "run")


def test_evaluate_on_the_test_set_and_plot_at_the_end(tmp_path):
    runner = CliRunner()
    path = tmp_path / "m.yaml"
    config = {**SMALL, "input": [12, 12, 1], "data": {"dataset": "shapes", "n_samples": 200, "n_test": 50},
              "training": {**SMALL["training"], "epochs": 1}}
    path.write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["train", str(path), "--out", str(run_dir), "--quiet", "--plot"])
    assert result.exit_code == 0, result.output
    for name in ("learning_curves.png", "filters.png", "confusion.png"):
        assert (run_dir / name).is_file()
    report = json.loads(runner.invoke(app, ["evaluate", str(run_dir), "--test", "--json"]).stdout)
    assert report["samples"] == 50
    digits = tmp_path / "d.yaml"
    digits.write_text(yaml.safe_dump({**SMALL, "training": {**SMALL["training"], "epochs": 1}}))
    runner.invoke(app, ["train", str(digits), "--out", str(tmp_path / "digits"), "--quiet"])
    result = runner.invoke(app, ["evaluate", str(tmp_path / "digits"), "--test"])
    assert result.exit_code == 2 and "no separate test set" in result.output


def test_normalization_travels_with_the_weights(tmp_path):
    result = train({**with_training(epochs=1), "data": {**SMALL["data"], "normalization": "scale"}},
                   out=tmp_path / "run")
    model = yamlnet.load_model(result.run_dir / "checkpoints" / "best.npz")
    shift, scale = model.normalization
    assert shift.shape == (1,) and shift[0] == 0 and scale[0] == 16  # digits: 0..16, scaled to 0..1
    model.save(tmp_path / "m.npz")
    assert np.array_equal(yamlnet.load_model(tmp_path / "m.npz").normalization[1], scale)
    from yamlnet.data.digits import load_digits
    x, y, _, _ = load_digits(None, None, 0)
    np.savez(tmp_path / "d.npz", x=x[:50], y=y[:50])
    assert yamlnet.evaluate(tmp_path / "m.npz", tmp_path / "d.npz") == yamlnet.evaluate(result.run_dir,
                                                                                        tmp_path / "d.npz")


def test_resuming_a_finished_run_says_it_is_finished(tmp_path):
    train(with_training(epochs=1), out=tmp_path / "run")
    before = (tmp_path / "run" / "metrics.jsonl").read_text()
    result = CliRunner().invoke(app, ["train", "--resume", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 0
    assert result.output.strip().endswith("already finished: nothing to resume")
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == before


def test_a_missing_data_file_is_located_at_its_key(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("input: [8, 8, 1]\nlayers:\n  - {type: dense, units: 10}\ndata:\n  dataset: npz\n"
                    "  path: nothere.npz\n")
    result = CliRunner().invoke(app, ["train", str(path), "--quiet"])
    assert result.exit_code == 2
    # read relative to the model file's folder, not the current one: the message says where it looked
    assert result.output.strip() == f"{path}:6:9: data.path: {tmp_path / 'nothere.npz'}: no such data file"


def test_epoch_lines_fit_80_columns():
    from yamlnet.progress import epoch_header, epoch_line
    extreme = {"epoch": 1000, "loss": 123456.789, "accuracy": 1.0, "val_loss": 1e30, "val_accuracy": 0.5,
               "learning_rate": 1.23456e-7, "seconds": 99999.9}
    lines = [epoch_header(1000), epoch_line(extreme, 1000), epoch_line({**extreme, "val_loss": None}, 1000)]
    assert all(len(line) <= 80 for line in lines), lines
    assert lines[1].split()[0] == "1000/1000" and lines[2].split()[3] == "-"


@pytest.mark.parametrize("schedule", [{"type": "constant"}, {"type": "plateau", "patience": 0, "factor": 0.5,
                                                               "metric": "val_accuracy", "warmup_epochs": 1}])
def test_a_finished_run_extended_ends_as_a_run_trained_that_long(tmp_path, schedule):
    epochs = 4 if schedule["type"] == "constant" else 8
    whole = train(with_training(epochs=epochs, lr_schedule=schedule), out=tmp_path / "whole").run_dir
    train(with_training(epochs=epochs // 2, lr_schedule=schedule), out=tmp_path / "short")
    result = CliRunner().invoke(app, ["train", "--resume", str(tmp_path / "short"), "--set", f"training.epochs={epochs}",
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    assert metrics_without_seconds(tmp_path / "short") == metrics_without_seconds(whole)
    for key, value in weights(whole).items():
        assert np.array_equal(value, weights(tmp_path / "short")[key]), key
    text = (tmp_path / "short" / "config.yaml").read_text()
    assert f"# resumed with --set training.epochs={epochs}" in text and f"epochs: {epochs}" in text
    if schedule["type"] == "plateau":  # the rate fell on the way: what resumed went on from the records
        rates = [record["learning_rate"] for record in metrics_without_seconds(whole)]
        assert rates[0] < rates[1] and len(set(rates[1:])) > 1, rates


def test_extending_is_refused_where_it_would_not_be_the_same_run(tmp_path):
    train(with_training(epochs=1, lr_schedule={"type": "onecycle"}), out=tmp_path / "onecycle")
    result = CliRunner().invoke(app, ["train", "--resume", str(tmp_path / "onecycle"), "--set", "training.epochs=3"])
    assert result.exit_code == 2 and "onecycle learning-rate schedule is shaped by training.epochs" in result.output
    train(with_training(epochs=1, lr_schedule={"type": "cosine"}), out=tmp_path / "cosine")
    result = CliRunner().invoke(app, ["train", "--resume", str(tmp_path / "cosine"), "--set", "training.epochs=3"])
    assert result.exit_code == 2 and "cosine learning-rate schedule is shaped by training.epochs" in result.output
    result = CliRunner().invoke(app, ["train", "--resume", str(tmp_path / "cosine"),
                                      "--set", "training.learning_rate=0.5"])
    assert result.exit_code == 2 and "only training.checkpoint_every, training.epochs may change, not training.learning_rate" in result.output
    train(with_training(epochs=2), out=tmp_path / "two")
    result = CliRunner().invoke(app, ["train", "--resume", str(tmp_path / "two"), "--set", "training.epochs=1"])
    assert result.exit_code == 2 and "has trained 2 epochs already" in result.output


def test_starting_from_trained_weights_and_freezing_layers(tmp_path):
    first = train(with_training(epochs=1), out=tmp_path / "first").run_dir
    bigger = {**with_training(epochs=1, init_weights=str(first), freeze=["conv1"]),
              "layers": [*SMALL["layers"][:3], {"name": "fc", "type": "dense", "units": 10, "activation": "relu"},
                         {"name": "head", "type": "dense", "units": 10}, {"name": "prediction", "type": "softmax"}]}

    class Messages(Reporter):
        def __init__(self):
            self.lines = []

        def message(self, text):
            self.lines.append(text)

    messages = Messages()
    second = train(bigger, out=tmp_path / "second", reporter=messages).run_dir
    line = next(text for text in messages.lines if text.startswith("init_weights"))
    assert "loaded conv1, fc" in line and "fresh: head (no such layer there)" in line
    before, after = weights(first, "best.npz"), weights(second)
    assert np.array_equal(before["params/conv1/W"], after["params/conv1/W"])  # frozen: unchanged
    assert not np.array_equal(before["params/fc/W"], after["params/fc/W"])  # loaded, then trained
    assert not any(key.startswith("optim/") and "conv1" in key for key in after)
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({**bigger, "training": {**bigger["training"], "init_layers": ["head"]}}))
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and "head cannot be loaded from" in result.output
    assert "no such layer there" in result.output


def test_class_weights_and_label_smoothing_from_the_file(tmp_path):
    result = train(with_training(epochs=1, label_smoothing=0.1, class_weights={"3": 2.0, "7": 0.5}),
                   out=tmp_path / "named")
    summary = (result.run_dir / "summary.txt").read_text()
    assert "loss: cross-entropy with label smoothing 0.1; class weights 0 1, 1 1, 2 1, 3 2, 4 1" in summary
    balanced = train(with_training(epochs=1, class_weights="balanced"), out=tmp_path / "balanced")
    assert "class weights 0 " in (balanced.run_dir / "summary.txt").read_text()
    assert result.metrics[0]["loss"] != train(with_training(epochs=1), out=tmp_path / "plain").metrics[0]["loss"]


def test_a_class_weight_for_no_class_is_one_located_line(tmp_path):
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(with_training(epochs=1, class_weights={"threee": 2.0}), sort_keys=False))
    result = CliRunner().invoke(app, ["train", str(path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "training.class_weights.threee: is not a class of the data (classes: 0, 1, 2" in result.output
    assert str(path) in result.output and len(result.output.strip().splitlines()) == 1
