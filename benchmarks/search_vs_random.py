"""A 20-trial TPE search with median pruning against a 20-run random search of the same space, on
generated shapes: the best validation accuracy each found, and the training time each spent (the sum of
its runs' epoch times). The figures on the documentation's Experiments page.

    python benchmarks/search_vs_random.py [--trials 20] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from yamlnet.runs import read_metrics
from yamlnet.sweep import run_sweep

MODEL = """
input: [16, 16, 3]
layers:
  - {name: conv1, type: conv2d, filters: 8, size: 3, padding: 1, activation: relu}
  - {type: maxpool2d, size: 2}
  - {name: conv2, type: conv2d, filters: 16, size: 3, padding: 1, activation: relu}
  - {type: maxpool2d, size: 2}
  - {name: fc, type: dense, units: 10}
  - {type: softmax}
data: {dataset: shapes, n_samples: 2000}
training: {epochs: 6, optimizer: momentum}
"""
RATES = [float(rate) for rate in np.logspace(-3, 0, 13)]
SPACES = {
    "random": {"mode": "random", "training.learning_rate": RATES, "training.batch_size": [16, 32, 64, 128],
               "layers.conv1.filters": [2, 4, 8, 16]},
    "tpe": {"mode": "tpe", "prune": "median", "training.learning_rate": {"low": 0.001, "high": 1.0, "log": True},
            "training.batch_size": [16, 32, 64, 128], "layers.conv1.filters": [2, 4, 8, 16]},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        for name, space in SPACES.items():
            path = Path(work) / f"{name}.yaml"
            path.write_text(MODEL + "sweep: " + json.dumps({**space, "samples": args.trials, "seed": 0}) + "\n")
            result = run_sweep(path, out=Path(work) / name, workers=args.workers)
            best = max(row["best"] for row in result["rows"] if row["best"] is not None)
            seconds = sum(record["seconds"] for row in result["rows"]
                          for record in read_metrics(Path(work) / name / row["run"]))
            pruned = sum(row["status"] == "pruned" for row in result["rows"])
            print(f"{name}: best val_accuracy {best:.4f}, {len(result['rows'])} runs ({pruned} pruned), "
                  f"{seconds:.1f} s of training", flush=True)


if __name__ == "__main__":
    main()
