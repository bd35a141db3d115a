"""Training shards in forked worker processes (Linux): the trainer runs a batch's first shard, each
other shard runs in a process forked once per model.

Why not threads, as for inference (``yamlnet.parallel``): measured on 2 cores, two shards of
resnet_small as threads of one process each spend ~26 ms of CPU where one alone spends 19.5, while
two processes do not slow each other; a training step of resnet_small or vgg is 7–13 % faster in
processes (README, performance). Where fork is unavailable (Windows, and macOS, whose system
BLAS does not survive it) the threads remain.

Nothing is pickled or sent: the trainer and its workers share fixed buffers, mapped before the
fork (``mmap`` MAP_SHARED) — the weights, each shard's inputs, labels and dropout draws, its
gradients, loss and probabilities, batchnorm's partial sums — and two pipes per worker carry
single bytes: go, barrier, done. Every step copies the weights in, so a worker never holds stale
ones, whatever the trainer did to its arrays. A worker reads end-of-file when its trainer is gone
and exits; the trainer reads end-of-file when a worker died and raises; any error during a step
ends the workers (they may be mid-step) and the next step forks new ones.
"""

from __future__ import annotations

import mmap
import os
import signal
import sys
import traceback
import warnings
import weakref
from typing import TYPE_CHECKING, Callable

import numpy as np

from yamlnet import parallel

if TYPE_CHECKING:
    from yamlnet.model import Model

#: off: training shards run as threads (tests set it to compare the two)
ENABLED = sys.platform.startswith("linux") and hasattr(os, "fork")

GO, BARRIER, DONE = b"g", b"b", b"d"

#: pipe ends held by live worker groups: a new worker closes the other groups' ends, so that each
#: worker sees end-of-file as soon as its own trainer lets go of it
_OPEN_FDS: set[int] = set()


class WorkerError(RuntimeError):
    """A worker process stopped or fell out of step (its traceback is on stderr)."""


def _shared(shape: tuple, dtype) -> np.ndarray:
    """A zeroed array in memory that a forked child shares with its parent."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    return np.frombuffer(mmap.mmap(-1, max(size, 1), mmap.MAP_SHARED), dtype, int(np.prod(shape))).reshape(shape)


def _read(fd: int, expected: bytes) -> None:
    byte = os.read(fd, 1)
    if byte != expected:
        raise WorkerError("a training shard's worker process stopped" if not byte else
                          f"a training shard's worker is out of step (sent {byte!r}, expected {expected!r})")


class ShardWorkers:
    """Shards 1 … S − 1 of every training batch of ``model``, each in its own forked process.

    ``capacity``: the most samples a worker's shard may hold (its buffers are fixed at the fork).
    """

    def __init__(self, model: "Model", n_shards: int, capacity: int):
        self.n_shards, self.capacity = n_shards, capacity
        self.arrays = [(index, key) for index, layer in enumerate(model.layers) for key in layer.params]
        sizes = [model.layers[index].params[key].size for index, key in self.arrays]
        self.offsets = np.cumsum([0] + sizes)
        dtype = model.dtype
        self.weights = _shared((int(self.offsets[-1]),), dtype)
        self.dropouts = [index for index, layer in enumerate(model.layers)
                         if layer.type == "dropout" and layer.config["rate"] > 0]
        n_classes = model.layers[model.logits_at].output_shape
        self.shards = [{"x": _shared((capacity, *model.input_shape), dtype),
                        "y": _shared((capacity,), np.int64),
                        "n": _shared((2,), np.int64),  # this shard's samples, the whole batch's
                        "grads": _shared((int(self.offsets[-1]),), dtype),
                        "loss": _shared((1,), np.float64),
                        "probs": _shared((capacity, *n_classes), dtype),
                        "noise": [_shared((capacity, *model.layers[index].input_shape), dtype)
                                  for index in self.dropouts]}
                       for _ in range(n_shards - 1)]
        width = max([2 * model.layers[index].channels + 1 for index in model._whole_batch_layers], default=1)
        self.parts = _shared((2, n_shards, width), dtype)  # batchnorm's partial sums, two rounds
        self.pids: list[int] = []
        self.down: list[int] = []  # trainer → worker k + 1
        self.up: list[int] = []    # worker k + 1 → trainer
        for shard in range(1, n_shards):
            self._fork(model, shard)
        self._finalizer = weakref.finalize(self, _end, list(self.pids), self.down + self.up)
        self.reducer = PipeReducer(self)  # the trainer's (shard 0's); each worker makes its own

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def _fork(self, model: "Model", shard: int) -> None:
        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        with warnings.catch_warnings():  # Python ≥ 3.12 warns of fork with threads: the worker never uses them
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the worker: never returns into the trainer's code
            status = 1
            try:
                for fd in _OPEN_FDS | {down_w, up_r}:
                    os.close(fd)
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle
                self.down, self.up = {shard: down_r}, {shard: up_w}
                self._serve(model, shard)
                status = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(status)
        os.close(down_r)
        os.close(up_w)
        self.pids.append(pid)
        self.down.append(down_w)
        self.up.append(up_r)
        _OPEN_FDS.update((down_w, up_r))

    # -- in the worker -------------------------------------------------------------------
    def _serve(self, model: "Model", shard: int) -> None:
        parallel.one_blas_thread()  # for good: a worker runs one shard at a time
        replica = model._replicas[shard]
        reducer = PipeReducer(self)
        for index in model._whole_batch_layers:
            replica[index].reducer, replica[index].shard = reducer, shard
        run = model.execution(True, replica)
        buffers = self.shards[shard - 1]
        while os.read(self.down[shard], 1) == GO:  # end-of-file: the trainer is gone or done with us
            self._load_weights(model)
            n, batch_size = (int(value) for value in buffers["n"])
            for index, noise in zip(self.dropouts, buffers["noise"]):
                replica[index].noise = noise[:n]
            loss, probs = model._train_shard(run, buffers["x"][:n], buffers["y"][:n], batch_size)
            buffers["loss"][0], buffers["probs"][:n] = loss, probs
            grads = buffers["grads"]
            for (index, key), start, stop in zip(self.arrays, self.offsets[:-1], self.offsets[1:]):
                grads[start:stop] = replica[index].grads[key].ravel()
            os.write(self.up[shard], DONE)

    def _load_weights(self, model: "Model") -> None:
        for (index, key), start, stop in zip(self.arrays, self.offsets[:-1], self.offsets[1:]):
            array = model.layers[index].params[key]  # shared with the replica (one dict)
            array[...] = self.weights[start:stop].reshape(array.shape)

    # -- in the trainer ------------------------------------------------------------------
    def run(self, model: "Model", x: np.ndarray, y: np.ndarray, bounds: list[tuple[int, int]],
            first: Callable[[], tuple[float, np.ndarray]]) -> list[tuple[float, np.ndarray]]:
        """One training step of (x, y) cut at ``bounds``: ``first`` (shard 0) here, the others in the
        workers; every shard's (loss, probs), the model's grads the whole batch's. On any error
        (a second Ctrl-C included) the workers are ended: they may be mid-step."""
        try:
            self.start(model, x, y, bounds)
            with parallel.one_blas_thread():
                first_result = first()
            return [first_result] + self.finish(model, bounds)
        except BaseException:
            self.close()
            raise

    def start(self, model: "Model", x: np.ndarray, y: np.ndarray, bounds: list[tuple[int, int]]) -> None:
        """Hand shards 1 … S − 1 of the batch (x, y) to the workers, with the current weights and
        the dropout draws the model made for them (on its replicas, as for threads)."""
        for (index, key), start, stop in zip(self.arrays, self.offsets[:-1], self.offsets[1:]):
            self.weights[start:stop] = model.layers[index].params[key].ravel()
        for shard, (start, stop) in enumerate(bounds[1:], 1):
            buffers = self.shards[shard - 1]
            n = stop - start
            buffers["n"][:] = n, len(x)
            buffers["x"][:n], buffers["y"][:n] = x[start:stop], y[start:stop]
            for index, noise in zip(self.dropouts, buffers["noise"]):
                noise[:n] = model._replicas[shard][index].noise
                model._replicas[shard][index].noise = None
            os.write(self.down[shard - 1], GO)
        for index in model._whole_batch_layers:
            model.layers[index].reducer = self.reducer

    def finish(self, model: "Model", bounds: list[tuple[int, int]]) -> list[tuple[float, np.ndarray]]:
        """Wait for the workers; add their gradients to the model's, in shard order; their (loss, probs)."""
        results = []
        for shard, (start, stop) in enumerate(bounds[1:], 1):
            _read(self.up[shard - 1], DONE)
            buffers = self.shards[shard - 1]
            for (index, key), begin, end in zip(self.arrays, self.offsets[:-1], self.offsets[1:]):
                grad = model.layers[index].grads[key]
                grad += buffers["grads"][begin:end].reshape(grad.shape)
            results.append((float(buffers["loss"][0]), buffers["probs"][:stop - start].copy()))
        return results

    def barrier(self, shard: int) -> None:
        """Wait until every shard has reached this point (batchnorm's sums, each written to ``parts``)."""
        if shard == 0:
            for fd in self.up:
                _read(fd, BARRIER)
            for fd in self.down:
                os.write(fd, BARRIER)
        else:
            os.write(self.up[shard], BARRIER)
            _read(self.down[shard], BARRIER)

    def close(self) -> None:
        self._finalizer()


def _end(pids: list[int], fds: list[int]) -> None:
    """Close a group's pipes and end its workers (idle ones exit on end-of-file; a busy one is killed)."""
    for fd in fds:
        _OPEN_FDS.discard(fd)
        os.close(fd)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)


class PipeReducer:
    """``parallel.Reducer`` across processes: each shard writes its part to the shared ``parts``,
    waits at the workers' barrier, and sums every part in shard order (so the totals equal the
    threads'). The parts alternate between two rows for the reason given there."""

    def __init__(self, workers: ShardWorkers):
        self.workers, self.calls = workers, 0

    def total(self, shard: int, array: np.ndarray) -> np.ndarray:
        parts = self.workers.parts[self.calls % 2, :, :len(array)]
        self.calls += 1
        parts[shard] = array
        self.workers.barrier(shard)
        total = parts[0].copy()
        for part in parts[1:]:
            total += part
        return total

    def abort(self) -> None:
        pass
