"""What augmentation costs: one epoch of LeNet on generated 28 × 28 × 1 shapes, with flip and shift
(or, with --all, every change that applies to grey images) and without, alternating fresh processes;
the ratio of the median times.

    python benchmarks/augment_cost.py [--samples 60000] [--rounds 3] [--all]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CODE = """
import sys, tempfile, time
sys.path.insert(0, {root!r})
import yamlnet
overrides = ['data.dataset=shapes', 'data.n_samples={samples}', 'training.epochs=1', 'data.validation_split=0']
if {augment}:
    overrides.append({setting!r})
with tempfile.TemporaryDirectory() as out:
    result = yamlnet.train('lenet', out=out + '/run', overrides=overrides)
print(result.metrics[-1]['seconds'])
"""


FLIP_AND_SHIFT = "data.augment={flip: horizontal, shift: 2}"
EVERYTHING = ("data.augment={flip: horizontal, shift: 2, rotate: 15, scale: [0.9, 1.1], crop: 2, brightness: 0.2, "
              "contrast: 0.2, cutout: 8, noise: 0.05}")


def epoch_seconds(samples: int, augment: bool, setting: str = FLIP_AND_SHIFT) -> float:
    code = CODE.format(root=str(ROOT), samples=samples, augment=augment, setting=setting)
    return float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
                 .stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--all", action="store_true", help="every change that applies to grey images at once")
    args = parser.parse_args()
    setting = EVERYTHING if args.all else FLIP_AND_SHIFT
    plain, augmented = [], []
    for _ in range(args.rounds):
        plain.append(epoch_seconds(args.samples, False))
        augmented.append(epoch_seconds(args.samples, True, setting))
    ratio = statistics.median(a / p for a, p in zip(augmented, plain))
    print(f"epoch of {args.samples:,} images: {statistics.median(plain):.1f} s plain, "
          f"{statistics.median(augmented):.1f} s with {setting.split('=', 1)[1]} ({ratio:.2f} ×)")


if __name__ == "__main__":
    main()
