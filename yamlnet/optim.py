"""Optimizers (sgd, momentum, adam) and learning-rate schedules, chosen by name in ``training:``.

An optimizer updates parameter arrays in place from their gradients; its state (velocities,
moments, step count) is a dict of arrays so that checkpoints can hold it without pickling.
"""

from __future__ import annotations

import math

import numpy as np


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


def learning_rate_at(training: dict, epoch: int) -> float:
    """The learning rate for ``epoch`` (0-based) under ``training.lr_schedule``."""
    base = training["learning_rate"]
    schedule = training["lr_schedule"]
    if schedule["type"] == "step":
        return base * schedule["gamma"] ** (epoch // schedule["step_size"])
    if schedule["type"] == "cosine":
        return base * 0.5 * (1 + math.cos(math.pi * epoch / training["epochs"]))
    return base


SCHEDULES = ("constant", "step", "cosine")
