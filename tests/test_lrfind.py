"""yamlnet lr-find: the range test, its suggestion, and that it leaves nothing behind but its picture."""

import numpy as np
import pytest
from typer.testing import CliRunner

from yamlnet.cli import app
from yamlnet.lrfind import MARGIN, find_learning_rate, suggest


def test_the_suggestion_is_the_steepest_relative_descent_below_the_lowest_loss():
    rates = np.logspace(-5, 0, 101)
    # a loss that sags from 2.3 to 0.1 around 10^-2.3 (relative to itself it falls fastest a little later,
    # where it is small), then blows up past 1e-1
    logs = np.log10(rates)
    losses = 0.1 + 2.2 / (1 + np.exp((logs + 2.3) * 4)) + np.where(logs > -1, (logs + 1) * 20, 0)
    found = suggest(rates, losses)
    lowest = rates[np.argmin(losses)]
    assert found <= lowest / MARGIN * 1.0001
    assert 10 ** -2.3 < found < 10 ** -1.6


def test_a_loss_that_only_falls_suggests_within_the_range():
    rates = np.logspace(-4, -1, 50)
    assert rates[0] <= suggest(rates, 3 - np.log10(rates)) <= rates[-1]


def test_a_range_test_on_the_digits():
    found = find_learning_rate("simple", ["training.seed=1"], start=1e-4, end=3.0, steps=60)
    assert len(found.rates) == len(found.losses) == len(found.smoothed) <= 60
    assert np.all(np.diff(found.rates) > 0) and found.rates[0] == pytest.approx(1e-4)
    assert 1e-4 <= found.suggestion <= 3.0 and np.all(np.isfinite(found.losses))
    assert found.override() == f"training.learning_rate={found.suggestion:.3g}"


def test_the_command_writes_its_picture_and_nothing_else(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["lr-find", "simple", "--steps", "30"])
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["simple_lr_find.png"]
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("suggested learning rate: ") and "--set training.learning_rate=" in last


def test_a_bad_range_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["lr-find", "simple", "--start", "0.1", "--end", "0.01"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == "--start and --end must satisfy 0 < start < end, got 0.1 and 0.01"
