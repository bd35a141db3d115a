"""What augmentation costs: one epoch of LeNet on generated 28 × 28 × 1 shapes, with flip and shift
and without, alternating fresh processes; the ratio of the median times.

    python benchmarks/augment_cost.py [--samples 60000] [--rounds 3]
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
    overrides.append('data.augment={{flip: horizontal, shift: 2}}')
with tempfile.TemporaryDirectory() as out:
    result = yamlnet.train('lenet', out=out + '/run', overrides=overrides)
print(result.metrics[-1]['seconds'])
"""


def epoch_seconds(samples: int, augment: bool) -> float:
    code = CODE.format(root=str(ROOT), samples=samples, augment=augment)
    return float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
                 .stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    plain, augmented = [], []
    for _ in range(args.rounds):
        plain.append(epoch_seconds(args.samples, False))
        augmented.append(epoch_seconds(args.samples, True))
    ratio = statistics.median(a / p for a, p in zip(augmented, plain))
    print(f"epoch of {args.samples:,} images: {statistics.median(plain):.1f} s plain, "
          f"{statistics.median(augmented):.1f} s with flip and shift ({ratio:.2f} ×)")


if __name__ == "__main__":
    main()
