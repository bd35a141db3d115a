"""Optimizers against their formulas written out, weight decay on weights only, state checks, schedules."""

import math

import numpy as np
import pytest

from yamlnet.errors import DataError
from yamlnet.optim import OPTIMIZERS, learning_rate_at

SETTINGS = {"weight_decay": 0.0, "momentum": 0.9, "nesterov": False, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}


def steps(name, grads, lr=0.1, **settings):
    param = {"l/W": np.array([1.0, -2.0])}
    optimizer = OPTIMIZERS[name](param, {**SETTINGS, **settings})
    for grad in grads:
        optimizer.step({"l/W": np.array(grad)}, lr)
    return param["l/W"], optimizer


def test_sgd_momentum_nesterov_and_adam_follow_their_formulas():
    g1, g2 = [0.5, 1.0], [-1.0, 2.0]
    assert np.allclose(steps("sgd", [g1, g2])[0], np.array([1.0, -2.0]) - 0.1 * (np.array(g1) + g2))
    v1 = np.array(g1)
    v2 = 0.9 * v1 + g2
    assert np.allclose(steps("momentum", [g1, g2])[0], np.array([1.0, -2.0]) - 0.1 * v1 - 0.1 * v2)
    nesterov = np.array([1.0, -2.0]) - 0.1 * (np.array(g1) + 0.9 * v1) - 0.1 * (np.array(g2) + 0.9 * v2)
    assert np.allclose(steps("momentum", [g1, g2], nesterov=True)[0], nesterov)
    p, m, v = np.array([1.0, -2.0]), 0.0, 0.0
    for t, g in enumerate([np.array(g1), np.array(g2)], 1):
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        p = p - 0.1 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    assert np.allclose(steps("adam", [g1, g2])[0], p, rtol=1e-6)


def test_weight_decay_reaches_weights_not_biases():
    params = {"l/W": np.array([2.0]), "l/b": np.array([2.0])}
    OPTIMIZERS["sgd"](params, {**SETTINGS, "weight_decay": 0.5}).step({"l/W": np.zeros(1), "l/b": np.zeros(1)}, 0.1)
    assert params["l/W"][0] == pytest.approx(2.0 - 0.1 * 0.5 * 2.0) and params["l/b"][0] == 2.0


def test_a_state_that_does_not_fit_is_refused():
    _, optimizer = steps("adam", [[1.0, 1.0]])
    state = {key: value.copy() for key, value in optimizer.state.items()}
    _, fresh = steps("adam", [])
    fresh.load_state(state)
    assert set(fresh.state) == set(state)
    with pytest.raises(DataError, match="does not fit"):
        fresh.load_state({"m/l/W": np.zeros(3)})


def test_schedules():
    training = {"learning_rate": 0.1, "epochs": 10, "lr_schedule": {"type": "step", "step_size": 3, "gamma": 0.5,
                                                                    "warmup_epochs": 0}}
    assert [learning_rate_at(training, e) for e in (0, 2, 3, 6)] == [0.1, 0.1, 0.05, 0.025]
    training["lr_schedule"] = {"type": "cosine", "warmup_epochs": 0}
    assert learning_rate_at(training, 0) == 0.1 and learning_rate_at(training, 5) == pytest.approx(0.05)
    assert learning_rate_at(training, 9) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 0.9)))


def test_plateau_reduces_after_patience_epochs_without_improvement_and_never_below_min_lr():
    training = {"learning_rate": 0.1, "epochs": 9, "lr_schedule": {
        "type": "plateau", "metric": "val_loss", "patience": 1, "factor": 0.5, "min_lr": 0.03, "warmup_epochs": 0}}
    records = [{"val_loss": value} for value in (1.0, 0.5, 0.6, 0.55, 0.7, 0.4, 0.45, 0.41, 0.5)]
    rates = [learning_rate_at(training, epoch, records[:epoch]) for epoch in range(9)]
    # bad epochs: 0.6, 0.55 (2 > patience 1: halve, count again), 0.7, then 0.4 is better; 0.45, 0.41 → floor 0.03
    assert rates == [0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.03]
    records = [{"val_loss": None, "loss": value} for value in (1.0, 1.0, 1.0)]  # no validation part
    assert learning_rate_at({**training, "epochs": 3}, 3, records) == 0.05
