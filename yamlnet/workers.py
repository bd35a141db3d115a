"""Shards in worker processes (Linux): every shard of a cut batch (``yamlnet.parallel``) runs in a
worker process of its own, for training steps and for inference; the caller hands the work out,
meets the shards at batchnorm's totals, and adds their gradients up in shard order.

Why processes: on 2 cores, two shards of resnet_small as threads of one process each spend ~26 ms
of CPU where one alone spends 19.5, while two processes do not slow each other (CHANGELOG.md,
round two). Where workers cannot run (not Linux, a single core, workers that could not start or
died twice) the model runs its shards on threads instead, with the same numbers.

**Started fresh, never forked.** A worker is a new interpreter (``subprocess``: vfork and exec),
not a copy of the caller. A fork copies the caller's locks as they stand, and OpenBLAS's fork
handler waits for its own threads: with another thread inside BLAS the fork never returns. A fresh
interpreter holds none of that: no threads, no locks, no signal handlers of the application, no
file descriptor but its own (``close_fds``), BLAS on the threads it is given, and its own process
group, so that signals meant for the application's group (a terminal's Ctrl-C, a notebook
kernel's clean-up) leave it alone.

**What a worker gets is what it runs**: the resolved config as JSON, its shard number, and one
anonymous shared-memory file (``memfd``) laid out as named arrays — the weights and batchnorm's
running statistics (copied in at every call, so a worker never holds stale ones), each shard's
inputs, labels and dropout draws, its gradients, loss, probabilities or outputs, and batchnorm's
partial sums. Two pipes per worker carry single bytes: train or infer, barrier, done. Nothing is
pickled.

**Lifetime.** Workers belong to their model: they end when it is closed or unreachable (no cycle
holds it), at interpreter exit, and within moments of their parent's death (a worker's watchdog
thread sees its pipe hang up). A thread per worker waits for its exit, so that a worker that dies
is reaped at once, never left a zombie. Starting and ending workers hold signals back
(``signals.deferred``), so that no interrupt leaves one half-started or unreaped. Any error in a
call ends the group (its workers may be mid-batch); the model starts a new one or uses threads.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import subprocess
import sys
import threading
import weakref
from pathlib import Path
import numpy as np

from yamlnet import parallel, signals
from yamlnet.errors import YamlnetWarning

#: off: shards run as threads (tests set it to compare the two)
ENABLED = sys.platform.startswith("linux") and hasattr(os, "memfd_create")

TRAIN, INFER, BARRIER, DONE, READY = b"t", b"i", b"b", b"d", b"r"
_ALIGN = 64
_ROOT = str(Path(__file__).resolve().parent.parent)  # where the worker imports yamlnet from: here


class WorkerError(RuntimeError):
    """A worker process could not start, stopped, or fell out of step (its traceback, if any, is on
    stderr). Never a user's mistake: the model says so in a warning and carries on without it."""


class WorkerWarning(YamlnetWarning):
    """A model's worker processes stopped or could not start; it carries on, with the same numbers."""


# -- shared memory ---------------------------------------------------------------------------
def layout(net, n_shards: int, capacity: int) -> list[tuple[str, tuple, str]]:
    """The named arrays (name, shape, dtype) a group of ``n_shards`` workers of the network ``net``
    (``yamlnet.shards.Shards``: its layers, config and shapes) shares, each shard up to ``capacity`` samples."""
    dtype = net.dtype.str
    sizes = {kind: sum(value.size for layer in net.layers for value in getattr(layer, kind).values())
             for kind in ("params", "state")}
    width = max([layer.reduction_size for layer in net.layers if layer.needs_whole_batch], default=1)
    arrays = [("weights", (sizes["params"],), dtype), ("state", (sizes["state"],), dtype),
              ("counts", (n_shards + 2,), "<i8"),  # the shards in this call, the batch size, each shard's samples
              # the loss: the whole batch's divisor, whether there are class weights, and those weights
              ("loss", (2 + net.layers[net.logits_at].output_shape[-1],), "<f8"),
              ("parts", (2, n_shards, width), dtype)]  # batchnorm's partial sums, two rounds
    for shard in range(n_shards):
        arrays += [(f"{shard}/x", (capacity, *net.input_shape), dtype), (f"{shard}/y", (capacity,), "<i8"),
                   (f"{shard}/grads", (sizes["params"],), dtype), (f"{shard}/loss", (1,), "<f8"),
                   (f"{shard}/probs", (capacity, *net.layers[net.logits_at].output_shape), dtype),
                   (f"{shard}/out", (capacity, *net.output_shape), dtype)]
        arrays += [(f"{shard}/noise/{index}", (capacity, *layer.input_shape), dtype)
                   for index, layer in enumerate(net.layers) if layer.draws_noise]
    return arrays


def map_arrays(fd: int, spec: list) -> dict[str, np.ndarray]:
    """The arrays of ``spec`` (``layout``) over the shared-memory file ``fd``, which is sized to fit."""
    offsets, total = [], 0
    for _, shape, dtype in spec:
        offsets.append(total)
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        total += -(-size // _ALIGN) * _ALIGN
    if os.fstat(fd).st_size < total:
        os.ftruncate(fd, total)
    memory = mmap.mmap(fd, max(total, 1), mmap.MAP_SHARED)
    return {name: np.frombuffer(memory, dtype, int(np.prod(shape, dtype=np.int64)), offset).reshape(shape)
            for (name, shape, dtype), offset in zip(spec, offsets)}


class Flat:
    """Some of a model's arrays (its layers' params, grads or state: ``kind``) over one shared vector."""

    def __init__(self, layers, kind: str, vector: np.ndarray):
        self.layers, self.kind, self.vector = layers, kind, vector

    def parts(self):
        """(array, its part of the vector), in layer order."""
        start = 0
        for layer in self.layers:
            for array in getattr(layer, self.kind).values():
                yield array, self.vector[start:start + array.size]
                start += array.size

    def store(self) -> None:
        for array, part in self.parts():
            part[...] = array.ravel()

    def load(self) -> None:
        for array, part in self.parts():
            array[...] = part.reshape(array.shape)

    def bind(self) -> None:
        """Make the layers' arrays views of the vector, so that nothing is copied in or out (a worker's
        layers: their params, grads and state are updated in place, never replaced)."""
        start = 0
        for layer in self.layers:
            arrays = getattr(layer, self.kind)
            for key, array in arrays.items():
                arrays[key] = self.vector[start:start + array.size].reshape(array.shape)
                start += array.size


# -- pipes -----------------------------------------------------------------------------------
def read_byte(fd: int) -> bytes:
    byte = os.read(fd, 1)
    if not byte:
        raise WorkerError("a shard's worker process stopped")
    return byte


def write_byte(fd: int, byte: bytes) -> None:
    try:
        os.write(fd, byte)
    except (BrokenPipeError, ConnectionResetError):
        raise WorkerError("a shard's worker process stopped") from None


def write_message(fd: int, message: dict) -> None:
    data = json.dumps(message).encode()
    data = struct.pack("<Q", len(data)) + data
    while data:
        try:
            data = data[os.write(fd, data):]
        except BrokenPipeError:
            raise WorkerError("a shard's worker process stopped before it started") from None


def read_message(fd: int) -> dict:
    def exactly(count: int) -> bytes:
        chunks = b""
        while len(chunks) < count:
            chunk = os.read(fd, count - len(chunks))
            if not chunk:
                raise WorkerError("the model's side closed before the worker started")
            chunks += chunk
        return chunks

    return json.loads(exactly(struct.unpack("<Q", exactly(8))[0]))


# -- the caller's side -----------------------------------------------------------------------
class ShardWorkers:
    """``n_shards`` worker processes for the shards of ``net`` (``yamlnet.shards.Shards``: a network's
    layers, config and shapes), each holding up to ``capacity`` samples (their buffers are fixed when
    they start), each with BLAS on ``blas_threads`` threads."""

    def __init__(self, net, n_shards: int, capacity: int, blas_threads: int = 1):
        self.n_shards, self.capacity = n_shards, capacity
        self.loss = net.execution.loss  # (its divisor and class weights go out with every training batch)
        self.owner = os.getpid()  # a process forked from the owner starts workers of its own
        self.processes: list[subprocess.Popen] = []
        self.down: list[int] = []  # model → worker
        self.up: list[int] = []    # worker → model
        self._fds: list[int] = []  # every descriptor the group holds
        self._finalizer = weakref.finalize(self, _end, self.owner, self.processes, self._fds)
        try:
            spec = layout(net, n_shards, capacity)
            with signals.deferred():
                memory = os.memfd_create("yamlnet-shards")
                self._fds.append(memory)
            self.arrays = map_arrays(memory, spec)
            self.weights = Flat(net.layers, "params", self.arrays["weights"])
            self.state = Flat(net.layers, "state", self.arrays["state"])
            self.grads = [Flat(net.layers, "grads", self.arrays[f"{shard}/grads"]) for shard in range(n_shards)]
            for shard in range(n_shards):
                self._start(shard, memory, blas_threads)
                write_message(self.down[shard], {"config": net.config, "shard": shard, "layout": spec})
            for fd in self.up:
                if read_byte(fd) != READY:
                    raise WorkerError("a shard's worker is out of step at its start")
        except BaseException as error:  # end those already started, whatever stopped the rest
            self.close()
            if isinstance(error, OSError):
                raise WorkerError(f"cannot start a worker process: {error}") from None
            raise

    def _start(self, shard: int, memory: int, blas_threads: int) -> None:
        environment = parallel.blas_environment(blas_threads)
        code = (f"import sys; sys.path[0] = {_ROOT!r}; from yamlnet.shard_worker import main; "
                f"main({memory}, %d, %d, {[int(number) for number in signals.handled()]!r})")
        with signals.deferred():  # a process started is a process recorded, whatever arrives meanwhile
            down_r, down_w = os.pipe()
            up_r, up_w = os.pipe()
            self._fds += down_w, up_r
            try:
                # (-W ignore: what loading yamlnet had to say — a plugin that failed — the caller has said)
                process = subprocess.Popen([sys.executable, "-W", "ignore", "-c", code % (down_r, up_w)],
                                           env=environment, stdin=subprocess.DEVNULL, pass_fds=(memory, down_r, up_w),
                                           close_fds=True, start_new_session=True)
            finally:
                os.close(down_r)
                os.close(up_w)
            self.processes.append(process)
            self.down.append(down_w)
            self.up.append(up_r)
        # reaped the moment it exits, however it ends: never a zombie beside a live caller
        threading.Thread(target=_reap, args=(process,), name="yamlnet-reaper", daemon=True).start()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        self._finalizer()

    def run(self, x: np.ndarray, y: np.ndarray | None, bounds: list[tuple[int, int]],
            noise: dict[int, np.ndarray]) -> list:
        """One batch, cut at ``bounds`` (at most ``n_shards`` shards, each at most ``capacity``): with
        labels y a training step — every shard's (loss, probs), the model's grads and batchnorm state
        the whole batch's —, without them inference — every shard's outputs. ``noise``: dropout's
        draws for the whole batch. On any error (an interrupt included) the group is ended."""
        try:
            self._hand_out(x, y, bounds, noise)
            self._meet(len(bounds))
            return self._collect(y is not None, bounds)
        except BaseException:
            self.close()
            raise

    def _hand_out(self, x, y, bounds, noise) -> None:
        arrays = self.arrays
        self.weights.store()
        self.state.store()
        arrays["counts"][:2] = len(bounds), len(x)
        if y is not None:
            arrays["loss"][:2] = self.loss.divisor(y), self.loss.weights is not None
            if self.loss.weights is not None:
                arrays["loss"][2:] = self.loss.weights
        for shard, (start, stop) in enumerate(bounds):
            arrays["counts"][2 + shard] = stop - start
            arrays[f"{shard}/x"][:stop - start] = x[start:stop]
            if y is not None:
                arrays[f"{shard}/y"][:stop - start] = y[start:stop]
                for index, draws in noise.items():
                    arrays[f"{shard}/noise/{index}"][:stop - start] = draws[start:stop]
        for shard in range(len(bounds)):
            write_byte(self.down[shard], INFER if y is None else TRAIN)

    def _meet(self, active: int) -> None:
        """Wait until the active workers are done, letting them through each barrier together (every
        shard passes the same barriers: the same layers, in the same order)."""
        while True:
            said = {read_byte(self.up[shard]) for shard in range(active)}
            if said == {DONE}:
                return
            if said != {BARRIER}:
                raise WorkerError(f"the shards' workers are out of step (they sent {sorted(said)})")
            for shard in range(active):
                write_byte(self.down[shard], BARRIER)

    def _collect(self, training: bool, bounds) -> list:
        """The shards' results; in training their gradients added in shard order (the sums the
        threads make) and shard 0's batchnorm state (the one that updates it)."""
        arrays = self.arrays
        if not training:
            return [arrays[f"{shard}/out"][:stop - start].copy() for shard, (start, stop) in enumerate(bounds)]
        for (grad, part), *others in zip(*(flat.parts() for flat in self.grads[:len(bounds)])):
            grad[...] = part.reshape(grad.shape)
            for _, other in others:
                grad += other.reshape(grad.shape)
        self.state.load()
        return [(float(arrays[f"{shard}/loss"][0]), arrays[f"{shard}/probs"][:stop - start].copy())
                for shard, (start, stop) in enumerate(bounds)]




def _reap(process: subprocess.Popen) -> None:
    try:
        process.wait()
    except ChildProcessError:  # reaped by someone else (SIGCHLD ignored, os.wait elsewhere)
        pass


def _end(owner: int, processes: list[subprocess.Popen], fds: list[int]) -> None:
    """Close a group's descriptors and end its workers (killed: they may be mid-batch, and hold
    nothing worth saving), waiting until each is reaped. In a process forked from the owner, only
    close its copies of the descriptors: the workers are the owner's."""
    with signals.deferred():
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
        fds.clear()
        if os.getpid() != owner:
            return
        for process in processes:
            try:
                process.kill()
            except OSError:
                pass
        for process in processes:
            _reap(process)
