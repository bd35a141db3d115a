"""Shards in worker processes: the same numbers as the threads, in training and at inference; and a
program that uses them never hangs, never keeps a stray process, a zombie or a descriptor, and keeps
its own signal handlers — whatever its threads, signals and children do."""

import gc
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import deadline_of

import yamlnet
from yamlnet import parallel, workers

pytestmark = pytest.mark.skipif(not workers.ENABLED, reason="worker processes need Linux")

#: a graph with batchnorm (totals across the shards), dropout (draws made for the whole batch), a
#: conv + max-pool pair (run fused) and separate activations (run in place)
NET = {
    "input": [8, 8, 2],
    "layers": [
        {"name": "c1", "type": "conv2d", "filters": 3, "size": 3, "padding": "same", "activation": "relu"},
        {"name": "p1", "type": "maxpool2d", "size": 2},
        {"name": "c2", "type": "conv2d", "filters": 3, "size": 3, "padding": "same"},
        {"name": "bn", "type": "batchnorm"},
        {"name": "bn_g", "type": "activation", "activation": "tanh"},
        {"name": "sum", "type": "add", "inputs": ["bn_g", "p1"]},
        {"name": "sum_g", "type": "activation", "activation": "relu"},
        {"name": "flat", "type": "flatten"},
        {"name": "drop", "type": "dropout", "rate": 0.3},
        {"name": "fc", "type": "dense", "units": 4},
        {"name": "prediction", "type": "softmax"},
    ],
    "data": {"dataset": "shapes", "n_samples": 20},
    "training": {"dtype": "float64", "seed": 5},
}


def with_shards(shards: int, config=NET) -> dict:
    return {**config, "training": {**config["training"], "shards": shards}}


@pytest.fixture(autouse=True)
def shards_and_a_deadline(monkeypatch):
    """Every batch cut into shards, workers on two cores whatever this machine has; a test that
    hangs fails after a minute instead of stalling CI."""
    monkeypatch.setattr(parallel, "MIN_SHARD_MACS", 1)
    monkeypatch.setattr(parallel, "cores", lambda: 2)
    with deadline_of(60):
        yield


def children() -> dict[int, str]:
    """This process's shard workers, live or zombie: pid → state (R, S, Z, …). (Other children, such as
    multiprocessing's resource tracker that Dask starts, are not ours to count.)"""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
                command = open(f"/proc/{entry}/cmdline").read()
            except OSError:
                continue
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if int(ppid) == os.getpid() and ("shard_worker" in command or state == "Z"):
                found[int(entry)] = state
    return found


def until(condition, what: str):
    """Wait for ``condition`` (the alarm above ends a wait that never ends)."""
    while not condition():
        time.sleep(0.005)
    return what


def steps(monkeypatch, processes: bool, shards: int, batches, config=NET, class_weights=None) -> list:
    """Train ``config`` on the batches (x, y) with plain SGD; each step's loss, probabilities, gradients,
    batchnorm state, and then the outputs at inference (on the running statistics)."""
    monkeypatch.setattr(workers, "ENABLED", processes)
    model = yamlnet.build_model(with_shards(shards, config))
    model.executor.loss.weights = class_weights
    seen = []
    for x, y in batches:
        loss, probs = model.train_step_forward(x, y)
        seen.append((loss, probs, {key: grad.copy() for key, grad in model.gradients().items()},
                     {key: state.copy() for key, state in model.states().items()}))
        for key, param in model.parameters().items():
            param -= 0.1 * model.gradients()[key]
        seen.append(model.forward(x))
    assert bool(model.shards.worker_pids) == processes
    model.close_workers()
    return seen


def batch(n: int, seed: int):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 8, 8, 2)), rng.integers(0, 4, n)


def assert_same(first: list, second: list) -> None:
    for outputs, outputs2 in zip(first[1::2], second[1::2]):
        assert np.array_equal(outputs, outputs2)
    for (loss, probs, grads, states), (loss2, probs2, grads2, states2) in zip(first[::2], second[::2]):
        assert loss == loss2 and np.array_equal(probs, probs2)
        for key in grads:
            assert np.array_equal(grads[key], grads2[key]), key
        for key in states:
            assert np.array_equal(states[key], states2[key]), key


BATCHES = [batch(12, 0), batch(12, 1), batch(30, 2), batch(2, 3), batch(12, 4)]


@pytest.mark.parametrize("shards", [2, 3])
def test_processes_give_exactly_what_threads_give(monkeypatch, shards):
    """Bit for bit, over steps that update the weights, and at inference after each; batches of
    other sizes too (a larger one starts the workers again with bigger buffers, one cut into fewer
    shards uses some of them)."""
    assert_same(steps(monkeypatch, False, shards, BATCHES), steps(monkeypatch, True, shards, BATCHES))


def test_a_smoothed_weighted_loss_is_the_same_in_processes_on_threads_and_whole(monkeypatch):
    """Each shard divides by the whole batch's total weight, so the cut changes nothing but the order of sums."""
    smoothed = {**NET, "training": {**NET["training"], "label_smoothing": 0.1}}
    weights = np.array([0.5, 2.0, 1.0, 1.5])
    in_processes = steps(monkeypatch, True, 2, BATCHES, smoothed, weights)
    assert_same(in_processes, steps(monkeypatch, False, 2, BATCHES, smoothed, weights))
    whole = steps(monkeypatch, False, 1, BATCHES[:1], smoothed, weights)
    assert in_processes[0][0] == pytest.approx(whole[0][0], rel=1e-6)
    assert in_processes[0][0] != steps(monkeypatch, False, 1, BATCHES[:1], smoothed)[0][0]  # the weights count


def test_on_one_core_the_shards_run_one_after_another_with_the_same_numbers(monkeypatch):
    """Without batchnorm nothing needs the shards to meet: on one core they run in turn on the caller's
    thread, and give what the workers give."""
    chain = {**NET, "layers": [layer for layer in NET["layers"] if layer["type"] != "batchnorm"]}  # (bn_g reads c2)
    in_processes = steps(monkeypatch, True, 2, BATCHES, chain)
    monkeypatch.setattr(parallel, "cores", lambda: 1)
    monkeypatch.setattr(parallel, "run", None)  # no thread at all
    assert_same(in_processes, steps(monkeypatch, False, 2, BATCHES, chain))


def first_step(monkeypatch, config=NET):
    """A model (without dropout: the same weights give the same loss) after one step in processes."""
    model = yamlnet.build_model({**config, "layers": [{**layer, "rate": 0} if layer["type"] == "dropout" else layer
                                                      for layer in config["layers"]]})
    x, y = batch(12, 0)
    loss, _ = model.train_step_forward(x, y)
    assert model.shards.worker_pids
    return model, x, y, loss


def test_a_worker_that_dies_is_replaced_then_threads_take_over_with_the_same_numbers(monkeypatch):
    model, x, y, loss = first_step(monkeypatch)
    for replaced in (True, False):
        pid = model.shards.worker_pids[0]
        os.kill(pid, signal.SIGKILL)
        until(lambda: pid not in children(), "the dead worker is reaped at once, before any call")
        with pytest.warns(workers.WorkerWarning, match="worker process stopped; " +
                          ("starting new ones" if replaced else "its shards run on threads")):
            assert model.train_step_forward(x, y)[0] == loss  # the weights did not change
        assert bool(model.shards.worker_pids) == replaced
    assert model.forward(x).shape == (12, 4) and children() == {}


def test_a_worker_killed_mid_batch_costs_nothing_but_time(monkeypatch):
    """Killed while the batch runs (or just before or after: the result must not depend on when)."""
    model, _, _, _ = first_step(monkeypatch)
    twin, _, _, _ = first_step(monkeypatch)
    x, y = batch(3000, 1)
    expected = twin.train_step_forward(x, y)
    model.train_step_forward(x, y)  # workers with room for this batch
    pid = model.shards.worker_pids[1]
    killer = threading.Timer(0.005, os.kill, (pid, signal.SIGKILL))
    killer.start()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", workers.WorkerWarning)
        got = model.train_step_forward(x, y)
    killer.join()
    assert got[0] == expected[0] and np.array_equal(got[1], expected[1])
    for key, grad in twin.gradients().items():
        assert np.array_equal(model.gradients()[key], grad), key


def test_an_interrupt_while_the_workers_run_ends_them(monkeypatch):
    """Ctrl-C (twice) while the caller waits for a batch: the workers, perhaps at a barrier, are
    ended and reaped; the next batch starts new ones and gets the same numbers."""
    model, x, y, loss = first_step(monkeypatch)
    pids = model.shards.worker_pids
    real_read = workers.read_byte

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(workers, "read_byte", interrupted)
    with pytest.raises(KeyboardInterrupt):
        model.train_step_forward(x, y)
    assert not any(pid in children() for pid in pids)
    monkeypatch.setattr(workers, "read_byte", real_read)
    assert model.train_step_forward(x, y)[0] == loss
    model.close_workers()


def test_dropping_a_model_ends_its_workers_without_the_cycle_collector(monkeypatch):
    gc.disable()
    try:
        model, *_ = first_step(monkeypatch)
        pids = model.shards.worker_pids
        fds = set(os.listdir("/proc/self/fd"))
        del model
        assert not any(pid in children() for pid in pids)
        assert set(os.listdir("/proc/self/fd")) < fds  # its pipes and memory closed
    finally:
        gc.enable()


def test_a_process_forked_from_the_model_starts_workers_of_its_own(monkeypatch):
    """A user's own fork (multiprocessing) of a model with workers trains with new ones, and leaves
    the parent's alone."""
    model, x, y, loss = first_step(monkeypatch)
    pids = model.shards.worker_pids
    child = os.fork()
    if child == 0:
        status = 1
        try:
            theirs = model.train_step_forward(x, y)[0] == loss
            status = 0 if theirs and model.shards.worker_pids != pids else 3
            model.close_workers()  # reaps its workers (os._exit runs no finalizer)
        finally:
            os._exit(status)
    assert os.waitpid(child, 0)[1] == 0
    assert model.train_step_forward(x, y)[0] == loss and model.shards.worker_pids == pids
    model.close_workers()


def test_where_workers_cannot_start_the_shards_run_on_threads(monkeypatch):
    model, x, y, loss = first_step(monkeypatch)
    model.close_workers()
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    with pytest.warns(workers.WorkerWarning, match="cannot start a worker process"):
        assert model.train_step_forward(x, y)[0] == loss
    with pytest.warns(workers.WorkerWarning, match="run on threads"):
        assert model.train_step_forward(x, y)[0] == loss
    assert not model.shards.worker_pids and children() == {}


def test_workers_reaped_by_someone_else_close_quietly(monkeypatch):
    """With SIGCHLD ignored the kernel reaps workers itself; closing must not raise."""
    previous = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        model, *_ = first_step(monkeypatch)
        pids = model.shards.worker_pids
        model.close_workers()
    finally:
        signal.signal(signal.SIGCHLD, previous)
    assert pids and not model.shards.worker_pids and not any(pid in children() for pid in pids)


def test_models_in_threads_use_workers_and_give_what_they_give_alone(monkeypatch):
    """Two models trained at once from two threads (a server, Dask's threaded workers): each gets
    exactly what it gets alone, and the threads' BLAS limits do not change anyone's cut."""
    alone = steps(monkeypatch, True, 2, BATCHES)
    results = {}

    def train(key):
        results[key] = steps(monkeypatch, True, 2, BATCHES)

    threads = [threading.Thread(target=train, args=(key,)) for key in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert_same(alone, results["a"])
    assert_same(alone, results["b"])


def test_a_worker_keeps_no_descriptor_and_no_handler_of_its_parent(monkeypatch):
    """A socket the application opened is not held by the workers; signals the parent handles are
    ignored there (a job manager signals every process; the parent's answer needs its workers), the
    others are at their defaults — none of the application's handlers ever runs in a worker."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        model, *_ = first_step(monkeypatch)
    finally:
        signal.signal(signal.SIGTERM, previous)
    pid = model.shards.worker_pids[0]
    targets = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    assert not any(target.startswith("socket:") for target in targets), targets
    assert len(targets) <= 3 + 3 + 1, targets  # stdin, stdout, stderr; its pipes; (the watchdog's poll)
    status = dict(line.split(":\t") for line in open(f"/proc/{pid}/status").read().splitlines() if ":\t" in line)
    ignored, caught = int(status["SigIgn"], 16), int(status["SigCgt"], 16)
    bit = lambda number: 1 << (number - 1)  # noqa: E731
    assert ignored & bit(signal.SIGTERM) and ignored & bit(signal.SIGINT)
    assert not (ignored | caught) & bit(signal.SIGUSR1) and not caught & bit(signal.SIGTERM)
    listener.close()
    model.close_workers()


def run_python(code: str, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def test_no_hang_when_another_thread_is_inside_blas():
    """The reported hang: a fork while another thread ran a multithreaded BLAS product deadlocked
    in OpenBLAS's fork handler. Workers are started fresh, never forked: it returns."""
    result = run_python("""
        import threading, numpy as np, yamlnet
        from yamlnet import parallel
        parallel.cores = lambda: 2
        a = np.random.rand(400, 400)
        threading.Thread(target=lambda: [a @ a for _ in iter(int, 1)], daemon=True).start()
        for seed in range(3):
            m = yamlnet.build_model("lenet", [f"training.seed={seed}"])
            p = m.predict_proba(np.zeros((256, 28, 28, 1), np.float32), 128, normalized=True)
            assert m.shards.worker_pids
            m.close_workers()
        print("returned", p.shape)
    """)
    assert result.returncode == 0, result.stderr
    assert "returned (256, 10)" in result.stdout


def test_workers_end_soon_after_their_parent_is_killed():
    """kill -9 of the program: its workers see their pipe hang up and exit, even mid-batch."""
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import numpy as np, yamlnet
        from yamlnet import parallel
        parallel.cores = lambda: 2
        m = yamlnet.build_model("lenet")
        m.predict_proba(np.zeros((128, 28, 28, 1), np.float32), 128, normalized=True)
        print(*m.shards.worker_pids, flush=True)
        while True:
            m.predict_proba(np.zeros((1024, 28, 28, 1), np.float32), 1024, normalized=True)
    """)], stdout=subprocess.PIPE, text=True)
    pids = [int(pid) for pid in process.stdout.readline().split()]
    assert pids
    process.kill()
    process.wait()

    def gone(pid):
        try:
            return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"  # exited, not yet reaped by init
        except OSError:
            return True

    until(lambda: all(gone(pid) for pid in pids), "the orphaned workers exit")


def test_a_storm_of_interrupts_leaves_no_process_zombie_or_descriptor():
    """Ctrl-C every 3–50 ms while a program trains, closes and starts workers again: whatever each
    interrupt cut short, no worker is left running or unreaped, no descriptor stays open, and the
    next steps give what an undisturbed model gives."""
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import os, select, signal, sys, numpy as np, yamlnet
        from yamlnet import parallel
        parallel.MIN_SHARD_MACS, parallel.cores = 1, lambda: 2
        config = %r
        config["layers"] = [{**layer, "rate": 0} if layer["type"] == "dropout" else layer for layer in config["layers"]]
        model = yamlnet.build_model(config)
        rng = np.random.default_rng(0)
        x, y = rng.standard_normal((12, 8, 8, 2)), rng.integers(0, 4, 12)
        fds = len(os.listdir("/proc/self/fd"))
        interrupted = steps = 0
        armed = False

        def ctrl_c(signum, frame):  # Ctrl-C inside yamlnet's calls; outside them the harness stays whole
            global armed
            if armed:
                armed = False
                raise KeyboardInterrupt

        signal.signal(signal.SIGINT, ctrl_c)
        print("ready", flush=True)
        while not select.select([sys.stdin], [], [], 0)[0]:  # until the storm is over
            try:
                armed = True
                model.train_step_forward(x, y)
                steps += 1
                if steps %% 2 == 0:
                    model.close_workers()
                armed = False
            except KeyboardInterrupt:
                interrupted += 1
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        calm = yamlnet.build_model(config)
        assert model.train_step_forward(x, y)[0] == calm.train_step_forward(x, y)[0] and model.shards.worker_pids
        model.close_workers(), calm.close_workers()
        mine = [e for e in os.listdir("/proc") if e.isdigit() and
                int(open(f"/proc/{e}/stat").read().rsplit(")", 1)[1].split()[1]) == os.getpid()]
        print(interrupted, len(mine), len(os.listdir("/proc/self/fd")) - fds, flush=True)
    """) % (NET,)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    rng = np.random.default_rng(7)
    for _ in range(150):
        process.send_signal(signal.SIGINT)
        time.sleep(rng.uniform(0.003, 0.05))
    stdout, _ = process.communicate("stop\n")
    assert process.returncode == 0
    interrupted, processes, descriptors = map(int, stdout.split())
    assert interrupted > 100 and processes == 0 and descriptors == 0  # no child at all, no descriptor more


def test_in_a_jupyter_kernel_with_a_background_numpy_thread():
    """A notebook: a background thread in NumPy, then a prediction that starts workers; no hang, no
    warning, no child in the kernel's process group (ipykernel signals those at shutdown and waits
    for them to vanish), and the kernel shuts down by itself, its workers with it."""
    from conftest import reference_module
    manager_module = reference_module("jupyter_client.manager")
    manager = manager_module.KernelManager(kernel_name="python3")
    manager.start_kernel(cwd=str(Path(__file__).resolve().parent.parent))
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        streams = {"stdout": "", "stderr": ""}

        def collect(message):
            if message["msg_type"] == "stream":
                streams[message["content"]["name"]] += message["content"]["text"]
            elif message["msg_type"] == "error":
                streams["stderr"] += "\n".join(message["content"]["traceback"])

        reply = client.execute_interactive(textwrap.dedent("""
            import os, threading, numpy as np, psutil, yamlnet
            from yamlnet import parallel
            parallel.cores = lambda: 2
            a = np.random.rand(400, 400)
            busy = threading.Event()
            threading.Thread(target=lambda: [a @ a for _ in iter(busy.is_set, True)], daemon=True).start()
            model = yamlnet.build_model("lenet")
            p = model.predict_proba(np.zeros((256, 28, 28, 1), np.float32), 128, normalized=True)
            busy.set()
            group = [c.pid for c in psutil.Process().children(recursive=True) if os.getpgid(c.pid) == os.getpgrp()]
            print(p.shape, group, *model.shards.worker_pids)
        """), timeout=120, output_hook=collect)
        assert reply["content"]["status"] == "ok", streams["stderr"]
        assert streams["stderr"] == ""
        words = streams["stdout"].split()
        assert words[:3] == ["(256,", "10)", "[]"], streams["stdout"]
        pids = [int(word) for word in words[3:]]
        assert pids
    finally:
        kernel = manager.provisioner.process
        client.stop_channels()
        manager.shutdown_kernel(now=False)
    assert kernel.returncode == 0  # it ended by itself, not killed after a wait for its children
    assert not any(os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
                   != "Z" for pid in pids)
