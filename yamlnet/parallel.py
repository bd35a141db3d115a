"""Data parallelism on threads: a batch is cut into shards that go through the network side by side.

BLAS spreads each matrix multiply over the cores, but everything between the multiplies — im2col
copies, bias, ReLU, pooling, softmax — runs on one core. Cut the batch by samples instead, one
shard per core, each through its own copy of the layers (sharing the weights) with BLAS on one
thread, and every operation uses every core: NumPy releases the GIL inside its loops. Measured on
2 cores: training 16–20 % and inference 12–19 % faster than one thread of Python over two of BLAS.

On Linux, shards 1 … S − 1 of training steps and of inference run in worker processes instead
(``yamlnet.workers``): as threads, two shards slow each other down by a quarter. The cut, the
replicas, the dropout draws and the batchnorm totals are the same either way, and so are the numbers.

The number of shards is BLAS's own thread count, so the usual knob (``OMP_NUM_THREADS=1``,
``OPENBLAS_NUM_THREADS``) sets both; where threadpoolctl cannot steer the BLAS, or BLAS has more
than MAX_SHARDS threads, batches run whole.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import nullcontext
from functools import partial
from typing import Callable

import numpy as np

#: a shard with less work than this (forward multiply-adds) costs more than it saves: waking a
#: thread takes ~70 µs here, and small arrays hold the GIL. Measured on 2 cores, LeNet breaks even
#: at 32 samples a shard (7 M), gains 20 % at 64 (13 M); the 8 × 8 digits net loses at any size.
MIN_SHARD_MACS = 10_000_000
#: with more BLAS threads than this, batches run whole, on BLAS's threads alone: every shard holds
#: the GIL for its Python (~0.1 ms a forward pass), so many shards would queue for it — and only
#: 2 cores were there to measure on
MAX_SHARDS = 4

_state: dict = {}


def _blas():
    """threadpoolctl's handle on NumPy's BLAS, or None; looked up once (it scans loaded libraries)."""
    if "blas" not in _state:
        try:
            from threadpoolctl import ThreadpoolController
            blas = ThreadpoolController().select(user_api="blas")
            _state["blas"] = blas if blas.lib_controllers else None
        except Exception:  # an unknown BLAS, or a platform threadpoolctl does not know: run whole
            _state["blas"] = None
    return _state["blas"]


def n_workers() -> int:
    blas = _blas()
    return max(1, min(controller.num_threads for controller in blas.lib_controllers)) if blas else 1


def one_blas_thread():
    """BLAS on one thread from now on, or until the returned context exits."""
    blas = _blas()
    return blas.limit(limits=1) if blas else nullcontext()


def shards(n: int, macs_per_sample: int) -> list[tuple[int, int]]:
    """(start, stop) slices of a batch of n: one per BLAS thread, as even as can be, each with at
    least MIN_SHARD_MACS of work; [(0, n)] when the batch is too small to share."""
    workers = n_workers()
    if workers > MAX_SHARDS:
        return [(0, n)]
    count = max(1, min(workers, n, n * macs_per_sample // MIN_SHARD_MACS))
    bounds = [n * k // count for k in range(count + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


class Reducer:
    """Adds up small arrays across the shards of one batch, which run side by side (batchnorm's
    whole-batch statistics): every shard gets the same total, summed in shard order.

    One barrier wait per total (each costs ~60 µs here): the parts alternate between two lists,
    so a shard that hurries on to the next total never overwrites a part another shard is still
    reading — to come back to this list it must pass the next barrier, which waits for that shard.
    """

    def __init__(self, parts: int):
        self._parts: list[list] = [[None] * parts, [None] * parts]
        self._calls = [0] * parts  # totals each shard has asked for
        self._barrier = threading.Barrier(parts)

    def total(self, shard: int, array: np.ndarray) -> np.ndarray:
        parts = self._parts[self._calls[shard] % 2]
        self._calls[shard] += 1
        parts[shard] = array
        self._barrier.wait()
        total = parts[0].copy()
        for part in parts[1:]:
            total += part
        return total

    def abort(self) -> None:
        """Free the shards waiting here when another shard failed (they raise BrokenBarrierError)."""
        self._barrier.abort()


def run(tasks: list[Callable[[], object]], reducers: tuple[Reducer, ...] = ()) -> list:
    """Run the tasks at the same time, BLAS on one thread each; their results in order.

    The calling thread runs the first task itself, so one shard costs no hand-off at all. A task
    that fails aborts ``reducers``, so that no other task waits forever for it.
    """
    if len(tasks) == 1:
        return [tasks[0]()]
    if reducers:
        tasks = [partial(_aborting, task, reducers) for task in tasks]
    if _state.get("pool_size", 0) < len(tasks) - 1:
        if "pool" in _state:
            _state["pool"].shutdown(wait=False)
        _state["pool"] = ThreadPoolExecutor(len(tasks) - 1, thread_name_prefix="yamlnet")
        _state["pool_size"] = len(tasks) - 1
    pool = _state["pool"]
    with one_blas_thread():
        futures = [pool.submit(task) for task in tasks[1:]]
        try:
            first = tasks[0]()
        except threading.BrokenBarrierError:  # another shard failed first: raise its error, not this echo
            wait(futures)
            for future in futures:
                if future.exception() and not isinstance(future.exception(), threading.BrokenBarrierError):
                    raise future.exception() from None
            raise
        finally:
            wait(futures)  # never leave a shard running on layers the caller may touch next
        return [first] + [future.result() for future in futures]


def _aborting(task: Callable[[], object], reducers: tuple[Reducer, ...]):
    try:
        return task()
    except BaseException:
        for reducer in reducers:
            reducer.abort()
        raise
