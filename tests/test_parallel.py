import threading

import numpy as np
import pytest

from yamlnet import parallel


def test_shards_are_even_and_cover_the_batch():
    assert parallel.shards(64, 10**9, 3) == [(0, 21), (21, 42), (42, 64)]
    assert parallel.shards(2, 10**9, 3) == [(0, 1), (1, 2)]
    assert parallel.shards(64, 10**9, 1) == [(0, 64)]


def test_small_batches_or_models_run_whole():
    per_sample = parallel.MIN_SHARD_MACS // 10
    assert parallel.shards(19, per_sample, 2) == [(0, 19)]  # under two shards' worth of work
    assert parallel.shards(20, per_sample, 2) == [(0, 10), (10, 20)]
    assert parallel.shards(0, per_sample, 2) == [(0, 0)]
    assert parallel.shards(20, per_sample, 2, min_shard_macs=10**12) == [(0, 20)]  # a run's own threshold


def test_the_cut_does_not_depend_on_blas_threads_or_cores(monkeypatch):
    """The cut is the run's arithmetic: whatever the machine, or another thread's BLAS limit, says."""
    blas = parallel._blas()
    expected = parallel.shards(64, 10**9, 2)
    monkeypatch.setattr(parallel, "cores", lambda: 1)
    assert parallel.shards(64, 10**9, 2) == expected == [(0, 32), (32, 64)]
    if blas is not None:
        with blas.limit(limits=1):
            assert parallel.shards(64, 10**9, 2) == expected


def test_run_gives_results_in_order_from_tasks_running_at_once():
    together = threading.Barrier(3, timeout=10)  # broken (an error) unless all three wait at once

    def task(k):
        together.wait()
        return k, threading.current_thread().name

    results = parallel.run([lambda k=k: task(k) for k in range(3)])
    assert [k for k, _ in results] == [0, 1, 2]
    assert results[0][1] == threading.current_thread().name  # the caller takes the first shard


def blas_threads() -> int:
    return min(controller.num_threads for controller in parallel._blas().lib_controllers)


def test_run_limits_blas_to_one_thread_per_task_and_restores_it():
    if parallel._blas() is None:
        pytest.skip("threadpoolctl cannot steer this BLAS")
    before = blas_threads()
    seen = parallel.run([blas_threads] * 2)
    assert seen == [1, 1] and blas_threads() == before


def test_one_blas_thread_from_two_threads_at_once_restores_what_was_there():
    """Entered and left by two threads in turn (first in, first out): the last one out restores it."""
    if parallel._blas() is None:
        pytest.skip("threadpoolctl cannot steer this BLAS")
    before = blas_threads()
    inside, leave = threading.Barrier(2, timeout=10), threading.Event()

    def hold(first: bool):
        with parallel.one_blas_thread():
            inside.wait()
            if first:
                return
            leave.wait(10)

    second = threading.Thread(target=hold, args=(False,))
    second.start()
    hold(True)
    assert blas_threads() == 1  # the other thread is still inside
    leave.set()
    second.join()
    assert blas_threads() == before


def test_an_interrupt_on_the_way_out_still_restores_blas():
    if parallel._blas() is None or blas_threads() < 2:
        pytest.skip("needs a BLAS on two threads or more")
    import signal
    before = blas_threads()
    with pytest.raises(KeyboardInterrupt):
        with parallel.one_blas_thread():
            signal.raise_signal(signal.SIGINT)  # delivered in the block; then a second one on the way out
            with parallel.signals.deferred():
                signal.raise_signal(signal.SIGINT)
    assert blas_threads() == before


def test_a_failing_task_raises_after_the_others_finish():
    finished = threading.Event()

    def slow():
        finished.wait(0.05)
        finished.set()
        return np.ones(3)

    with pytest.raises(ZeroDivisionError):
        parallel.run([lambda: 1 / 0, slow])
    assert finished.is_set()


def test_reducer_gives_every_shard_the_same_total_and_a_failure_frees_the_others():
    reducer = parallel.Reducer(3)
    parts = [np.array([1.0, 2.0]), np.array([10.0, 20.0]), np.array([100.0, 200.0])]
    results = parallel.run([lambda k=k: reducer.total(k, parts[k]) for k in range(3)], (reducer,))
    assert all(np.array_equal(total, [111.0, 222.0]) for total in results)

    reducer = parallel.Reducer(3)  # many totals in a row: a shard that hurries on overwrites nothing

    def shard(k):
        return [reducer.total(k, np.array([10.0 ** k * call])) for call in range(300)]

    for totals in parallel.run([lambda k=k: shard(k) for k in range(3)], (reducer,)):
        assert [float(total[0]) for total in totals] == [111.0 * call for call in range(300)]

    reducer = parallel.Reducer(2)

    def fails():
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):  # the other shard would wait for it forever without the abort
        parallel.run([fails, lambda: reducer.total(1, parts[0])], (reducer,))
    reducer = parallel.Reducer(2)
    with pytest.raises(ZeroDivisionError):  # the caller's shard waits, a pool thread's fails
        parallel.run([lambda: reducer.total(0, parts[0]), fails], (reducer,))
