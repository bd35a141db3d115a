"""``yamlnet lr-find``: Smith's learning-rate range test (Smith, 2017; as fastai's ``lr_find`` and PyTorch
Lightning's tuner run it).

A short training run from the file's fresh weights, its learning rate growing exponentially from
``start`` to ``end`` one batch at a time, records the loss at every rate. The loss, smoothed
(an exponential moving average with bias correction, β = 0.9), falls once the rate is large enough to
learn and climbs when it is too large; the suggestion is the rate where the loss falls fastest
(``suggest``). Nothing is written but the picture: no run directory, the file unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from yamlnet.config import resolve
from yamlnet.model import Model
from yamlnet.optim import OPTIMIZERS
from yamlnet.plan import checked_layers
from yamlnet.train import load_training_data

#: the weight of the past in the smoothed loss (drawn, and watched for a loss that runs away)
SMOOTHING = 0.9
#: the suggestion stays this many times below the rate of the lowest loss
MARGIN = 2.0


@dataclass
class RangeTest:
    """What a range test found: the rates tried, the loss and the smoothed loss at each, the suggestion."""

    name: str
    rates: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    suggestion: float
    stopped_early: bool  # the loss ran away (4 × its best) before ``end``

    def override(self) -> str:
        return f"training.learning_rate={self.suggestion:.3g}"


def find_learning_rate(source, overrides=(), *, start: float = 1e-5, end: float = 1.0,
                       steps: int = 100) -> RangeTest:
    """Train ``source`` (a path, YAML string or dict) for ``steps`` batches at rates from ``start`` to
    ``end``, growing by the same factor each batch, with the file's optimizer, batch size and data (no
    augmentation); stops early once the smoothed loss is 4 times its lowest."""
    if not 0 < start < end:
        from yamlnet.errors import ConfigError
        raise ConfigError(f"--start and --end must satisfy 0 < start < end, got {start:g} and {end:g}")
    config, document = resolve(source, overrides)
    training = config["training"]
    model = Model(config, document, checked_layers(config, document))
    data = load_training_data(model, config, document)
    optimizer = OPTIMIZERS[training["optimizer"]](model.parameters(), training)
    rng = np.random.default_rng([training["seed"], 1])
    batch_size = min(training["batch_size"], len(data.train))
    order = np.concatenate([rng.permutation(data.train) for _ in range(
        math.ceil(steps * batch_size / len(data.train)))])
    factor = (end / start) ** (1 / max(1, steps - 1))
    rates, losses, smoothed = [], [], []
    average, stopped_early = 0.0, False
    for step in range(steps):
        rate = start * factor ** step
        index = order[step * batch_size:(step + 1) * batch_size]
        loss, _ = model.train_step_forward(data.x[index], data.y[index])
        if not math.isfinite(loss):
            stopped_early = True
            break
        optimizer.step(model.gradients(), rate)
        average = SMOOTHING * average + (1 - SMOOTHING) * loss
        rates.append(rate)
        losses.append(loss)
        smoothed.append(average / (1 - SMOOTHING ** (step + 1)))
        if step > 10 and smoothed[-1] > 4 * min(smoothed):
            stopped_early = True
            break
    model.close_workers()
    rates, losses, smoothed = np.array(rates), np.array(losses), np.array(smoothed)
    return RangeTest(config["name"], rates, losses, smoothed, suggest(rates, losses), stopped_early)


def suggest(rates: np.ndarray, losses: np.ndarray) -> float:
    """The rate where the loss falls fastest in proportion to itself: the steepest descent of log(loss)
    against log(rate), the loss first averaged over a centred window of ±5 % of the points (no lag), searched
    from a tenth of the way in (the first steps mostly shrink the initial outputs) up to the lowest loss
    (past it the loss only climbs), and at least ``MARGIN`` times below that lowest point, where training
    is on the edge of diverging. A relative slope, because a network's first large losses fall fast at
    rates far too small to train it."""
    width = max(2, len(losses) // 20)
    padded = np.pad(losses, (width, width), mode="edge")
    centred = np.convolve(padded, np.ones(2 * width + 1) / (2 * width + 1), mode="valid")
    lowest = int(np.argmin(centred))
    first = min(len(rates) // 10, max(0, lowest - 2))
    if lowest - first < 2:
        return float(rates[lowest])
    slope = np.gradient(np.log(centred[first:lowest + 1]), np.log(rates[first:lowest + 1]))
    return min(float(rates[first + int(np.argmin(slope))]), float(rates[lowest]) / MARGIN)


def plot(result: RangeTest, path: Path) -> Path:
    """The loss and the smoothed loss against the rate (log axis), the suggestion marked."""
    from yamlnet.figures import pyplot, save

    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot(result.rates, result.losses, color="#bbb", linewidth=0.8, label="loss")
    axis.plot(result.rates, result.smoothed, color="#1f5fa8", linewidth=1.5, label="smoothed")
    axis.axvline(result.suggestion, color="#c33", linestyle="--", linewidth=1,
                 label=f"suggested {result.suggestion:.3g}")
    axis.set_xscale("log")
    axis.set_xlabel("learning rate")
    axis.set_ylabel("training loss")
    top = max(result.smoothed[:max(1, len(result.smoothed) // 10)].max(), result.smoothed.min() * 4)
    axis.set_ylim(min(result.losses.min(), result.smoothed.min()) * 0.9, top * 1.1)
    axis.legend(fontsize=8)
    axis.set_title(f"{result.name}: learning-rate range test", fontsize=10)
    return save(figure, path)
