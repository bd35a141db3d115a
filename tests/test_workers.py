"""Shards in worker processes: the same numbers as the threads, in training and at inference, and no
hang or stray process when a worker or the caller fails mid-batch."""

import os
import signal

import numpy as np
import pytest

import yamlnet
from yamlnet import parallel, workers

pytestmark = pytest.mark.skipif(not workers.ENABLED, reason="worker processes need fork (Linux)")

#: a graph with batchnorm (totals across the shards), dropout (draws made for the whole batch) and a
#: conv + max-pool pair (run fused)
NET = {
    "input": [8, 8, 2],
    "layers": [
        {"name": "c1", "type": "conv2d", "filters": 3, "size": 3, "padding": "same", "activation": "relu"},
        {"name": "p1", "type": "maxpool2d", "size": 2},
        {"name": "c2", "type": "conv2d", "filters": 3, "size": 3, "padding": "same"},
        {"name": "bn", "type": "batchnorm"},
        {"name": "sum", "type": "add", "inputs": ["bn", "p1"], "activation": "relu"},
        {"name": "flat", "type": "flatten"},
        {"name": "drop", "type": "dropout", "rate": 0.3},
        {"name": "fc", "type": "dense", "units": 4},
        {"name": "prediction", "type": "softmax"},
    ],
    "data": {"dataset": "shapes", "n_samples": 20},
    "training": {"dtype": "float64", "seed": 5},
}


@pytest.fixture(autouse=True)
def shards_and_a_deadline(monkeypatch):
    """Every batch cut into shards; a test that hangs fails after a minute instead of stalling CI."""
    monkeypatch.setattr(parallel, "MIN_SHARD_MACS", 1)

    def hung(signum, frame):
        raise TimeoutError("a worker test hung")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def steps(monkeypatch, processes: bool, n_workers: int, batches) -> list:
    """Train NET on the batches (x, y) with plain SGD; each step's loss, probabilities, gradients,
    batchnorm state, and then the outputs at inference (on the running statistics)."""
    monkeypatch.setattr(workers, "ENABLED", processes)
    monkeypatch.setattr(parallel, "n_workers", lambda: n_workers)
    model = yamlnet.build_model(NET)
    seen = []
    for x, y in batches:
        loss, probs = model.train_step_forward(x, y)
        seen.append((loss, probs, {key: grad.copy() for key, grad in model.gradients().items()},
                     {key: state.copy() for key, state in model.states().items()}))
        for key, param in model.parameters().items():
            param -= 0.1 * model.gradients()[key]
        seen.append(model.forward(x))
    assert (model._workers is not None) == processes
    model.close_workers()
    return seen


def batch(n: int, seed: int):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 8, 8, 2)), rng.integers(0, 4, n)


@pytest.mark.parametrize("n_workers", [2, 3])
def test_processes_give_exactly_what_threads_give(monkeypatch, n_workers):
    """Bit for bit, over steps that update the weights, and at inference after each; batches of
    other sizes too (a larger one forks the workers again with bigger buffers, one cut into fewer
    shards runs on threads)."""
    batches = [batch(12, 0), batch(12, 1), batch(30, 2), batch(2, 3), batch(12, 4)]
    threads = steps(monkeypatch, False, n_workers, batches)
    processes = steps(monkeypatch, True, n_workers, batches)
    for outputs, outputs2 in zip(threads[1::2], processes[1::2]):
        assert np.array_equal(outputs, outputs2)
    for (loss, probs, grads, states), (loss2, probs2, grads2, states2) in zip(threads[::2], processes[::2]):
        assert loss == loss2 and np.array_equal(probs, probs2)
        for key in grads:
            assert np.array_equal(grads[key], grads2[key]), key
        for key in states:
            assert np.array_equal(states[key], states2[key]), key


def first_step(monkeypatch):
    """A model (without dropout: the same weights give the same loss) after one step in processes."""
    monkeypatch.setattr(parallel, "n_workers", lambda: 2)
    model = yamlnet.build_model({**NET, "layers": [{**layer, "rate": 0} if layer["type"] == "dropout" else layer
                                                   for layer in NET["layers"]]})
    x, y = batch(12, 0)
    loss, _ = model.train_step_forward(x, y)
    return model, x, y, loss


def test_a_worker_that_dies_is_an_error_and_the_next_step_forks_a_new_one(monkeypatch):
    model, x, y, loss = first_step(monkeypatch)
    (pid,) = model._workers.pids
    os.kill(pid, signal.SIGKILL)
    while open(f"/proc/{pid}/stat").read().split(") ")[1][0] != "Z":  # dead (not yet reaped): its pipe ends closed
        pass
    with pytest.raises(workers.WorkerError, match="worker process stopped"):
        model.train_step_forward(x, y)
    assert model._workers.closed
    assert model.train_step_forward(x, y)[0] == loss  # the weights did not change
    assert model._workers.pids != [pid]
    model.close_workers()


def test_an_error_in_the_trainers_shard_ends_the_workers_waiting_for_it(monkeypatch):
    """The worker waits at batchnorm's barrier for the trainer, which fails first: no hang."""
    model, x, y, loss = first_step(monkeypatch)
    (pid,) = model._workers.pids
    original = model._train_shard

    def fails(*args):
        raise KeyboardInterrupt  # a second Ctrl-C

    monkeypatch.setattr(model, "_train_shard", fails)
    with pytest.raises(KeyboardInterrupt):
        model.train_step_forward(x, y)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # ended and reaped
    monkeypatch.setattr(model, "_train_shard", original)
    assert model.train_step_forward(x, y)[0] == loss
    model.close_workers()


def test_closing_or_dropping_a_model_ends_its_workers(monkeypatch):
    model, *_ = first_step(monkeypatch)
    (pid,) = model._workers.pids
    del model  # the finalizer closes the pipes and reaps the worker
    import gc
    gc.collect()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_a_process_forked_from_the_model_forks_workers_of_its_own(monkeypatch):
    """A user's own fork (multiprocessing) of a model with workers trains with new ones, and leaves
    the parent's alone."""
    model, x, y, loss = first_step(monkeypatch)
    (pid,) = model._workers.pids
    child = os.fork()
    if child == 0:
        status = 1
        try:
            status = 0 if model.train_step_forward(x, y)[0] == loss and model._workers.pids != [pid] else 3
            model.close_workers()  # reaps its worker (os._exit runs no finalizer)
        finally:
            os._exit(status)
    assert os.waitpid(child, 0)[1] == 0
    assert model.train_step_forward(x, y)[0] == loss and model._workers.pids == [pid]
    model.close_workers()


def test_where_fork_is_refused_the_shards_run_on_threads(monkeypatch):
    model, x, y, loss = first_step(monkeypatch)
    model.close_workers()

    def refused():
        raise BlockingIOError("fork: resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", refused)
    assert model.train_step_forward(x, y)[0] == loss
    assert model._workers is None and model._fork_failed


def test_a_fork_refused_midway_ends_the_workers_already_forked(monkeypatch):
    monkeypatch.setattr(parallel, "n_workers", lambda: 3)
    model = yamlnet.build_model(NET)
    forked, real_fork = [], os.fork

    def once():
        if forked:
            raise BlockingIOError("fork: resource temporarily unavailable")
        forked.append(real_fork())
        return forked[-1]

    monkeypatch.setattr(os, "fork", once)
    x, y = batch(12, 0)
    model.train_step_forward(x, y)  # on threads
    assert model._workers is None and len(forked) == 1
    with pytest.raises(ChildProcessError):
        os.waitpid(forked[0], os.WNOHANG)  # the first worker: ended and reaped


def test_workers_reaped_by_someone_else_close_quietly(monkeypatch):
    """With SIGCHLD ignored the kernel reaps workers itself; closing must not raise."""
    previous = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        model, *_ = first_step(monkeypatch)
        model.close_workers()
    finally:
        signal.signal(signal.SIGCHLD, previous)


def test_a_model_trained_from_another_thread_shards_on_threads(monkeypatch):
    import threading
    model, x, y, loss = first_step(monkeypatch)
    model.close_workers()
    losses = []
    thread = threading.Thread(target=lambda: losses.append(model.train_step_forward(x, y)[0]))
    thread.start()
    thread.join()
    assert losses == [loss] and model._workers is None
