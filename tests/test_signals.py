import signal
import threading

import pytest

from yamlnet import signals


def test_deferred_holds_signals_back_until_the_block_ends():
    seen = []
    previous = signal.signal(signal.SIGUSR1, lambda *_: seen.append("handled"))
    try:
        with signals.deferred():
            signal.raise_signal(signal.SIGUSR1)
            signal.raise_signal(signal.SIGUSR1)  # the same signal twice is one, as the kernel would have it
            seen.append("block ended")
        assert seen == ["block ended", "handled"]
        assert signal.getsignal(signal.SIGUSR1) is not None and seen[-1] == "handled"
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_deferred_delivers_ctrl_c_after_the_block():
    finished = []
    with pytest.raises(KeyboardInterrupt):
        with signals.deferred():
            signal.raise_signal(signal.SIGINT)
            finished.append(True)
    assert finished == [True]


def test_deferred_leaves_defaults_alone_and_does_nothing_off_the_main_thread():
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with signals.deferred():
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    errors = []

    def elsewhere():
        try:
            with signals.deferred():
                pass
        except BaseException as error:  # signal.signal would raise ValueError off the main thread
            errors.append(error)

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    assert errors == []


@pytest.mark.parametrize("signum, raised", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, SystemExit),
                                            (signal.SIGHUP, SystemExit)])
def test_a_stop_request_is_a_flag_then_an_exit(signum, raised):
    before = signal.getsignal(signum)
    with signals.StopRequest() as stop:
        signal.raise_signal(signum)
        assert stop.requested and stop.exit_code == 128 + signum
        with pytest.raises(raised) as info:
            signal.raise_signal(signum)
        if raised is SystemExit:
            assert info.value.code == 128 + signum
    assert signal.getsignal(signum) == before


def test_handled_lists_what_is_not_at_its_default():
    assert signal.SIGINT in signals.handled()  # Python's own KeyboardInterrupt handler
    assert signal.SIGUSR2 not in signals.handled()
    previous = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:
        assert signal.SIGUSR2 in signals.handled()
    finally:
        signal.signal(signal.SIGUSR2, previous)
