"""Training and inference throughput of yamlnet, side by side with PyTorch when it is importable.

    python benchmarks/train_throughput.py                       # models/lenet.yaml and models/ng_example.yaml
    python benchmarks/train_throughput.py models/simple.yaml    # any model files
    python benchmarks/train_throughput.py --memory              # also: peak RSS of training LeNet on 60,000 shapes

Each figure is samples/s over an "epoch" of --samples random inputs already in memory (float32,
batch 64, plain SGD: forward, loss, backward, step), after one warm-up epoch; the median of
--epochs timed epochs. yamlnet and PyTorch run alternately in the same process with the same
number of threads, so the ratio is fair on a shared, noisy machine. PyTorch is never a
dependency of yamlnet: `pip install torch` to get the comparison.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yamlnet  # noqa: E402
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
def yamlnet_steps(model_file: str, batch: int, learning_rate: float = 0.01):
    model = yamlnet.build_model(model_file)
    optimizer = SGD(model.parameters(), model.config["training"] | {"weight_decay": 0.0})

    def train_step(x, y):
        model.train_step_forward(x, y)
        optimizer.step(model.gradients(), learning_rate)

    def infer_step(x):
        model.forward(x)

    return model, train_step, infer_step


# -- PyTorch: the same network, built from the same config ----------------------------------
def torch_steps(model: yamlnet.Model, learning_rate: float = 0.01):
    import torch
    from torch import nn

    acts = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.01), "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}
    modules: list = []
    for layer in model.layers:
        config = layer.config
        if layer.type == "conv2d":
            modules.append(nn.Conv2d(layer.input_shape[2], config["filters"], layer.f, layer.s, layer.p))
        elif layer.type in ("maxpool2d", "avgpool2d"):
            pool = nn.MaxPool2d if layer.type == "maxpool2d" else nn.AvgPool2d
            modules.append(pool(layer.f, layer.s, layer.p))
        elif layer.type == "dense":
            if len(layer.input_shape) > 1:
                modules.append(nn.Flatten())
            modules.append(nn.Linear(int(np.prod(layer.input_shape)), config["units"]))
        elif layer.type == "flatten":
            modules.append(nn.Flatten())
        elif layer.type == "dropout":
            modules.append(nn.Dropout(config["rate"]))
        if layer.activation in acts:
            modules.append(acts[layer.activation]())
    net = nn.Sequential(*modules)  # softmax is fused into the loss, as in yamlnet
    optimizer = torch.optim.SGD(net.parameters(), lr=learning_rate)
    loss_fn = nn.CrossEntropyLoss()

    def train_step(x, y):
        optimizer.zero_grad(set_to_none=True)
        loss_fn(net(x), y).backward()
        optimizer.step()

    def infer_step(x):
        with torch.no_grad():
            net(x)

    return train_step, infer_step


def epoch_rate(step, batches) -> float:
    """Samples/s of one pass of ``step`` over ``batches``."""
    started = time.perf_counter()
    for args in batches:
        step(*args)
    return sum(len(args[0]) for args in batches) / (time.perf_counter() - started)


def time_side_by_side(ours, theirs, epochs: int) -> dict:
    """Median samples/s of each, and the median of per-epoch ratios, over ``epochs`` epochs that
    alternate between the two (after one warm-up epoch each), so that noise hits both alike."""
    rates = {"yamlnet": [], "torch": []}
    for repeat in range(epochs + 1):
        for name, (step, batches) in (("yamlnet", ours), ("torch", theirs)):
            if step is None:
                continue
            rate = epoch_rate(step, batches)
            if repeat:
                rates[name].append(rate)
    result = {name: statistics.median(values) for name, values in rates.items() if values}
    if rates["torch"]:
        result["ratio"] = statistics.median(a / b for a, b in zip(rates["yamlnet"], rates["torch"]))
    return result


def measure(model_file: str, batch: int, samples: int, epochs: int, with_torch: bool) -> dict:
    model, train_step, infer_step = yamlnet_steps(model_file, batch)
    rng = np.random.default_rng(0)
    n_classes = model.output_shape[0]
    x = rng.random((samples,) + model.input_shape, dtype=np.float32)
    y = rng.integers(0, n_classes, samples)
    np_batches = [(x[i:i + batch], y[i:i + batch]) for i in range(0, samples, batch)]
    result = {"model": Path(model_file).stem, "params": model.param_count()}
    torch_train = torch_infer = None
    t_batches = []
    if with_torch:
        import torch
        torch_train, torch_infer = torch_steps(model)
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        yt = torch.from_numpy(y)
        t_batches = [(xt[i:i + batch], yt[i:i + batch]) for i in range(0, samples, batch)]
    result["train"] = time_side_by_side((train_step, np_batches), (torch_train, t_batches), epochs)
    result["infer"] = time_side_by_side((infer_step, [b[:1] for b in np_batches]),
                                        (torch_infer, [b[:1] for b in t_batches]), epochs)
    return result


def training_memory(n_samples: int = 60_000) -> float:
    """Peak RSS (MB) of training models/lenet.yaml for one epoch on n_samples generated 28 × 28 × 1
    shapes, measured by the training process itself (a fresh interpreter, so nothing of this one counts)."""
    code = (
        "import resource, tempfile, yamlnet\n"
        "with tempfile.TemporaryDirectory() as out:\n"
        f"    yamlnet.train({str(ROOT / 'models' / 'lenet.yaml')!r}, out=out + '/run', overrides=["
        f"'data.dataset=shapes', 'data.n_samples={n_samples}', 'training.epochs=1'])\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    result = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT)
    return int(result.stdout.split()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", default=[str(ROOT / "models" / "lenet.yaml"),
                                                      str(ROOT / "models" / "ng_example.yaml")])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--samples", type=int, default=64 * 40, help="samples per timed epoch")
    parser.add_argument("--epochs", type=int, default=7, help="timed epochs (the median is reported)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    parser.add_argument("--memory", action="store_true", help="also measure training memory on 60,000 images")
    args = parser.parse_args()

    threads, kernel = blas_info()
    memory = training_memory() if args.memory else None  # first, before this process grows
    with_torch = not args.no_torch
    if with_torch:
        try:
            import torch
            torch.set_num_threads(threads)
        except ImportError:
            with_torch = False
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"NumPy {np.__version__}, BLAS {kernel} × {threads} threads"
          + (f", PyTorch {torch.__version__} ({torch.get_num_threads()} threads)" if with_torch else ", no PyTorch"))
    print(f"batch {args.batch}, float32, plain SGD; samples/s, median of {args.epochs} epochs of {args.samples} "
          f"samples; ratio: median of per-epoch yamlnet / PyTorch, the two alternating\n")
    header = f"{'model':<12} {'params':>8}"
    for kind in ("train", "infer"):
        header += f" {kind:>9}" + (f" {'torch':>9} {'ratio':>6}" if with_torch else "")
    print(header)
    for model_file in args.models:
        r = measure(model_file, args.batch, args.samples, args.epochs, with_torch)
        line = f"{r['model']:<12} {r['params']:>8,}"
        for kind in ("train", "infer"):
            line += f" {r[kind]['yamlnet']:>9,.0f}"
            if with_torch:
                line += f" {r[kind]['torch']:>9,.0f} {r[kind]['ratio']:>6.2f}"
        print(line, flush=True)
    print(f"\npeak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")
    if memory is not None:
        print(f"peak RSS of training lenet for an epoch on 60,000 generated 28 × 28 × 1 shapes: {memory:,.0f} MB")


if __name__ == "__main__":
    main()
