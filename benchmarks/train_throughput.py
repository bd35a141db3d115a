"""Training and inference throughput of yamlnet, side by side with PyTorch when it is importable.

    python benchmarks/train_throughput.py                       # models/lenet.yaml and models/ng_example.yaml
    python benchmarks/train_throughput.py models/simple.yaml    # any model files
    python benchmarks/train_throughput.py --memory              # also: peak RSS of training LeNet on 60,000 shapes
    python benchmarks/train_throughput.py --size 64 benchmarks/models/cifar.yaml   # the same net at 64 × 64
    python benchmarks/train_throughput.py --pss MODEL...         # also: peak memory with shared pages counted once

Each figure is samples/s over an "epoch" of --samples random inputs already in memory (float32,
batch 64, plain SGD: forward, loss, backward, step; inference: forward at batch 64), after one
warm-up epoch; the median of --epochs timed epochs. Each framework runs in a fresh process of its
own, as on a user's laptop, with the same number of threads; the two alternate for --rounds
rounds, and a ratio is the median of the rounds' ratios, so that a shared, noisy machine hurts both
alike. (In one process they disturb each other: OpenBLAS's idle threads spin for a while after
each call, and yamlnet's allocator setting speeds PyTorch up too.) PyTorch is never a dependency
of yamlnet: `pip install torch` to get the comparison.

Beside the speed: each framework's peak resident memory in training (yamlnet's: its process plus its
shard workers, each at its own peak), and yamlnet's achieved multiply-adds per
second in training (three products a layer: forward, and the two gradients) against the machine's
peak, measured as a 2048 × 2048 float32 product (np.dot) on the same threads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "tests"))  # the PyTorch twin of a model, which the reference tests use too

import yamlnet  # noqa: E402
from yamlnet.plan import plan  # noqa: E402
from yamlnet.optim import SGD  # noqa: E402


def blas_info() -> tuple[int, str]:
    """(threads, kernel architecture) of NumPy's BLAS, as far as threadpoolctl can tell."""
    try:
        from threadpoolctl import threadpool_info
        blas = [info for info in threadpool_info() if info["user_api"] == "blas"]
        return blas[0]["num_threads"], f"{blas[0]['internal_api']} {blas[0].get('architecture', '?')}"
    except Exception:
        return int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)), "unknown (pip install threadpoolctl)"


# -- yamlnet ------------------------------------------------------------------------------
def yamlnet_steps(model_file: str, batch: int, learning_rate: float = 0.01, overrides=()):
    model = yamlnet.build_model(model_file, overrides)
    optimizer = SGD(model.parameters(), model.config["training"] | {"weight_decay": 0.0})

    def train_step(x, y):
        model.train_step_forward(x, y)
        optimizer.step(model.gradients(), learning_rate)

    def infer_step(x):
        model.forward(x)

    return model, train_step, infer_step


# -- PyTorch: the same network, built from the same config ----------------------------------
def torch_steps(layers, learning_rate: float = 0.01):
    import torch
    from torch import nn
    from torch_twin import TorchGraph

    net = TorchGraph(layers)  # softmax is fused into the loss, as in yamlnet
    optimizer = torch.optim.SGD(net.parameters(), lr=learning_rate)
    loss_fn = nn.CrossEntropyLoss()

    def train_step(x, y):
        net.train()
        optimizer.zero_grad(set_to_none=True)
        loss_fn(net(x), y).backward()
        optimizer.step()

    def infer_step(x):
        net.eval()
        with torch.no_grad():
            net(x)

    return train_step, infer_step


def epoch_rate(step, batches) -> float:
    """Samples/s of one pass of ``step`` over ``batches``."""
    started = time.perf_counter()
    for args in batches:
        step(*args)
    return sum(len(args[0]) for args in batches) / (time.perf_counter() - started)


def worker(framework: str, model_file: str, batch: int, samples: int, epochs: int, threads: int,
           infer_batch: int, overrides=(), pss: bool = False) -> dict:
    """Run in a fresh process: median samples/s of training and of inference over ``epochs`` epochs,
    after one warm-up epoch. Each framework gets a process of its own, as on a user's laptop: no
    thread pools spinning beside it, no allocator settings but its own."""
    config, layers = plan(model_file, overrides)  # shapes only: building a yamlnet Model would tune glibc for torch too
    rng = np.random.default_rng(0)
    x = rng.random((samples, *config["input"]), dtype=np.float32)
    y = rng.integers(0, layers[-1].output_shape[0], samples)
    if framework == "torch":
        import torch
        torch.set_num_threads(threads)
        train_step, infer_step = torch_steps(layers)
        x, y = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))), torch.from_numpy(y)
    else:
        model, train_step, infer_step = yamlnet_steps(model_file, batch, overrides=overrides)
    batches = [(x[i:i + batch], y[i:i + batch]) for i in range(0, samples, batch)]
    inputs = [(x[i:i + infer_batch],) for i in range(0, samples, infer_batch)]
    result = {}
    for kind, step, args in (("train", train_step, batches), ("infer", infer_step, inputs)):
        rates = [epoch_rate(step, args) for _ in range(epochs + 1)][1:]
        result[kind] = statistics.median(rates)
    if pss:  # one more training epoch, untimed, its memory sampled
        processes = (lambda: [os.getpid()]) if framework == "torch" else \
            (lambda: [os.getpid(), *model.shards.worker_pids])
        result["pss_mb"] = sampled_peak_pss_mb(lambda: epoch_rate(train_step, batches), processes)
    result["workers_rss_mb"] = 0.0
    if framework != "torch":  # the shard workers, each at its own peak, read while they run
        result["workers_rss_mb"] = sum(peak_rss_mb(pid) for pid in model.shards.worker_pids)
        model.close_workers()
    return result


def sampled_peak_pss_mb(work, processes) -> float:
    """The largest sum of the proportional set sizes (Pss: shared pages split among the processes that
    map them, so counted once in the sum) of ``processes()``, sampled every 20 ms while ``work()`` runs,
    in MB. The resident memory the machine gives the run; the sum of peak RSS counts shared memory
    (yamlnet's weights and gradients, in memory its workers share) once a process."""
    peak, done = 0.0, threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            total = 0.0
            for pid in processes():
                try:
                    with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as rollup:
                        total += next(int(line.split()[1]) for line in rollup if line.startswith("Pss:")) / 1024
                except (OSError, StopIteration):
                    pass
            peak = max(peak, total)
            done.wait(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        work()
    finally:
        done.set()
        thread.join()
    return peak


def peak_rss_mb(pid: int) -> float:
    """A running process's peak resident memory (VmHWM), in MB. Not the children's ru_maxrss: a child
    started by vfork runs in its parent's memory until it execs, and Linux counts that memory's peak as
    the child's — every worker would be charged the trainer's peak (its data set) once more."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_macs(threads: int) -> float:
    """Multiply-adds per second of a 2048 × 2048 float32 product on ``threads`` BLAS threads: the best of 5."""
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
    with threadpool_limits(threads, user_api="blas"):
        a @ a
        best = min(_timed(lambda: a @ a) for _ in range(5))
    return 2048 ** 3 / best


def _timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def measure(model_file: str, batch: int, samples: int, epochs: int, with_torch: bool, rounds: int,
            threads: int, infer_batch: int, overrides=(), pss: bool = False) -> dict:
    """Rounds of [yamlnet process, PyTorch process], one after the other; the ratio of each round,
    and the median over rounds, so that a noisy machine hurts both alike."""
    _, layers = plan(model_file, overrides)
    found = {"yamlnet": [], "torch": []}
    for _ in range(rounds):
        for framework in ("yamlnet", "torch") if with_torch else ("yamlnet",):
            command = [sys.executable, __file__, "--worker", framework, model_file, "--batch", str(batch),
                       "--samples", str(samples), "--epochs", str(epochs), "--threads", str(threads),
                       "--infer-batch", str(infer_batch), *(part for item in overrides for part in ("--set", item)),
                       *(["--pss"] if pss else [])]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            found[framework].append(json.loads(output.strip().splitlines()[-1]))
    result = {"model": Path(model_file).stem, "params": sum(layer.param_count() for layer in layers),
              "macs": sum(layer.macs() for layer in layers),
              "peak_rss_mb": max(r["peak_rss_mb"] + r["workers_rss_mb"] for r in found["yamlnet"]),
              "torch_rss_mb": max((r["peak_rss_mb"] for r in found["torch"]), default=None),
              "pss_mb": max((r.get("pss_mb", 0.0) for r in found["yamlnet"]), default=None),
              "torch_pss_mb": max((r.get("pss_mb", 0.0) for r in found["torch"]), default=None)}
    for kind in ("train", "infer"):
        ours = [r[kind] for r in found["yamlnet"]]
        result[kind] = {"yamlnet": statistics.median(ours)}
        if with_torch:
            theirs = [r[kind] for r in found["torch"]]
            result[kind].update(torch=statistics.median(theirs),
                                ratio=statistics.median(a / b for a, b in zip(ours, theirs)))
    return result


def training_memory(n_samples: int = 60_000) -> tuple[float, float]:
    """Peak RSS (MB) of training models/lenet.yaml for one epoch on n_samples generated 28 × 28 × 1
    shapes, measured by the training process itself (a fresh interpreter, so nothing of this one
    counts); and the memory private to its shard workers (MB, yamlnet.workers) as they end: their own
    interpreter, arrays and buffers (the libraries' code pages are shared with every other process)."""
    code = (
        "import resource, tempfile, yamlnet, yamlnet.workers as workers\n"
        "private, close = [0], workers.ShardWorkers.close\n"
        "def measured(self):\n"
        "    for pid in ([] if self.closed else [process.pid for process in self.processes]):\n"
        "        private[0] += sum(int(line.split()[1]) for line in open(f'/proc/{pid}/smaps_rollup')\n"
        "                          if line.startswith('Private_'))\n"
        "    close(self)\n"
        "workers.ShardWorkers.close = measured\n"
        "with tempfile.TemporaryDirectory() as out:\n"
        f"    yamlnet.train({str(ROOT / 'models' / 'lenet.yaml')!r}, out=out + '/run', overrides=["
        f"'data.dataset=shapes', 'data.n_samples={n_samples}', 'training.epochs=1'])\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, private[0])\n")
    result = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT)
    trainer, workers = result.stdout.split()[-2:]
    return int(trainer) / 1024, int(workers) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", default=[str(ROOT / "models" / "lenet.yaml"),
                                                      str(ROOT / "models" / "ng_example.yaml")])
    parser.add_argument("--batch", type=int, default=64, help="training batch size")
    parser.add_argument("--infer-batch", type=int, default=64, help="inference batch size")
    parser.add_argument("--samples", type=int, default=64 * 40, help="samples per timed epoch")
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per process (the median counts)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of one process per framework")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    parser.add_argument("--memory", action="store_true", help="also measure training memory on 60,000 images")
    parser.add_argument("--size", type=int, help="every model's input at N × N (its channels kept)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of every model file, as yamlnet's --set")
    parser.add_argument("--pss", action="store_true",
                        help="also the peak of the processes' summed PSS (shared memory once), sampled in one more epoch")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        result = worker(args.worker, args.models[0], args.batch, args.samples, args.epochs, args.threads,
                        args.infer_batch, args.overrides, args.pss)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return

    threads, kernel = blas_info()
    memory = training_memory() if args.memory else None
    peak = peak_macs(threads)
    torch_version = None
    if not args.no_torch:
        try:
            from importlib.metadata import version
            torch_version = version("torch")
        except Exception:  # not installed: yamlnet's figures alone
            torch_version = None
    with_torch = torch_version is not None
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"NumPy {np.__version__}, BLAS {kernel} × {threads} threads"
          + (f", PyTorch {torch_version} ({threads} threads)" if with_torch else ", no PyTorch"))
    print(f"batch {args.batch} (inference {args.infer_batch}), float32, plain SGD; samples/s: median of {args.epochs} epochs of {args.samples} "
          f"samples in a fresh process per framework, {args.rounds} rounds;\nratio: median over rounds of "
          f"yamlnet / PyTorch; this machine's peak: {peak / 1e9:.1f} G multiply-adds/s (2048² float32 product)\n")
    name_width = max(12, *(len(Path(model).stem) for model in args.models))
    header = f"{'model':<{name_width}} {'params':>8}"
    for kind in ("train", "infer"):
        header += f" {kind:>9}" + (f" {'torch':>9} {'ratio':>6}" if with_torch else "")
    print(header + f" {'peak RSS':>9}" + (f" {'torch':>9}" if with_torch else "") + f" {'G MAC/s':>8} {'of peak':>7}"
          + (f" {'peak PSS':>9}" + (f" {'torch':>9}" if with_torch else "") if args.pss else ""))
    for model_file in args.models:
        overrides = list(args.overrides)
        if args.size:
            channels = plan(model_file, overrides)[0]["input"][2]
            overrides.append(f"input=[{args.size}, {args.size}, {channels}]")
        r = measure(model_file, args.batch, args.samples, args.epochs, with_torch, args.rounds, threads,
                    args.infer_batch, overrides, args.pss)
        line = f"{r['model']:<{name_width}} {r['params']:>8,}"
        for kind in ("train", "infer"):
            line += f" {r[kind]['yamlnet']:>9,.0f}"
            if with_torch:
                line += f" {r[kind]['torch']:>9,.0f} {r[kind]['ratio']:>6.2f}"
        achieved = 3 * r["macs"] * r["train"]["yamlnet"]  # forward, and the two gradients of every product
        line += f" {r['peak_rss_mb']:>6,.0f} MB" + (f" {r['torch_rss_mb']:>6,.0f} MB" if with_torch else "")
        line += f" {achieved / 1e9:>8.1f} {achieved / peak:>6.0%}"
        if args.pss:
            line += f" {r['pss_mb']:>6,.0f} MB" + (f" {r['torch_pss_mb']:>6,.0f} MB" if with_torch else "")
        print(line, flush=True)
    print("\npeak RSS: in training, the yamlnet process (data, model and the timed epochs) and its shard workers "
          "(each at its own peak), and the PyTorch process; G MAC/s: yamlnet's multiply-adds "
          "a second in training, 3 × the forward's a sample (the first layer's input gradient counted too)")
    if args.pss:
        print("peak PSS: the largest sum of the processes' proportional set sizes (shared memory counted once), "
              "sampled every 20 ms in one more training epoch")
    if memory is not None:
        print(f"peak RSS of training lenet for an epoch on 60,000 generated 28 × 28 × 1 shapes: {memory[0]:,.0f} MB"
              f" (and {memory[1]:,.0f} MB private to its shard workers)")


if __name__ == "__main__":
    main()
