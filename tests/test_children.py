"""Child processes a few at a time (what sweeps and searches run): a stop signal passed on once, no new
child after it, a second one passed on too, every child waited for."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from yamlnet.children import Stopped, run_each

# a child that counts the stop signals it gets for a while after the first (as a run finishing its
# batch and writing a checkpoint would), then says how many came; unsignalled it ends on its own
CHILD = r"""
import signal, sys, time, pathlib
seen = []
signal.signal(signal.SIGINT, lambda number, frame: seen.append(time.monotonic()))
pathlib.Path(sys.argv[1]).write_text("started")
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end and not (seen and time.monotonic() > seen[0] + 0.4):
    time.sleep(0.01)
print(len(seen))
sys.exit(130 if seen else 0)
"""


def _pool(tmp_path, count, seconds):
    """run_each over ``count`` children; what it started, in order, and how each ended."""
    started, ended = [], []

    def start(number):
        started.append(number)
        return subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / f"{number}.started"), str(seconds)],
                                stdout=subprocess.PIPE, text=True, start_new_session=True)

    def finish(process, number, stop_signal):
        ended.append((number, process.returncode, int(process.stdout.read() or -1), stop_signal))
        process.stdout.close()

    return started, ended, lambda workers: run_each(range(count), start, finish, workers)


def _signal_when_started(tmp_path, numbers, times=1):
    """Send SIGINT to this process (the parent) once every child of ``numbers`` has started, ``times`` times."""
    def watch():
        for _ in range(30_000):  # a guard against waiting forever, not a timing
            if all((tmp_path / f"{number}.started").exists() for number in numbers):
                for _ in range(times):
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(0.1)
                return
            time.sleep(0.001)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_every_job_runs_once_and_no_more_than_the_workers_at_once(tmp_path):
    started, ended, run = _pool(tmp_path, 5, 0.05)
    run(2)
    assert started == [0, 1, 2, 3, 4] and sorted(number for number, *_ in ended) == [0, 1, 2, 3, 4]
    assert all(code == 0 and seen == 0 and stop is None for _, code, seen, stop in ended)


def test_a_stop_signal_reaches_each_running_child_once_and_starts_no_other(tmp_path):
    started, ended, run = _pool(tmp_path, 5, 30)
    watcher = _signal_when_started(tmp_path, [0, 1])
    with pytest.raises(Stopped) as info:
        run(2)
    watcher.join()
    assert info.value.exit_code == 130
    assert started == [0, 1]  # none started after the signal
    assert sorted(ended) == [(0, 130, 1, signal.SIGINT), (1, 130, 1, signal.SIGINT)]  # each got it once


def test_a_second_signal_is_passed_on_and_every_child_waited_for(tmp_path):
    started, ended, run = _pool(tmp_path, 3, 30)
    watcher = _signal_when_started(tmp_path, [0, 1], times=2)
    with pytest.raises(KeyboardInterrupt):
        run(2)
    watcher.join()
    assert started == [0, 1] and len(ended) == 2
    assert all(seen == 2 for _, _, seen, _ in ended)  # both signals reached both children
