"""``yamlnet runs``: every run directory below a folder, as a table — its state, epochs, best metric,
time, and the keys of the config that differ between the runs listed."""

from __future__ import annotations

import json
from pathlib import Path

from yamlnet import runs
from yamlnet.config import load_config
from yamlnet.config.overrides import flatten
from yamlnet.errors import ConfigError, DataError
from yamlnet.metrics import best_value, direction

#: at most this many differing keys become columns of the table (all of them are in --json)
SHOWN_KEYS = 4


def find_runs(folder: Path) -> list[Path]:
    """The run directories below ``folder`` (or ``folder`` itself): those with config.yaml and run.json."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("is not a folder", file=str(folder))
    return sorted(path.parent for path in folder.rglob(runs.CONFIG) if (path.parent / "run.json").is_file())


def list_runs(folder="runs", *, sort: str | None = None, filters=()) -> dict:
    """{"folder", "keys" (the config keys that differ), "rows": [{"run", "model", "state", "epochs", "of",
    "metric", "best", "seconds", "started", "config": {key: value}}]}; ``filters``: ``key=value`` (a
    dotted config key, or ``state``, ``model``), ``sort``: a column or a dotted key (default: newest first)."""
    rows = []
    for run_dir in find_runs(Path(folder)):
        try:
            config = load_config(run_dir / runs.CONFIG)
        except Exception:  # a broken run directory is still listed, as what it is
            config = {}
        metrics = runs.read_metrics(run_dir)
        state, error = runs.run_status(run_dir)
        metric = config.get("training", {}).get("early_stopping", {}).get("metric", "val_accuracy")
        rows.append({"run": str(run_dir), "model": config.get("name", "?"), "state": state, "error": error,
                     "epochs": len(metrics), "of": config.get("training", {}).get("epochs"), "metric": metric,
                     "best": best_value(metrics, metric), "seconds": round(sum(m.get("seconds", 0) for m in metrics), 1),
                     "started": (run_dir / "run.json").stat().st_mtime, "config": flatten(config)})
    rows = [row for row in rows if all(_matches(row, item) for item in filters)]
    keys = _differing(rows)
    rows.sort(key=_sort_key(sort), reverse=sort is None or sort in ("best", "epochs", "seconds", "started"))
    return {"folder": str(folder), "keys": keys, "rows": rows}


def _matches(row: dict, item: str) -> bool:
    key, sep, value = item.partition("=")
    if not sep:
        raise ConfigError(f"--filter {item}: expected KEY=VALUE, like state=finished or training.optimizer=adam")
    if key in ("state", "model"):
        return str(row[key]) == value
    have = row["config"].get(key)
    return have is not None and (str(have) == value or json.dumps(have) == value)


def _differing(rows: list[dict]) -> list[str]:
    """The config keys whose values are not the same in every row (paths and names left out)."""
    keys = sorted({key for row in rows for key in row["config"]})
    return [key for key in keys if key != "name" and not key.endswith(("path", "init_weights"))
            and len({json.dumps(row["config"].get(key), sort_keys=True) for row in rows}) > 1]


def _sort_key(sort: str | None):
    if sort is None or sort == "started":
        return lambda row: row["started"]
    if sort in ("run", "model", "state", "epochs", "seconds"):
        return lambda row: (row[sort] is None, row[sort])
    if sort == "best":  # best first, whichever way the metric goes
        return lambda row: (row["best"] is not None, (row["best"] or 0) * direction(row["metric"]))
    return lambda row: (row["config"].get(sort) is None, json.dumps(row["config"].get(sort)))


def newest(folder="runs") -> Path:
    """The run directory started last below ``folder`` (``yamlnet runs --last``)."""
    found = find_runs(Path(folder))
    if not found:
        raise DataError("holds no run directory", file=str(folder))
    return max(found, key=lambda run_dir: (run_dir / "run.json").stat().st_mtime)


def render(result: dict) -> str:
    """The table: one line per run, newest first (or as sorted), the differing keys as columns."""
    import time

    keys = result["keys"][:SHOWN_KEYS]
    header = ["run", "model", "state", "epochs", "best", "time", "started",
              *(key.rsplit(".", 1)[-1] for key in keys)]
    lines = [header]
    for row in result["rows"]:
        best = f"{row['best']:.4f} {row['metric']}" if row["best"] is not None else "-"
        lines.append([row["run"], row["model"], row["state"], f"{row['epochs']}/{row['of']}", best,
                      f"{row['seconds']:.0f}s", time.strftime("%Y-%m-%d %H:%M", time.localtime(row["started"])),
                      *(json.dumps(row["config"].get(key)) for key in keys)])
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    text = ["  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines]
    more = len(result["keys"]) - len(keys)
    return "\n".join(text + ([f"(and {more} more keys that differ: --json lists them)"] if more > 0 else []))
