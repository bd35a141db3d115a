"""Optimizers (sgd, momentum, adam) and learning-rate schedules, chosen by name in ``training:``.

An optimizer updates parameter arrays in place from their gradients; its state (velocities,
moments, step count) is a dict of arrays so that checkpoints can hold it without pickling.
"""

from __future__ import annotations

import math

import numpy as np

from yamlnet.metrics import direction, value_of


class Optimizer:
    def __init__(self, params: dict[str, np.ndarray], training: dict):
        """``params``: "layer/key" → the array to update in place."""
        self.params = params
        self.weight_decay = training["weight_decay"]
        self.state: dict[str, np.ndarray] = {}
        self.settings = training

    def step(self, grads: dict[str, np.ndarray], learning_rate: float) -> None:
        for key, param in self.params.items():
            grad = grads[key]
            if self.weight_decay and key.endswith("/W"):  # L2 on weights, not on biases
                grad = grad + param.dtype.type(self.weight_decay) * param
            self.update(key, param, grad, param.dtype.type(learning_rate))

    def update(self, key: str, param: np.ndarray, grad: np.ndarray, lr) -> None:
        raise NotImplementedError

    def slot(self, name: str, key: str, like: np.ndarray) -> np.ndarray:
        return self.state.setdefault(f"{name}/{key}", np.zeros_like(like))

    def load_state(self, state: dict[str, np.ndarray], file: str | None = None) -> None:
        """Take a checkpoint's state, checking each array against the parameter it belongs to."""
        from yamlnet.errors import DataError

        for key, value in state.items():
            target = self.params.get(key.split("/", 1)[1]) if "/" in key else None
            expected = target.shape if target is not None else (() if key == "steps" else None)
            if expected is None or value.shape != expected:
                raise DataError(f"optimizer state {key} {value.shape} does not fit this model and optimizer",
                                file=file)
        self.state = {key: value.copy() for key, value in state.items()}


class SGD(Optimizer):
    """p ← p − lr · g"""

    def update(self, key, param, grad, lr):
        param -= lr * grad


class Momentum(Optimizer):
    """v ← μ·v + g;  p ← p − lr · v  (Nesterov: p ← p − lr · (g + μ·v)), as PyTorch writes it."""

    def update(self, key, param, grad, lr):
        mu = param.dtype.type(self.settings["momentum"])
        velocity = self.slot("velocity", key, param)
        velocity *= mu
        velocity += grad
        param -= lr * (grad + mu * velocity if self.settings["nesterov"] else velocity)


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias-corrected first and second moments."""

    def step(self, grads, learning_rate):
        steps = self.state.setdefault("steps", np.zeros((), dtype=np.int64))
        steps += 1
        super().step(grads, learning_rate)

    def update(self, key, param, grad, lr):
        beta1, beta2 = self.settings["beta1"], self.settings["beta2"]
        t = int(self.state["steps"])
        m = self.slot("m", key, param)
        v = self.slot("v", key, param)
        m *= param.dtype.type(beta1)
        m += param.dtype.type(1 - beta1) * grad
        v *= param.dtype.type(beta2)
        v += param.dtype.type(1 - beta2) * grad * grad
        step_size = param.dtype.type(lr * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t))
        param -= step_size * m / (np.sqrt(v) + param.dtype.type(self.settings["eps"]))


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "adam": Adam}


def learning_rate_at(training: dict, epoch: int, history: list[dict] = ()) -> float:
    """The learning rate for ``epoch`` (0-based) under ``training.lr_schedule``, as PyTorch's schedulers
    give it when stepped once an epoch: ``step`` (StepLR), ``cosine`` (CosineAnnealingLR to 0 at the last
    epoch), ``onecycle`` (OneCycleLR with ``learning_rate`` as max_lr), ``plateau`` (ReduceLROnPlateau on
    ``metric``), each after ``warmup_epochs`` of LinearLR from ``warmup_start`` · learning_rate (SequentialLR).
    ``history``: the records of the epochs finished so far (metrics.jsonl's), which ``plateau`` replays:
    a resumed run needs no other state to continue on the same rates."""
    base, schedule = training["learning_rate"], training["lr_schedule"]
    warmup = schedule["warmup_epochs"]
    if epoch < warmup:
        start = schedule["warmup_start"]
        return base * (start + (1 - start) * epoch / warmup)
    step, span = epoch - warmup, training["epochs"] - warmup
    kind = schedule["type"]
    if kind == "step":
        return base * schedule["gamma"] ** (step // schedule["step_size"])
    if kind == "cosine":
        return base * 0.5 * (1 + math.cos(math.pi * step / span))
    if kind == "onecycle":
        return _one_cycle(base, step, span, schedule)
    if kind == "plateau":
        return _plateau(base, list(history)[warmup:epoch], schedule)
    return base


def _cosine_between(start: float, end: float, fraction: float) -> float:
    return end + (start - end) / 2 * (math.cos(math.pi * fraction) + 1)


def _one_cycle(peak: float, step: int, total: int, schedule: dict) -> float:
    """PyTorch's OneCycleLR (two phases, cosine): from peak / div_factor up to peak over pct_start of
    the steps, then down to peak / div_factor / final_div_factor."""
    initial = peak / schedule["div_factor"]
    lowest = initial / schedule["final_div_factor"]
    up_end, down_end = float(schedule["pct_start"] * total) - 1, total - 1
    if step <= up_end:
        return _cosine_between(initial, peak, step / up_end)
    return _cosine_between(peak, lowest, (step - up_end) / (down_end - up_end))


def _plateau(base: float, records: list[dict], schedule: dict) -> float:
    """PyTorch's ReduceLROnPlateau (relative threshold 1e-4, no cooldown) replayed over the epochs' records:
    × factor when ``metric`` has not improved for more than ``patience`` epochs, never below min_lr."""
    metric, sign = schedule["metric"], direction(schedule["metric"])
    rate, best, bad = base, None, 0
    for record in records:
        value = value_of(record, metric)
        if best is None or (value > best * (1 + 1e-4) if sign > 0 else value < best * (1 - 1e-4)):
            best, bad = value, 0
        else:
            bad += 1
        if bad > schedule["patience"]:
            lowered = max(rate * schedule["factor"], schedule["min_lr"])
            rate = lowered if rate - lowered > 1e-8 else rate
            bad = 0
    return rate


SCHEDULES = ("constant", "step", "cosine", "onecycle", "plateau")
#: the schedules whose rates depend on training.epochs: a run under one cannot be extended to more epochs
SHAPED_BY_EPOCHS = ("cosine", "onecycle")
