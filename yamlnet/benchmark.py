"""``yamlnet benchmark``: forward and backward time of every layer, in the manner of ``caffe time``."""

from __future__ import annotations

import time

import numpy as np

from yamlnet.layers.fused import ConvMaxPool, PassThrough
from yamlnet.losses import softmax_cross_entropy
from yamlnet.model import Model


class _Timed:
    """A layer whose forward and backward add their seconds to ``times`` (everything else is the layer's)."""

    def __init__(self, layer, times: np.ndarray, index: int):
        self._layer, self._times, self._index = layer, times, index

    def __getattr__(self, name):
        return getattr(self._layer, name)

    def forward(self, x, training=False):
        started = time.perf_counter()
        out = self._layer.forward(x, training)
        self._times[0, self._index] += time.perf_counter() - started
        return out

    def backward(self, grad):
        started = time.perf_counter()
        out = self._layer.backward(grad)
        self._times[1, self._index] += time.perf_counter() - started
        return out


def time_layers(model: Model, batch_size: int = 64, iterations: int = 20, warmup: int = 2) -> dict:
    """Mean forward and backward milliseconds per layer over ``iterations`` training steps on random
    data of the model's input shape (the fused softmax cross-entropy counts as the last layer's).
    The steps take the model's own path through its graph, on the whole batch (no shards), with its
    fused layers (a conv and the max-pool it feeds, run as one: one row, ``fused`` true)."""
    rng = np.random.default_rng(0)
    x = rng.random((batch_size,) + model.input_shape).astype(model.dtype)
    n_classes = model.output_shape[0] if len(model.output_shape) == 1 else 1
    y = rng.integers(0, n_classes, batch_size)
    last = model.logits_at if len(model.output_shape) == 1 else len(model.layers) - 1
    softmax_in_loss = last != len(model.layers) - 1  # the softmax's time is the fused loss's
    layers = model.execution(training=True)
    times = np.zeros((2, len(layers)))
    # a fused pool's pass-through counts as part of its conv's row
    rows = [model.graph.sources[index][0] if isinstance(layer, PassThrough) else index
            for index, layer in enumerate(layers)]
    timed = [_Timed(layer, times, row) for layer, row in zip(layers, rows)]

    def loss(out, labels, n):  # timed as the softmax's (fused) or the last layer's
        started = time.perf_counter()
        result = softmax_cross_entropy(out, labels, n) if softmax_in_loss else (0.0, np.ones_like(out) / out.size, None)
        times[0, -1 if softmax_in_loss else last] += time.perf_counter() - started
        return result

    for step in range(warmup + iterations):
        if step == warmup:
            times[...] = 0
        model.executor.step(timed, x, y, batch_size, loss)
    forward, backward = times / iterations * 1e3
    total = float(forward.sum() + backward.sum())
    return {
        "batch_size": batch_size,
        "iterations": iterations,
        "layers": [{"name": layer.name, "type": layer.type, "forward_ms": float(f), "backward_ms": float(b),
                    "share": float((f + b) / total) if total else 0.0, "fused": isinstance(layer, ConvMaxPool)}
                   for layer, f, b in zip(layers, forward, backward) if not isinstance(layer, PassThrough)],
        "total_ms": total,
        "samples_per_s": batch_size / total * 1e3 if total else float("inf"),
    }


def render(result: dict) -> str:
    rows = [(f"{r['name']} ({r['type']})", f"{r['forward_ms']:.3f}", f"{r['backward_ms']:.3f}",
             f"{r['forward_ms'] + r['backward_ms']:.3f}", f"{100 * r['share']:.1f} %") for r in result["layers"]]
    header = ("Layer (type)", "Forward ms", "Backward ms", "Total ms", "Share")
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(5)]

    def line(cells):
        return "  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(cells))

    rule = "─" * len(line(header))
    out = [f"batch {result['batch_size']}, mean of {result['iterations']} training steps "
           "(random data; softmax's time includes the fused loss)", rule, line(header), rule]
    out += [line(row) for row in rows]
    out += [rule, f"Total: {result['total_ms']:.3f} ms per batch, {result['samples_per_s']:,.0f} samples/s"]
    fused = [r["name"] for r in result["layers"] if r["fused"]]
    if fused:
        out.append(f"Fused: {', '.join(fused)} — each a conv and the 2 × 2 max-pool it feeds, run as one layer "
                   f"(the model file and its weights are unchanged)")
    return "\n".join(out)
