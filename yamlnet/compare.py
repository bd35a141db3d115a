"""``yamlnet compare``: the config keys that differ between runs, beside their final and best metrics."""

from __future__ import annotations

import json
from pathlib import Path

from yamlnet import runs
from yamlnet.config import load_config
from yamlnet.config.overrides import flatten
from yamlnet.errors import DataError


def compare(run_dirs) -> dict:
    """{"keys": [differing dotted keys], "runs": [{"run", "values", "final", "best"}]} for ``run_dirs``."""
    flat, rows = [], []
    for run_dir in map(Path, run_dirs):
        if not (run_dir / runs.CONFIG).is_file():
            raise DataError("is not a run directory (no config.yaml)", file=str(run_dir))
        config = flatten(load_config(run_dir / runs.CONFIG))
        metrics = runs.read_metrics(run_dir)
        flat.append(config)
        accuracy = [m["val_accuracy"] for m in metrics if m.get("val_accuracy") is not None]
        rows.append({"run": str(run_dir), "final": metrics[-1] if metrics else {},
                     "best_val_accuracy": max(accuracy) if accuracy else None,
                     "best_val_loss": min((m["val_loss"] for m in metrics if m.get("val_loss") is not None),
                                          default=None), "epochs": len(metrics)})
    keys = sorted({key for config in flat for key in config}, key=lambda k: (k.split(".")[0] != "layers", k))
    differing = [key for key in keys if len({json.dumps(config.get(key), sort_keys=True) for config in flat}) > 1]
    for row, config in zip(rows, flat):
        row["values"] = {key: config.get(key) for key in differing}
    return {"keys": differing, "runs": rows}


def render(result: dict) -> str:
    def num(value):
        return "-" if value is None else f"{value:.4f}"

    header = ["run", *result["keys"], "epochs", "final loss", "final val_acc", "best val_acc", "best val_loss"]
    body = [[row["run"], *(json.dumps(row["values"][k]) for k in result["keys"]), str(row["epochs"]),
             num(row["final"].get("loss")), num(row["final"].get("val_accuracy")), num(row["best_val_accuracy"]),
             num(row["best_val_loss"])] for row in result["runs"]]
    widths = [max(len(header[i]), *(len(r[i]) for r in body)) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in [header, *body]]
    lines.insert(1, "─" * max(len(line) for line in lines))
    if not result["keys"]:
        lines.append("(the runs' configs are identical)")
    return "\n".join(lines)
