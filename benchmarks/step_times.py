"""Step times of one model under two settings, A and B, each in a fresh process, alternating.

    python benchmarks/step_times.py models/lenet.yaml --b-root ../old-checkout      # this code against another
    taskset -c 0 python benchmarks/step_times.py models/lenet.yaml --b-set training.shards=1   # on one core

A side is a yamlnet source tree (``--a-root``/``--b-root``, default: this one) and overrides of the model
file (``--a-set``/``--b-set``). Each process times training steps (forward, loss, backward, SGD step) and
inference at batch 64 on random data in memory, after a warm-up; a figure is the best of 3 blocks, in
ms a step. The rounds alternate A and B, so that a noisy machine hurts both alike: compare them round by
round, as ratios.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def measure(root: str, model_file: str, overrides: list[str], batch: int) -> dict:
    """In this process: ms a training step and an inference step, best of 3 blocks."""
    sys.path.insert(0, root)
    import numpy as np
    import yamlnet
    from yamlnet.optim import SGD

    model = yamlnet.build_model(model_file, overrides)
    optimizer = SGD(model.parameters(), model.config["training"] | {"weight_decay": 0.0})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *model.input_shape)).astype(model.dtype)
    y = rng.integers(0, model.output_shape[0], batch)

    def train():
        model.train_step_forward(x, y)
        optimizer.step(model.gradients(), 0.01)

    result = {}
    for name, step, count in (("train", train, 40), ("infer", lambda: model.forward(x), 80)):
        for _ in range(5):
            step()
        blocks = []
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(count):
                step()
            blocks.append((time.perf_counter() - started) / count * 1000)
        result[name] = min(blocks)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    for side in "ab":
        parser.add_argument(f"--{side}-root", default=str(ROOT), help=f"side {side.upper()}'s source tree")
        parser.add_argument(f"--{side}-set", action="append", default=[], metavar="KEY=VALUE",
                            help=f"side {side.upper()}'s overrides (repeatable)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        root, overrides = args.worker
        print(json.dumps(measure(root, args.model, json.loads(overrides), args.batch)))
        return
    print(f"{args.model}: ms a step at batch {args.batch} (train / inference)")
    for round_ in range(1, args.rounds + 1):
        figures = {}
        for side in "ab":
            root, overrides = getattr(args, f"{side}_root"), getattr(args, f"{side}_set")
            output = subprocess.run([sys.executable, __file__, args.model, "--batch", str(args.batch),
                                     "--worker", root, json.dumps(overrides)],
                                    check=True, capture_output=True, text=True).stdout
            figures[side] = json.loads(output.strip().splitlines()[-1])
        a, b = figures["a"], figures["b"]
        print(f"round {round_}: A {a['train']:.2f} / {a['infer']:.2f}   B {b['train']:.2f} / {b['infer']:.2f}   "
              f"B/A {b['train'] / a['train']:.2f} / {b['infer'] / a['infer']:.2f}")


if __name__ == "__main__":
    main()
