"""``training.log``: where a run reports besides metrics.jsonl. ``tensorboard`` writes TensorBoard event
files in the run directory's ``tb/`` (with tensorboardX, an optional extra): per epoch the training and
validation loss and accuracy and the learning rate; every ``HISTOGRAM_EVERY`` epochs (and the first)
histograms of every parameter and its gradient and the first conv layer's filters as an image; the
config as text. A resumed run purges what the stopped one wrote past its checkpoint, so no step is
there twice. A sweep writes the HParams summary that TensorBoard's HParams tab compares its runs by."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from yamlnet.config.loader import dump_yaml
from yamlnet.errors import ConfigError

HISTOGRAM_EVERY = 5
SCALARS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")


def _writer(folder: Path, purge_step: int | None = None):
    SummaryWriter = _writer_class()
    # a file of its own for each session, named in time order even within one second (the same name
    # would be opened afresh, and the first session's events lost)
    return SummaryWriter(logdir=str(folder), purge_step=purge_step, filename_suffix=f".{time.time_ns()}")


class TensorBoardLog:
    """The event files of one run, from epoch ``start`` on (0: a new run, whose config goes in as text)."""

    def __init__(self, run_dir: Path, config: dict, start: int):
        self.writer = _writer(run_dir / "tb", purge_step=start + 1 if start else None)
        if not start:
            self.writer.add_text("config", "```yaml\n" + dump_yaml(config) + "```", 0)

    def epoch(self, record: dict, model) -> None:
        step = record["epoch"]
        for key in SCALARS:
            if record.get(key) is not None:
                self.writer.add_scalar(f"{'validation' if key.startswith('val_') else 'train'}/"
                                       f"{key.removeprefix('val_')}" if key != "learning_rate" else key,
                                       record[key], step)
        if step == 1 or step % HISTOGRAM_EVERY == 0:
            for key, value in model.parameters().items():
                self.writer.add_histogram(f"weights/{key}", value, step)
            for key, value in model.gradients().items():
                self.writer.add_histogram(f"gradients/{key}", value, step)
            filters = first_filters(model)
            if filters is not None:
                self.writer.add_image("filters", filters, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def first_filters(model) -> np.ndarray | None:
    """The first conv layer's filters side by side, each scaled to 0..1, as one image (H, W, 3)."""
    conv = next((layer for layer in model.layers if layer.type == "conv2d"), None)
    if conv is None:
        return None
    weights = conv.params["W"]  # (f, f, C, K)
    f, _, c, k = weights.shape
    tiles = weights[..., :3, :] if c >= 3 else np.repeat(weights[..., :1, :], 3, axis=2)
    low, high = tiles.min(axis=(0, 1, 2)), tiles.max(axis=(0, 1, 2))
    tiles = (tiles - low) / np.where(high > low, high - low, 1)
    image = np.ones((f + 2, k * (f + 1) + 1, 3), dtype=np.float32)
    for i in range(k):
        image[1:f + 1, 1 + i * (f + 1):1 + i * (f + 1) + f] = tiles[..., i]
    return image


def require(config: dict) -> None:
    """Refuse, before a run directory is made, a log whose package is missing."""
    if "tensorboard" in config["training"]["log"]:
        _writer_class()


def _writer_class():
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ConfigError('training.log: tensorboard writes with tensorboardX: pip install "yamlnet[tensorboard]"') \
            from None
    return SummaryWriter


def make_logs(config: dict, run_dir: Path, start: int) -> list:
    """The logs ``training.log`` asks for, started at epoch ``start``."""
    return [TensorBoardLog(run_dir, config, start) for kind in config["training"]["log"] if kind == "tensorboard"]


def write_hparams(sweep_dir: Path, rows: list[dict], keys: list[str], metric: str) -> None:
    """TensorBoard's HParams summary of a sweep: each run's swept values and its best ``metric``."""
    writer = _writer(sweep_dir / "tb")
    try:
        for row in rows:
            values = {key: value if isinstance(value, (int, float, str, bool)) else str(value)
                      for key, value in ((key, row[f"set:{key}"]) for key in keys)}
            results = {f"best_{metric}": row["best"]} if row["best"] is not None else {}
            writer.add_hparams(values, results, name=row["run"])
    finally:
        writer.close()
