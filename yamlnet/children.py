"""Jobs run as child processes, a few at a time, that a stop signal reaches as it reaches the parent:
what a sweep's runs and a search's trials share.

Each child has a session of its own, so that a terminal's Ctrl-C reaches the parent alone. The parent
passes the first stop signal (Ctrl-C, SIGTERM, SIGHUP) on to every running child once, starts no new
one and waits for them: each finishes its batch and writes a checkpoint. A second signal is passed on
too (the children stop at once), they are waited for, and it goes on up.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterable

from yamlnet.signals import StopRequest, deferred

_END = object()  # what ``next`` gives when the jobs have run out


class Stopped(Exception):
    """A signal stopped the sweep: the runs it reached wrote checkpoints; no new run was started."""

    def __init__(self, exit_code: int):
        super().__init__(exit_code)
        self.exit_code = exit_code


def run_each(jobs: Iterable, start: Callable[[object], subprocess.Popen | None],
             finish: Callable[[subprocess.Popen, object, int | None], None], workers: int) -> None:
    """``start(job)`` for each job — taken from ``jobs`` only when one of ``workers`` places is free;
    None: nothing to run for it — and ``finish(process, job, stop_signal)`` as each process ends
    (``stop_signal``: the stop signal that came, or None). Raises ``Stopped`` (the signal's exit code)
    after a stop signal."""
    jobs = iter(jobs)
    running: list[tuple[subprocess.Popen, object]] = []
    forwarded = None

    def reap(entry, stop_signal: int | None) -> None:
        running.remove(entry)
        finish(*entry, stop_signal)

    try:
        with StopRequest() as stop:
            more = True
            while running or (more and not stop.requested):
                while more and len(running) < workers and not stop.requested:
                    job = next(jobs, _END)
                    more = job is not _END
                    if more:
                        with deferred():  # a process started is a process recorded, to be signalled and waited for
                            process = start(job)
                            if process is not None:
                                running.append((process, job))
                if stop.requested and forwarded is None:
                    forwarded = stop.signal
                    for process, _ in running:
                        process.send_signal(stop.signal)
                time.sleep(0.05)
                for entry in [entry for entry in running if entry[0].poll() is not None]:
                    reap(entry, stop.signal)
    except BaseException:  # a second signal: pass it on, so that the children stop at once too; wait for them
        for process, _ in running:
            if process.poll() is None:
                process.send_signal(forwarded or signal.SIGINT)
        for entry in list(running):
            entry[0].wait()
            reap(entry, forwarded or signal.SIGINT)
        raise
    if stop.requested:
        raise Stopped(stop.exit_code)

