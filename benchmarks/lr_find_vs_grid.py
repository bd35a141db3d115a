"""What lr-find suggests against the best of a 6-point grid of learning rates, on three example models
(best validation accuracy of each run). The figures on the documentation's Experiments page."""

import tempfile
import time

import yamlnet
from yamlnet.lrfind import find_learning_rate

cases = [("lenet", ["data.dataset=shapes", "training.epochs=4"]), ("simple", ["training.epochs=10"]),
         ("ng_example", ["training.epochs=4"])]
for name, over in cases:
    t = time.time(); found = find_learning_rate(name, over); took = time.time() - t

    def acc(lr):
        r = yamlnet.train(name, out=tempfile.mkdtemp() + "/r", overrides=[*over, f"training.learning_rate={lr}"])
        return max(m["val_accuracy"] for m in r.metrics)
    grid = {lr: acc(lr) for lr in (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)}
    best = max(grid, key=grid.get)
    print(f"{name}: lr-find {took:.1f}s suggests {found.suggestion:.3g} -> {acc(found.suggestion):.4f}; "
          f"grid best {best:g} -> {grid[best]:.4f}; grid {grid}", flush=True)
