"""Signals: the ones a training run answers, and short sections that must not be cut by one.

Python runs a signal's handler in the main thread between two bytecodes, wherever that thread
is. Code that starts or ends a process, or restores a process-wide setting, must finish what it
began: ``deferred()`` holds the signals back for that long and delivers them after.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

#: what job managers and terminals send to stop a program: Ctrl-C; Slurm, Kubernetes, ``docker stop``
#: and ``timeout``; a closed terminal or ``systemctl reload``
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
#: signals whose handlers ``deferred`` holds back, and that workers ignore where their parent handles them
CATCHABLE = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1",
                                                      "SIGUSR2", "SIGALRM") if hasattr(signal, name))


def in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def handled() -> list[int]:
    """The signals of CATCHABLE that this process catches or ignores (anything but the default)."""
    return [number for number in CATCHABLE if signal.getsignal(number) not in (signal.SIG_DFL, None)]


@contextmanager
def deferred():
    """Hold back the handlers of CATCHABLE signals for the length of the block, then run them.

    Only the main thread runs Python's signal handlers, so elsewhere there is nothing to hold back.
    Blocking the signals with ``pthread_sigmask`` would not do: another thread would receive them,
    and Python would still run their handlers here, in the middle of the block.
    """
    if not in_main_thread():
        yield
        return
    caught: list[int] = []
    previous = {}
    try:
        for number in CATCHABLE:
            handler = signal.getsignal(number)
            if callable(handler):
                previous[number] = handler
                signal.signal(number, lambda signum, frame: caught.append(signum))
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number in dict.fromkeys(caught):
            signal.raise_signal(number)


class StopRequest:
    """The first stop signal (Ctrl-C, SIGTERM, SIGHUP) asks the work to stop at the next safe point;
    a second one stops at once: KeyboardInterrupt for Ctrl-C, ``SystemExit(128 + n)`` for the others
    (so that ``finally`` blocks still run). Only in the main thread; elsewhere the signals are the
    program's to handle and ``signal`` stays None."""

    def __init__(self):
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def __enter__(self) -> "StopRequest":
        if in_main_thread():
            for number in STOP_SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal is None:
            self.signal = signum
            return
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    def __exit__(self, *exc):
        for number, handler in self._previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()

    @property
    def name(self) -> str:
        return "Ctrl-C" if self.signal == signal.SIGINT else signal.Signals(self.signal).name

    @property
    def exit_code(self) -> int:
        """What a shell reports for a program ended by this signal: 130, 143, 129."""
        return 128 + (self.signal or signal.SIGINT)
