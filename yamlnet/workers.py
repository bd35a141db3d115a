"""Shards in forked worker processes (Linux): the caller runs a batch's first shard, each other
shard runs in a process forked once per model — for training steps and for inference.

Why not threads (``yamlnet.parallel``): measured on 2 cores, two shards of resnet_small as threads
of one process each spend ~26 ms of CPU where one alone spends 19.5, while two processes do not
slow each other: a training step of resnet_small is 1.2–1.25× faster in processes, vgg's 1.1×,
LeNet's inference 1.4–1.6× (README, performance). Where fork is unavailable (Windows, and macOS, whose system
BLAS does not survive it) the threads remain.

Nothing is pickled or sent: the model and its workers share fixed buffers, mapped before the fork
(``mmap`` MAP_SHARED) — the weights and batchnorm's running statistics, each shard's inputs,
labels and dropout draws, its outputs or gradients, loss and probabilities, batchnorm's partial
sums — and two pipes per worker carry single bytes: train or infer, barrier, done. Every call
copies the weights in, so a worker never holds stale ones, whatever the caller did to its arrays.
A worker reads end-of-file when its model is gone and exits; the model reads end-of-file when a
worker died and raises; any error during a call ends the workers (they may be mid-batch) and the
next call forks new ones.
"""

from __future__ import annotations

import mmap
import os
import signal
import sys
import threading
import traceback
import warnings
import weakref
from typing import TYPE_CHECKING, Callable

import numpy as np

from yamlnet import parallel
from yamlnet.graph import run_forward

if TYPE_CHECKING:
    from yamlnet.model import Model

#: off: shards run as threads (tests set it to compare the two)
ENABLED = sys.platform.startswith("linux") and hasattr(os, "fork")


def available() -> bool:
    """Whether this call may fork workers: on Linux, from the main thread only — a program that
    trains from another thread (a server, a GUI, a Dask worker) may have threads inside BLAS or
    holding locks, which a fork copies held forever (Python 3.12 warns of it)."""
    return ENABLED and threading.current_thread() is threading.main_thread()

TRAIN, INFER, BARRIER, DONE = b"t", b"i", b"b", b"d"

#: pipe ends held by live worker groups: a new worker closes the other groups' ends, so that each
#: worker sees end-of-file as soon as its own model lets go of it
_OPEN_FDS: set[int] = set()


class WorkerError(RuntimeError):
    """A worker process stopped or fell out of step (its traceback is on stderr)."""


def _shared(shape: tuple, dtype) -> np.ndarray:
    """A zeroed array in memory that a forked child shares with its parent."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    return np.frombuffer(mmap.mmap(-1, max(count * dtype.itemsize, 1), mmap.MAP_SHARED), dtype, count).reshape(shape)


def _read(fd: int, expected: bytes) -> None:
    byte = os.read(fd, 1)
    if byte != expected:
        raise WorkerError("a shard's worker process stopped" if not byte else
                          f"a shard's worker is out of step (sent {byte!r}, expected {expected!r})")


def _write(fd: int, byte: bytes) -> None:
    try:
        os.write(fd, byte)
    except BrokenPipeError:
        raise WorkerError("a shard's worker process stopped") from None


class _Flat:
    """Some of a model's arrays (its layers' params, grads or state: ``kind``) as one shared vector."""

    def __init__(self, model: "Model", kind: str):
        self.kind = kind
        self.keys = [(index, key) for index, layer in enumerate(model.layers) for key in getattr(layer, kind)]
        sizes = [getattr(model.layers[index], kind)[key].size for index, key in self.keys]
        self.bounds = list(zip(np.cumsum([0] + sizes[:-1]), np.cumsum(sizes)))
        self.vector = _shared((sum(sizes),), model.dtype)

    def arrays(self, layers):
        for (index, key), (start, stop) in zip(self.keys, self.bounds):
            yield getattr(layers[index], self.kind)[key], self.vector[start:stop]

    def store(self, layers) -> None:
        for array, part in self.arrays(layers):
            part[...] = array.ravel()

    def load(self, layers) -> None:
        for array, part in self.arrays(layers):
            array[...] = part.reshape(array.shape)


class ShardWorkers:
    """Shards 1 … S − 1 of ``model``'s batches, each in its own forked process.

    ``capacity``: the most samples a worker's shard may hold (its buffers are fixed at the fork).
    """

    def __init__(self, model: "Model", n_shards: int, capacity: int):
        self.n_shards, self.capacity = n_shards, capacity
        self.weights, self.states = _Flat(model, "params"), _Flat(model, "state")
        self.dropouts = [index for index, layer in enumerate(model.layers)
                         if layer.type == "dropout" and layer.config["rate"] > 0]
        dtype = model.dtype
        self.shards = [{"x": _shared((capacity, *model.input_shape), dtype),
                        "y": _shared((capacity,), np.int64),
                        "n": _shared((2,), np.int64),  # this shard's samples, the whole batch's
                        "grads": _Flat(model, "grads"),
                        "loss": _shared((1,), np.float64),
                        "probs": _shared((capacity, *model.layers[model.logits_at].output_shape), dtype),
                        "out": _shared((capacity, *model.output_shape), dtype),
                        "noise": [_shared((capacity, *model.layers[index].input_shape), dtype)
                                  for index in self.dropouts]}
                       for _ in range(n_shards - 1)]
        width = max([2 * model.layers[index].channels + 1 for index in model._whole_batch_layers], default=1)
        self.parts = _shared((2, n_shards, width), dtype)  # batchnorm's partial sums, two rounds
        self.pids: list[int] = []
        self.down: list[int] = []  # model → worker k + 1
        self.up: list[int] = []    # worker k + 1 → model
        self.owner = os.getpid()  # a process forked from the owner must fork workers of its own
        self._pipes: list[int] = []  # the owner's ends of both
        self._finalizer = weakref.finalize(self, _end, self.owner, self.pids, self._pipes)
        self.reducer = PipeReducer(self)  # the model's own (shard 0's); each worker makes its own
        try:
            for shard in range(1, n_shards):
                self._fork(model, shard)
        except BaseException:  # (fork failed: no memory, too many processes) end those already forked
            self.close()
            raise

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        self._finalizer()

    def _fork(self, model: "Model", shard: int) -> None:
        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        with warnings.catch_warnings():  # Python ≥ 3.12 warns of fork with threads: the worker never uses them
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the worker: never returns into the caller's code
            status = 1
            try:
                for fd in _OPEN_FDS | {down_w, up_r}:
                    os.close(fd)
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the model's caller's to handle
                self.own_pipes = (down_r, up_w)
                self._serve(model, shard)
                status = 0
            except (BrokenPipeError, WorkerError):  # the model's side is gone mid-batch: nothing to say
                pass
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(status)
        os.close(down_r)
        os.close(up_w)
        self.pids.append(pid)
        self.down.append(down_w)
        self.up.append(up_r)
        self._pipes += down_w, up_r
        _OPEN_FDS.update((down_w, up_r))

    # -- in the worker -------------------------------------------------------------------
    def _serve(self, model: "Model", shard: int) -> None:
        parallel.one_blas_thread()  # for good: a worker runs one shard at a time
        replica = model._replicas[shard]
        reducer = PipeReducer(self)
        for index in model._whole_batch_layers:
            replica[index].reducer, replica[index].shard = reducer, shard
        buffers = self.shards[shard - 1]
        down, up = self.own_pipes
        while (command := os.read(down, 1)) in (TRAIN, INFER):  # else end-of-file: the model is gone
            self.weights.load(model.layers)  # the replica shares their params and state dicts
            n, batch_size = (int(value) for value in buffers["n"])
            x = buffers["x"][:n]
            if command == TRAIN:
                for index, noise in zip(self.dropouts, buffers["noise"]):
                    replica[index].noise = noise[:n]
                buffers["loss"][0], buffers["probs"][:n] = model._train_shard(
                    model.execution(True, replica), x, buffers["y"][:n], batch_size)
                buffers["grads"].store(replica)
            else:
                self.states.load(model.layers)
                buffers["out"][:n] = run_forward(model.execution(False, replica), model.graph, x, training=False)
            os.write(up, DONE)

    # -- in the caller -------------------------------------------------------------------
    def run(self, model: "Model", x: np.ndarray, y: np.ndarray | None, bounds: list[tuple[int, int]],
            first: Callable[[], object]) -> list:
        """One batch, cut at ``bounds``: ``first`` (shard 0) here, the others in the workers; with labels
        y a training step (every shard's (loss, probs); the model's grads the whole batch's), without
        them inference (every shard's outputs). On any error (a second Ctrl-C included) the workers
        are ended: they may be mid-batch."""
        try:
            self._start(model, x, y, bounds)
            with parallel.one_blas_thread():
                first_result = first()
            return [first_result] + self._finish(model, y is not None, bounds)
        except BaseException:
            self.close()
            raise

    def _start(self, model: "Model", x: np.ndarray, y: np.ndarray | None, bounds: list[tuple[int, int]]) -> None:
        self.weights.store(model.layers)
        if y is None:
            self.states.store(model.layers)
        for shard, (start, stop) in enumerate(bounds[1:], 1):
            buffers = self.shards[shard - 1]
            buffers["n"][:] = stop - start, len(x)
            buffers["x"][:stop - start] = x[start:stop]
            if y is not None:
                buffers["y"][:stop - start] = y[start:stop]
                for index, noise in zip(self.dropouts, buffers["noise"]):  # drawn by the model, as for threads
                    noise[:stop - start] = model._replicas[shard][index].noise
                    model._replicas[shard][index].noise = None
            _write(self.down[shard - 1], INFER if y is None else TRAIN)

    def _finish(self, model: "Model", training: bool, bounds: list[tuple[int, int]]) -> list:
        """Wait for the workers; their results, and in training their gradients added to the model's,
        in shard order (the sums the threads make)."""
        results = []
        for shard, (start, stop) in enumerate(bounds[1:], 1):
            _read(self.up[shard - 1], DONE)
            buffers = self.shards[shard - 1]
            if training:
                for grad, part in buffers["grads"].arrays(model.layers):
                    grad += part.reshape(grad.shape)
                results.append((float(buffers["loss"][0]), buffers["probs"][:stop - start].copy()))
            else:
                results.append(buffers["out"][:stop - start].copy())
        return results

    def barrier(self, shard: int) -> None:
        """Wait until every shard has reached this point (batchnorm's sums, each written to ``parts``)."""
        if shard == 0:
            for fd in self.up:
                _read(fd, BARRIER)
            for fd in self.down:
                _write(fd, BARRIER)
        else:
            down, up = self.own_pipes
            os.write(up, BARRIER)
            _read(down, BARRIER)


def _end(owner: int, pids: list[int], fds: list[int]) -> None:
    """Close a group's pipes and end its workers (idle ones exit on end-of-file; a busy one is
    killed); in a process forked from their owner, only close its copies of the pipes."""
    for fd in fds:
        _OPEN_FDS.discard(fd)
        os.close(fd)
    if os.getpid() != owner:
        return
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):  # reaped already (SIGCHLD ignored, os.wait elsewhere)
            pass


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
