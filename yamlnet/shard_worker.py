"""The worker process's side of ``yamlnet.workers``: a fresh interpreter that builds the layers of a
config, then runs one shard of each batch it is handed until its model lets go of it.

    python -c "…; from yamlnet.shard_worker import main; main(MEMORY_FD, DOWN_FD, UP_FD, IGNORED)"
"""

from __future__ import annotations

import os
import select
import signal
import threading

import numpy as np

from yamlnet import kernels, workers
from yamlnet.execution import Execution, logits_index, mark_input_grads
from yamlnet.graph import Graph
from yamlnet.losses import CrossEntropy
from yamlnet.plan import make_layers


def main(memory: int, down: int, up: int, ignored: list[int]) -> None:
    """Serve shards; exit quietly when the model's side is gone (end-of-file, a broken pipe), with a
    traceback on stderr for anything else (a bug: the model then carries on without workers)."""
    try:
        _reset_signals(ignored)
        threading.Thread(target=_exit_when_orphaned, args=(down,), daemon=True).start()
        message = workers.read_message(down)
        arrays = workers.map_arrays(memory, message["layout"])
        os.close(memory)  # the mapping stays
        _serve(message["config"], message["shard"], arrays, down, up)
    except (workers.WorkerError, BrokenPipeError):  # the model's side went away: nothing to say
        pass
    os._exit(0)


def _reset_signals(ignored: list[int]) -> None:
    """Every signal to its default, but those the parent handles, which are ignored: a job manager
    signals every process of the job, and the parent's answer (finish the batch, write a checkpoint)
    needs its workers alive. A fresh interpreter also starts with the parent's signal mask: clear it."""
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for number in workers.signals.CATCHABLE:
        signal.signal(number, signal.SIG_IGN if number in ignored else signal.SIG_DFL)


def _exit_when_orphaned(down: int) -> None:
    """End this process as soon as the pipe from the model hangs up (the model closed it, or its
    process died), even in the middle of a shard."""
    poller = select.poll()
    poller.register(down, select.POLLHUP)
    while True:
        for _, event in poller.poll():
            if event & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                os._exit(0)


class _PipeReducer:
    """``parallel.Reducer`` across processes: each shard writes its part to the shared ``parts``,
    meets the others at the model's barrier, and sums every part in shard order (so the totals equal
    the threads'). The parts alternate between two rows for the reason given there."""

    def __init__(self, parts, counts, down: int, up: int):
        self.parts, self.counts, self.down, self.up, self.calls = parts, counts, down, up, 0

    def total(self, shard: int, array):
        parts = self.parts[self.calls % 2, :int(self.counts[0]), :len(array)]
        self.calls += 1
        parts[shard] = array
        workers.write_byte(self.up, workers.BARRIER)
        if workers.read_byte(self.down) != workers.BARRIER:
            raise workers.WorkerError("out of step at a barrier")
        total = parts[0].copy()
        for part in parts[1:]:
            total += part
        return total


def _serve(config: dict, shard: int, arrays: dict, down: int, up: int) -> None:
    """The worker's loop: the layers of ``config`` (their weights, gradients and batchnorm state the shared
    arrays themselves), run on this shard of each batch the model hands out."""
    kernels.keep_freed_memory()
    layers = make_layers(config)
    graph = Graph.of(layers)
    for layer in layers:  # (the weights are the model's, in shared memory: any start will do)
        layer.build(layer.input_shape, np.random.default_rng(0), np.dtype(config["training"]["dtype"]))
    mark_input_grads(layers, graph)
    execution = Execution(graph, logits_index(layers, graph), CrossEntropy(config["training"]["label_smoothing"]))
    # the weights and batchnorm's state as the model wrote them, this shard's gradients where the model reads
    # them: the layers work on the shared arrays themselves (only shard 0 updates the state)
    workers.Flat(layers, "params", arrays["weights"]).bind()
    workers.Flat(layers, "state", arrays["state"]).bind()
    workers.Flat(layers, "grads", arrays[f"{shard}/grads"]).bind()
    reducer = _PipeReducer(arrays["parts"], arrays["counts"], down, up)
    for layer in layers:
        if layer.needs_whole_batch:
            layer.reducer, layer.shard = reducer, shard
    noisy = [index for index, layer in enumerate(layers) if layer.draws_noise]
    workers.write_byte(up, workers.READY)
    while (command := os.read(down, 1)) in (workers.TRAIN, workers.INFER):  # else end-of-file: the model is gone
        n = int(arrays["counts"][2 + shard])
        x = arrays[f"{shard}/x"][:n]
        if command == workers.TRAIN:
            for index in noisy:
                layers[index].noise = arrays[f"{shard}/noise/{index}"][:n]
            reducer.calls = 0
            divisor, weighted = arrays["loss"][:2]
            execution.loss.weights = arrays["loss"][2:].copy() if weighted else None
            loss, arrays[f"{shard}/probs"][:n] = execution.train_step(layers, x, arrays[f"{shard}/y"][:n], divisor)
            arrays[f"{shard}/loss"][0] = loss
        else:
            arrays[f"{shard}/out"][:n] = execution.forward(layers, x, training=False)
        workers.write_byte(up, workers.DONE)
