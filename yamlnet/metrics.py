"""The metrics a run records each epoch, and which way is better: the one place that knows."""

from __future__ import annotations

#: what metrics.jsonl records for every epoch, and what early stopping and sweeps may watch
METRICS = ("val_accuracy", "val_loss", "accuracy", "loss")
_LOWER_IS_BETTER = {"loss", "val_loss"}


def direction(metric: str) -> int:
    """+1 where a larger value is better (accuracies), −1 where a smaller one is (losses)."""
    return -1 if metric in _LOWER_IS_BETTER else 1


def value_of(record: dict, metric: str) -> float:
    """An epoch's value of ``metric``; a validation metric falls back to the training one where the
    epoch had no validation part (as early stopping's does)."""
    value = record.get(metric)
    return record[metric.removeprefix("val_")] if value is None else value


def best_value(records: list[dict], metric: str) -> float | None:
    """The best value of ``metric`` over the epochs' records, or None where none has it."""
    values = [record.get(metric) for record in records if record.get(metric) is not None]
    if not values:
        return None
    return max(values) if direction(metric) > 0 else min(values)
