"""Data parallelism: a batch is cut into shards that go through the network side by side.

BLAS spreads each matrix multiply over the cores, but everything between the multiplies — im2col
copies, bias, ReLU, pooling, softmax — runs on one core. Cut the batch by samples instead, one
shard per core, each through its own copy of the layers with BLAS on one thread, and every
operation uses every core. Measured on 2 cores: training 16–20 % and inference 12–19 % faster than
one thread of Python over two of BLAS, and faster again with the shards in worker processes
(``yamlnet.workers``, Linux) than as threads here: two threads of one process slow each other by a
quarter.

**The cut is part of the run's arithmetic, not of the machine.** Batchnorm adds up its statistics
shard by shard and the model adds up the shards' gradients, so another cut gives other rounding.
``shards`` depends on the batch, the model's size and ``training.shards`` only — never on the
cores, the BLAS threads or what other threads are doing — so that a file and its seed give the same
weights alone, in a sweep, under Dask, on 1 core or 16. How many cores then run the shards
(``cores``) changes the speed only.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from functools import partial
from typing import Callable

import numpy as np

from yamlnet import signals

#: the variables that set a BLAS library's thread count in a process about to start
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def blas_environment(threads: int) -> dict[str, str]:
    """This process's environment with BLAS set to ``threads`` threads: for a process it starts."""
    return {**os.environ, **{name: str(threads) for name in THREAD_VARIABLES}}

#: a shard with less work than this (forward multiply-adds) costs more than it saves: handing a
#: shard over takes ~70 µs here, and small arrays hold the GIL. Measured on 2 cores, LeNet breaks
#: even at 32 samples a shard (7 M), gains 20 % at 64 (13 M); the 8 × 8 digits net loses at any size.
#: Runs record the value they were cut with (run.json), so that a resume cuts as they did.
MIN_SHARD_MACS = 10_000_000

_state: dict = {}
_blas_lock = threading.Lock()


def shards(n: int, macs_per_sample: int, most: int, min_shard_macs: int | None = None) -> list[tuple[int, int]]:
    """(start, stop) slices of a batch of n: at most ``most``, as even as can be, each with at least
    ``min_shard_macs`` (default MIN_SHARD_MACS) of work; [(0, n)] when the batch is too small to share."""
    least = MIN_SHARD_MACS if min_shard_macs is None else min_shard_macs
    count = max(1, min(most, n, n * macs_per_sample // max(least, 1)))
    bounds = [n * k // count for k in range(count + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _blas():
    """threadpoolctl's handle on NumPy's BLAS, or None; looked up once (it scans loaded libraries)."""
    if "blas" not in _state:
        try:
            from threadpoolctl import ThreadpoolController
            blas = ThreadpoolController().select(user_api="blas")
            _state["blas"] = blas if blas.lib_controllers else None
        except Exception:  # an unknown BLAS, or a platform threadpoolctl does not know
            _state["blas"] = None
    return _state["blas"]


def cores() -> int:
    """How many cores this process may keep busy: those it may run on, no more than BLAS's threads
    (the usual knob, ``OMP_NUM_THREADS=1``, says one). Speed only: the cut never depends on it."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    blas = _blas()
    if blas is not None:
        with _blas_lock:
            if _state.get("blas_users"):  # this process's shards hold BLAS at one thread right now
                return max(1, min(available, *_state["blas_found"]))
            return max(1, min(available, *(controller.num_threads for controller in blas.lib_controllers)))
    return available


@contextmanager
def one_blas_thread():
    """BLAS on one thread until the block ends. Shared by every thread that asks: the first in sets
    it, the last out restores what it found, even when a signal arrives on the way out."""
    blas = _blas()
    if blas is None:
        yield
        return
    entered = False
    try:
        with signals.deferred(), _blas_lock:
            if not _state.get("blas_users"):
                _state["blas_found"] = [controller.num_threads for controller in blas.lib_controllers]
                _set_blas_threads(blas, [1] * len(blas.lib_controllers))
            _state["blas_users"] = _state.get("blas_users", 0) + 1
            entered = True
        yield
    finally:
        if entered:
            with signals.deferred(), _blas_lock:
                _state["blas_users"] -= 1
                if not _state["blas_users"]:
                    _set_blas_threads(blas, _state.pop("blas_found"))


def _set_blas_threads(blas, counts: list[int]) -> None:
    """Set each BLAS library's thread count from whichever thread asks. (threadpoolctl ≥ 3.6 lets only
    the first thread that set a limit set another and silently ignores the rest, so that a limit set
    from one thread could never be undone from another.)"""
    for controller, count in zip(blas.lib_controllers, counts):
        getattr(controller, "_real_set_num_threads", controller.set_num_threads)(count)


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
    """Run the tasks at the same time on threads, BLAS on one thread each; their results in order.

    The calling thread runs the first task itself, so one shard costs no hand-off at all. A task
    that fails aborts ``reducers``, so that no other task waits forever for it.
    """
    if len(tasks) == 1:
        return [tasks[0]()]
    if reducers:
        tasks = [partial(_aborting, task, reducers) for task in tasks]
    with _blas_lock:
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
