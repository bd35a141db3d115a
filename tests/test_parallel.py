import threading

import numpy as np
import pytest

from yamlnet import parallel


@pytest.fixture
def two_workers(monkeypatch):
    monkeypatch.setattr(parallel, "n_workers", lambda: 2)


def test_shards_are_even_and_cover_the_batch(monkeypatch):
    monkeypatch.setattr(parallel, "n_workers", lambda: 3)
    assert parallel.shards(64, 10**9) == [(0, 21), (21, 42), (42, 64)]
    assert parallel.shards(2, 10**9) == [(0, 1), (1, 2)]


def test_many_blas_threads_run_batches_whole(monkeypatch):
    monkeypatch.setattr(parallel, "n_workers", lambda: parallel.MAX_SHARDS + 1)
    assert parallel.shards(1000, 10**9) == [(0, 1000)]


def test_small_batches_or_models_run_whole(two_workers):
    per_sample = parallel.MIN_SHARD_MACS // 10
    assert parallel.shards(19, per_sample) == [(0, 19)]  # under two shards' worth of work
    assert parallel.shards(20, per_sample) == [(0, 10), (10, 20)]
    assert parallel.shards(0, per_sample) == [(0, 0)]


def test_run_gives_results_in_order_from_tasks_running_at_once():
    together = threading.Barrier(3, timeout=10)  # broken (an error) unless all three wait at once

    def task(k):
        together.wait()
        return k, threading.current_thread().name

    results = parallel.run([lambda k=k: task(k) for k in range(3)])
    assert [k for k, _ in results] == [0, 1, 2]
    assert results[0][1] == threading.current_thread().name  # the caller takes the first shard


def test_run_limits_blas_to_one_thread_per_task_and_restores_it():
    blas = parallel._blas()
    if blas is None:
        pytest.skip("threadpoolctl cannot steer this BLAS")
    before = parallel.n_workers()
    seen = parallel.run([lambda: parallel.n_workers()] * 2)
    assert seen == [1, 1] and parallel.n_workers() == before


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
