"""Shards: a batch cut into shards that go through the network side by side — in worker processes
(``yamlnet.workers``) where there are some, else on threads (``yamlnet.parallel``) — with the same
numbers either way. The cut is the run's (``parallel.shards``), never the machine's.

``Shards`` holds what running them needs — the layers, their graph and execution, the config — and
never the model, so that a model no longer referenced is freed at once, its workers with it.
"""

from __future__ import annotations

import os
import warnings
from functools import partial

import numpy as np

from yamlnet import parallel, workers
from yamlnet.execution import Execution
from yamlnet.layers import Layer


class Shards:
    """Runs the batches of the network ``layers`` (wired by ``execution.graph``) of ``config``."""

    def __init__(self, layers: list[Layer], execution: Execution, config: dict):
        self.layers, self.execution, self.config = layers, execution, config
        self.name, self.dtype = config["name"], np.dtype(config["training"]["dtype"])
        self.input_shape, self.output_shape = tuple(config["input"]), layers[-1].output_shape
        self.logits_at = execution.logits_at
        #: the least work of a shard (``parallel.shards``); None: parallel.MIN_SHARD_MACS. A resumed run
        #: sets the value it was cut with.
        self.min_shard_macs: int | None = None
        self._macs_per_sample = sum(layer.macs() for layer in layers)
        self._meet = any(layer.needs_whole_batch for layer in layers)  # in training, the shards must meet
        self._replicas: list[list[Layer]] = [layers]  # one copy of the layers per shard, for threads
        self._workers: workers.ShardWorkers | None = None
        self._worker_failures = 0

    def cut(self, n: int) -> list[tuple[int, int]]:
        """The (start, stop) shards of a batch of n: ``training.shards`` and ``min_shard_macs``."""
        return parallel.shards(n, self._macs_per_sample, self.config["training"]["shards"], self.min_shard_macs)

    def run(self, x: np.ndarray, y: np.ndarray | None, training: bool) -> list:
        """One batch (normalized x; with labels y a training step): its shards' results in order — each
        one's (loss, probs) with labels, else its outputs — and with labels the layers' grads the whole
        batch's. A batch of one shard runs here. Dropout's draws are made here for the whole batch, so
        that they depend neither on the cut nor on which attempt ran it: a batch whose workers died
        runs again, on new ones, then on threads."""
        bounds = self.cut(len(x))
        if len(bounds) == 1:
            return [self.execution.train_step(self.layers, x, y, self.execution.loss.divisor(y)) if y is not None else
                    self.execution.forward(self.layers, x, training)]
        noise = {index: layer.draw_noise(len(x)) for index, layer in enumerate(self.layers)
                 if training and layer.draws_noise}
        if y is not None or not training:
            while (group := self._shard_workers(bounds)) is not None:
                try:
                    return group.run(x, y, bounds, noise)
                except workers.WorkerError as error:  # (the group is closed already)
                    self._worker_trouble(str(error))
        return self._run_on_threads(x, y, training, bounds, noise)

    def _run_on_threads(self, x, y, training, bounds, noise) -> list:
        """The shards as threads of this process (``parallel.run``), each through its own copy of the
        layers (the first shard's are the model's), batchnorm's copies sharing one reducer; on one
        core, where nothing needs them to meet, one after another instead."""
        while len(self._replicas) < len(bounds):
            self._replicas.append([layer.replica() for layer in self.layers])
        together = training and self._meet
        reducer = parallel.Reducer(len(bounds)) if together else None
        tasks = []
        for shard, (replica, (start, stop)) in enumerate(zip(self._replicas, bounds)):
            for index, layer in enumerate(replica):
                if layer.needs_whole_batch:
                    layer.reducer, layer.shard = reducer, shard
                if index in noise:
                    layer.noise = noise[index][start:stop]
            tasks.append(partial(self.execution.train_step, replica, x[start:stop], y[start:stop],
                                 self.execution.loss.divisor(y))
                         if y is not None else partial(self.execution.forward, replica, x[start:stop], training))
        try:
            if together or parallel.cores() > 1:
                results = parallel.run(tasks, (reducer,) if reducer is not None else ())
            else:  # one core: one after another, on this thread (the same numbers, without the hand-offs)
                results = [task() for task in tasks]
        finally:  # the first shard's layers are the model's own: leave them as a whole batch needs them
            for replica in self._replicas:
                for layer in replica:
                    if layer.needs_whole_batch:
                        layer.reducer, layer.shard = None, 0
                    if layer.draws_noise:
                        layer.noise = None
        if y is not None:
            for replica in self._replicas[1:len(bounds)]:  # each shard's gradient is its part of the batch mean's
                for layer, twin in zip(self.layers, replica):
                    for key, grad in layer.grads.items():
                        grad += twin.grads[key]
        return results

    def _shard_workers(self, bounds: list[tuple[int, int]]) -> workers.ShardWorkers | None:
        """The worker processes for a batch cut at ``bounds``, started at the first such batch (again for
        a larger one); None — run the shards as threads — where workers cannot run (not Linux), would
        not help (this process may use one core), or failed twice."""
        if not workers.ENABLED or self._worker_failures >= 2:
            return None
        cores = parallel.cores()
        if cores < 2:
            return None
        largest = max(stop - start for start, stop in bounds)
        group = self._workers
        if group is None or group.closed or group.owner != os.getpid() or largest > group.capacity \
                or len(bounds) > group.n_shards:
            self.close()  # (in a process forked from their owner: only its copies of the pipes)
            try:
                self._workers = workers.ShardWorkers(self, len(bounds), largest, max(1, cores // len(bounds)))
            except workers.WorkerError as error:
                self._worker_trouble(str(error))
                return None
        return self._workers

    def _worker_trouble(self, what: str) -> None:
        """A worker could not start or stopped: say so in one line and go on — on new workers the first
        time, on threads after that. The batch runs again from the start, so nothing is lost."""
        self.close()
        self._worker_failures += 1
        then = "starting new ones" if self._worker_failures < 2 else "its shards run on threads from now on"
        warnings.warn(workers.WorkerWarning(f"{self.name}: {what}; {then} (same results)"), stacklevel=5)

    @property
    def worker_pids(self) -> list[int]:
        """The process ids of the running workers (none: the shards run on threads, or not yet)."""
        group = self._workers
        return [] if group is None or group.closed else [process.pid for process in group.processes]

    def close(self) -> None:
        """End the worker processes, if any: the next cut batch starts new ones."""
        if self._workers is not None:
            self._workers.close()
            self._workers = None
