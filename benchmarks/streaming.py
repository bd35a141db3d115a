"""Data larger than memory: LeNet (at 32 × 32 × 3) trained from the shell on a generated folder whose
decoded images are 4 × ``training.max_memory``, with ``data.cache`` disk and none, against the same
folder in memory (its limit raised). Each run is a fresh ``yamlnet train`` process; rounds alternate.
Prints per cache the median epoch time (epochs 2 on), its ratio to memory's, and the peak resident
memory of the trainer and its worker processes together (sampled every 20 ms from /proc, a level held
for two samples), beside the
model's own needs: the peak of the same run on a 32nd of the images.

    python benchmarks/streaming.py [--max-memory 128MiB] [--rounds 2] [--epochs 3] [--folder DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from yamlnet.sizes import format_bytes, parse_size  # noqa: E402

SIZE = 32
MODEL = """
name: lenet-streamed
input: [{size}, {size}, 3]
layers:
  - {{type: conv2d, filters: 6, size: 5, padding: 2, activation: relu}}
  - {{type: maxpool2d, size: 2}}
  - {{type: conv2d, filters: 16, size: 5, activation: relu}}
  - {{type: maxpool2d, size: 2}}
  - {{type: flatten}}
  - {{type: dense, units: 120, activation: relu}}
  - {{type: dense, units: 84, activation: relu}}
  - {{type: dense, units: 10}}
  - {{type: softmax}}
data: {{dataset: folder, path: {folder}, validation_split: 0.05}}
training: {{epochs: {epochs}, batch_size: 64, learning_rate: 0.02, optimizer: momentum, max_memory: {limit}}}
"""


def make_folder(folder: Path, count: int) -> None:
    """``count`` PNGs of ten classes of generated figures (the shapes data set, drawn in colour)."""
    from PIL import Image

    from yamlnet.data.shapes import CLASSES, generate

    if folder.is_dir() and sum(1 for _ in folder.rglob("*.png")) == count:
        return
    print(f"writing {count:,} images to {folder} …", flush=True)
    for start in range(0, count, 2000):
        x, y = generate(min(2000, count - start), (SIZE, SIZE, 3), start, 0.2)
        for offset, (image, label) in enumerate(zip(x, y)):
            (folder / CLASSES[label]).mkdir(parents=True, exist_ok=True)
            Image.fromarray((image * 255).astype(np.uint8)).save(folder / CLASSES[label] / f"{start + offset}.png")


def tree_rss(root: int) -> int:
    """Resident bytes of process ``root`` and all its descendants."""
    parents, rss = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            parents[int(entry)] = int(fields[1])
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    family, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in family} - family
        family |= more
        grew = bool(more)
    return sum(rss.get(pid, 0) for pid in family)


def run(model: Path, out: Path, overrides: list[str]) -> tuple[float, int]:
    """(median epoch seconds from epoch 2 on, peak resident bytes of the process tree)."""
    env = {key: value for key, value in os.environ.items() if key != "OPENBLAS_CORETYPE"}
    command = [sys.executable, "-m", "yamlnet", "train", str(model), "--out", str(out), "--quiet"]
    for override in overrides:
        command += ["--set", override]
    process = subprocess.Popen(command, env=env, cwd=ROOT)
    # a level counts once two samples in a row reach it: a process being started (vfork, then exec)
    # shares its parent's memory for an instant, and /proc counts that memory twice
    peak, before = 0, 0
    while process.poll() is None:
        now = tree_rss(process.pid)
        peak, before = max(peak, min(now, before)), now
        time.sleep(0.02)
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed with {process.returncode}")
    seconds = [json.loads(line)["seconds"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(seconds[1:] or seconds), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-memory", default="128MiB")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "yamlnet-streaming-bench")
    args = parser.parse_args()
    limit = parse_size(args.max_memory)
    count = 4 * limit // (SIZE * SIZE * 3 * 4)
    images = args.folder / "images"
    make_folder(images, count)
    model = args.folder / "model.yaml"
    model.write_text(MODEL.format(size=SIZE, folder=images, epochs=args.epochs, limit=args.max_memory))
    small = args.folder / "small"  # the model's own needs: the same run on a 32nd of the images, in memory
    for path in sorted(images.rglob("*.png"))[::32]:
        (small / path.parent.name).mkdir(parents=True, exist_ok=True)
        if not (small / path.parent.name / path.name).exists():
            (small / path.parent.name / path.name).symlink_to(path)
    cache_dir = args.folder / "cache"
    settings = {"memory": ["data.cache=memory", "training.max_memory=8GiB"],
                "disk": [f"data.cache_dir={cache_dir}"],  # (chosen by yamlnet: the images do not fit)
                "none": ["data.cache=none"]}
    with tempfile.TemporaryDirectory() as runs:
        run(model, Path(runs) / "warm", settings["disk"] + ["training.epochs=1"])  # the disk cache, made once
        results, own = {cache: [] for cache in settings}, []
        for round_ in range(args.rounds):
            own.append(run(model, Path(runs) / f"small-{round_}", [f"data.path={small}"])[1])
            for cache, overrides in settings.items():
                results[cache].append(run(model, Path(runs) / f"{cache}-{round_}", overrides))
    decoded = count * SIZE * SIZE * 3 * 4
    print(f"{count:,} images of {SIZE} × {SIZE} × 3: {format_bytes(decoded)} decoded, training.max_memory "
          f"{format_bytes(limit)}; batch 64, {args.epochs} epochs, {args.rounds} rounds")
    memory_epoch = statistics.median(seconds for seconds, _ in results["memory"])
    print(f"the model's own needs (the peak of the same run on a 32nd of the images): {format_bytes(max(own))}; "
          f"max_memory plus those: {format_bytes(limit + max(own))}")
    print(f"{'data.cache':<10}  {'epoch s':>8}  {'× memory':>8}  {'peak RSS (all processes)':>24}")
    for cache, measured in results.items():
        epoch = statistics.median(seconds for seconds, _ in measured)
        peak = max(peak for _, peak in measured)
        print(f"{cache:<10}  {epoch:>8.2f}  {epoch / memory_epoch:>8.2f}  {format_bytes(peak):>24}")


if __name__ == "__main__":
    main()
