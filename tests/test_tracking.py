"""training.log: tensorboard — TensorBoard's own reader finds every scalar of metrics.jsonl, once, and a
sweep's HParams summary."""

import json

import numpy as np
import pytest

import yamlnet
from conftest import reference_module

reference_module("tensorboardX")
event_accumulator = reference_module("tensorboard.backend.event_processing.event_accumulator")


def _read(folder):
    accumulator = event_accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0,
                                                                                 "images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def _same_as_metrics(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    events = _read(run_dir / "tb")
    for key, tag in (("loss", "train/loss"), ("accuracy", "train/accuracy"), ("val_loss", "validation/loss"),
                     ("val_accuracy", "validation/accuracy"), ("learning_rate", "learning_rate")):
        scalars = events.Scalars(tag)
        assert [event.step for event in scalars] == [record["epoch"] for record in records], tag
        assert [event.value for event in scalars] == [float(np.float32(record[key])) for record in records], tag
    return events


def test_every_scalar_of_metrics_jsonl_and_the_rest(tmp_path):
    result = yamlnet.train("simple", out=tmp_path / "run", overrides=["training.epochs=5", "training.log=[tensorboard]"])
    events = _same_as_metrics(result.run_dir)
    assert "weights/conv1/W" in events.Tags()["histograms"] and "gradients/fc/b" in events.Tags()["histograms"]
    assert [event.step for event in events.Histograms("weights/conv1/W")] == [1, 5]
    assert events.Tags()["images"] == ["filters"] and "config/text_summary" in events.Tags()["tensors"]


def test_a_resumed_run_has_no_step_twice(tmp_path):
    from tensorboardX import SummaryWriter
    from yamlnet.progress import Reporter

    class Crash(Reporter):
        def end_epoch(self, record, epochs):
            if record["epoch"] == 2:
                raise RuntimeError("power cut")

    overrides = ["training.epochs=4", "training.log=[tensorboard]"]
    with pytest.raises(RuntimeError):
        yamlnet.train("simple", out=tmp_path / "run", overrides=overrides, reporter=Crash())
    import time
    with SummaryWriter(str(tmp_path / "run" / "tb"), filename_suffix=f".{time.time_ns()}") as stale:  # what a session killed mid-epoch 3 had written
        stale.add_scalar("train/loss", 123.0, 3)
    yamlnet.train(resume=tmp_path / "run")
    _same_as_metrics(tmp_path / "run")


def test_a_sweep_writes_the_hparams_summary(tmp_path):
    from yamlnet.sweep import run_sweep
    model = tmp_path / "model.yaml"
    model.write_text("""
input: [8, 8, 1]
layers: [{type: flatten}, {type: dense, units: 10}, {type: softmax}]
training: {epochs: 1, log: [tensorboard]}
sweep: {training.learning_rate: [0.01, 0.1]}
""")
    result = run_sweep(model, out=tmp_path / "sweep", workers=1)
    assert len(result["rows"]) == 2
    runs = sorted(path.name for path in (tmp_path / "sweep" / "tb").iterdir() if path.is_dir())
    assert runs == ["run-000", "run-001"]
    plugins = _read(tmp_path / "sweep" / "tb" / "run-000").PluginTagToContent("hparams")
    assert plugins  # the HParams tab's summaries
