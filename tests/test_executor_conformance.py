"""The Executor conformance suite: every backend in ``conftest.BACKENDS`` runs it.

It holds starburst to the :mod:`concurrent.futures` contract (real
Futures, ``map`` semantics, ``shutdown``) and to starburst's own promises
(lazy ``map``, remote tracebacks, shared objects stored once, per-task
timeouts).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import os
import re
import sys
import threading
import time
from concurrent.futures import CancelledError, Future
from pathlib import Path

import pytest
from _support import wait_for
from _tasks import (
    add,
    add3,
    chatty,
    double,
    identity,
    marked_nap,
    nap,
    sleep_if_one,
    stuck_in_native_code,
    write_marker,
)

import starburst
from starburst.chunking import STREAM_CHUNK

# -- task functions -------------------------------------------------------------
# Most tasks come from _tasks (a light module workers import quickly); these
# two are defined here to show that a test module's own functions and
# exception types travel too.


def raise_value_error(x):
    raise ValueError(f"boom {x}")  # the raising line, checked by its text below


class CustomError(Exception):
    """An exception type of the user's own."""


def raise_custom(x):
    raise CustomError(x)


# -- map --------------------------------------------------------------------


def test_map_returns_results_in_order_for_a_list(executor_factory):
    ex = executor_factory()
    assert list(ex.map(double, list(range(50)))) == [2 * i for i in range(50)]


def test_map_returns_results_in_order_for_a_generator(executor_factory):
    ex = executor_factory()
    # Later items finish first, so order comes from the executor, not timing.
    delays = [0.2, 0.1, 0.0, 0.15, 0.0, 0.05]
    assert list(ex.map(nap, (d for d in delays), chunksize=1)) == delays


def test_map_zips_multiple_iterables_stopping_at_the_shortest(executor_factory):
    ex = executor_factory()
    assert list(ex.map(add, [1, 2, 3, 4], (10 * i for i in range(3)))) == [1, 12, 23]
    assert list(ex.map(add3, range(3), range(3), range(3))) == [0, 3, 6]


def test_map_of_empty_input_yields_nothing(executor_factory):
    ex = executor_factory()
    assert list(ex.map(double, [])) == []
    assert list(ex.map(double, iter(()))) == []
    assert list(ex.map(add, [1, 2], [])) == []


def test_map_chunksize_sets_tasks_per_chunk(executor_factory):
    ex = executor_factory()
    assert list(ex.map(double, range(10), chunksize=3)) == [2 * i for i in range(10)]
    status = ex.status()
    assert status.chunks_done == 4  # 3 + 3 + 3 + 1
    assert status.attempts == 4


def test_map_buffersize_bounds_the_input_read_ahead(executor_factory):
    ex = executor_factory()
    pulled = 0

    def items():
        nonlocal pulled
        for i in range(200):
            pulled += 1
            yield i

    results = ex.map(double, items(), chunksize=2, buffersize=4)
    assert next(results) == 0
    # Two chunks in flight, plus the one refilled when the first completed.
    assert pulled <= 4 + 2
    assert list(results) == [2 * i for i in range(1, 200)]


def test_map_rejects_bad_chunk_arguments(executor_factory):
    ex = executor_factory()
    for name in ("chunksize", "buffersize"):
        for value in (0, -1, 1.5, True):
            with pytest.raises(starburst.ConfigurationError,
                               match=re.escape(f"{name}={value!r}")):
                ex.map(double, range(3), **{name: value})


def test_map_argument_errors(executor_factory):
    ex = executor_factory()
    with pytest.raises(TypeError):
        ex.map(double)
    with pytest.raises(TypeError):
        ex.map(42, range(3))


def test_map_timeout_raises_timeout_error(executor_factory):
    ex = executor_factory()
    assert ex.submit(double, 1).result(timeout=30) == 2  # workers are up
    results = ex.map(nap, [0, 60], timeout=1.0, chunksize=1)
    started = time.monotonic()
    assert next(results) == 0
    with pytest.raises(TimeoutError):
        next(results)
    assert time.monotonic() - started < 5


def test_map_starts_work_before_iteration(executor_factory, tmp_path):
    ex = executor_factory()
    results = ex.map(write_marker, [tmp_path] * 3, range(3))
    wait_for(lambda: len(list(tmp_path.iterdir())) == 3, timeout=30,
             what="the tasks to run before the results are read")
    assert list(results) == [0, 1, 2]


def test_map_input_error_reaches_the_caller_after_earlier_chunks(executor_factory):
    ex = executor_factory()

    def items():
        yield from range(8)
        raise KeyError("input broke")

    results = ex.map(double, items(), chunksize=4)
    assert [next(results) for _ in range(8)] == [2 * i for i in range(8)]
    with pytest.raises(KeyError, match="input broke"):
        next(results)


def test_map_input_error_keeps_the_results_read_before_it(executor_factory):
    ex = executor_factory()

    def items():
        yield from range(10)
        raise KeyError("input broke")

    results = ex.map(double, items(), chunksize=4)
    got = []

    def consume():
        got.extend(results)

    with pytest.raises(KeyError, match="input broke"):
        consume()
    assert got == [2 * i for i in range(10)]


def test_map_input_error_before_the_first_item(executor_factory):
    ex = executor_factory()

    def items():
        raise KeyError("nothing at all")
        yield  # pragma: no cover - makes this a generator

    results = ex.map(double, items())
    with pytest.raises(KeyError, match="nothing at all"):
        next(results)


def test_map_consumes_an_endless_generator_lazily(executor_factory):
    ex = executor_factory()
    pulled = 0

    def items():
        nonlocal pulled
        for i in range(1_000_000):
            pulled += 1
            yield i

    results = ex.map(identity, items())
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    # A window of four chunks per worker plus one refill, never the whole input.
    bound = (4 * ex.workers + 1) * STREAM_CHUNK
    assert pulled <= bound
    results.close()  # abandon the rest
    assert pulled <= bound
    assert ex.status().tasks_total <= bound


def test_map_abandoned_midway_lets_shutdown_finish_quickly(executor_factory):
    ex = executor_factory()
    results = ex.map(nap, [0] + [5] * 20, chunksize=1)
    assert next(results) == 0
    results.close()
    started = time.monotonic()
    ex.shutdown(wait=True)
    assert time.monotonic() - started < 10  # not 20 x 5 s of abandoned work


# -- submit and futures ---------------------------------------------------------


def test_submit_returns_a_standard_future(executor_factory):
    ex = executor_factory()
    future = ex.submit(add3, 1, 2, z=3)
    assert type(future) is Future
    assert future.result(timeout=30) == 6


def test_submit_requires_a_callable(executor_factory):
    ex = executor_factory()
    with pytest.raises(TypeError):
        ex.submit(42)


def test_wait_and_as_completed(executor_factory):
    ex = executor_factory()
    slow = ex.submit(nap, 1.0)
    fast = [ex.submit(double, i) for i in range(5)]
    done, not_done = concurrent.futures.wait(
        [slow, *fast], timeout=30, return_when=concurrent.futures.FIRST_COMPLETED)
    assert done
    assert slow in not_done or slow.done()
    assert all(f.done() for f in done)
    order = []
    for f in concurrent.futures.as_completed([slow, *fast], timeout=30):
        assert f.done()
        order.append(f)
    assert sorted(map(id, order)) == sorted(map(id, [slow, *fast]))
    assert sorted(f.result() for f in fast) == [0, 2, 4, 6, 8]
    done, not_done = concurrent.futures.wait([slow, *fast], timeout=0)
    assert not not_done


def test_add_done_callback_runs_once_with_the_future(executor_factory):
    ex = executor_factory()
    calls = []
    called = threading.Event()

    def callback(f):
        calls.append(f)
        called.set()

    future = ex.submit(double, 21)
    future.add_done_callback(callback)
    assert called.wait(30)
    assert calls == [future]
    assert future.result() == 42
    late = []
    future.add_done_callback(late.append)  # on a done future: runs at once
    assert late == [future]


def test_cancelled_future_never_runs(executor_factory, tmp_path):
    ex = executor_factory()
    futures = [ex.submit(write_marker, tmp_path, i) for i in range(300)]
    cancelled = {i for i, f in reversed(list(enumerate(futures))) if f.cancel()}
    for i, f in enumerate(futures):
        if i in cancelled:
            assert f.cancelled()
            with pytest.raises(CancelledError):
                f.result()
        else:
            assert f.result(timeout=60) == i
    ex.shutdown(wait=True)
    ran = {int(p.name) for p in tmp_path.iterdir()}
    assert ran == set(range(300)) - cancelled


def test_shutdown_cancel_futures_cancels_what_has_not_started(executor_factory, tmp_path):
    ex = executor_factory()
    blocker = ex.submit(marked_nap, tmp_path, "blocker", 0.5)
    # Started as the client sees it (its start notice arrived), not only on the
    # worker: until then cancel_futures may still cancel it (a stress run did).
    wait_for(lambda: blocker.running() or blocker.done(), timeout=30,
             what="the first task to start")
    futures = [ex.submit(write_marker, tmp_path, i) for i in range(300)]
    ex.shutdown(wait=True, cancel_futures=True)
    assert blocker.result(timeout=0) == "blocker"
    cancelled = set()
    for i, f in enumerate(futures):
        assert f.done()
        if f.cancelled():
            cancelled.add(i)
            with pytest.raises(CancelledError):
                f.result()
        else:
            assert f.result(timeout=0) == i
    ran = {int(p.name) for p in tmp_path.iterdir() if p.name.isdigit()}
    assert ran == set(range(300)) - cancelled


def test_submit_after_shutdown_raises_the_standard_error(executor_factory):
    ex = executor_factory()
    assert ex.submit(double, 1).result(timeout=30) == 2
    ex.shutdown(wait=True)
    with pytest.raises(RuntimeError, match=r"^cannot schedule new futures after shutdown$"):
        ex.submit(double, 1)
    with pytest.raises(RuntimeError, match=r"^cannot schedule new futures after shutdown$"):
        ex.map(double, [1])
    ex.shutdown(wait=True)  # a second shutdown is harmless


def test_context_manager_returns_the_executor_and_waits(executor_factory):
    ex = executor_factory()
    with ex as entered:
        assert entered is ex
        future = ex.submit(nap, 0.3)
    assert future.done()
    assert future.result() == 0.3


# -- what travels -----------------------------------------------------------------


def test_remote_exception_keeps_its_type_and_traceback(executor_factory):
    ex = executor_factory()
    with pytest.raises(ValueError, match="boom 7") as info:
        ex.submit(raise_value_error, 7).result(timeout=30)
    assert type(info.value) is ValueError
    cause = info.value.__cause__
    assert isinstance(cause, starburst.RemoteTraceback)
    assert Path(__file__).name in cause.tb
    assert 'raise ValueError(f"boom {x}")' in cause.tb
    assert "raise_value_error" in str(cause)


def test_remote_exception_of_a_user_type_and_from_map(executor_factory):
    ex = executor_factory()
    with pytest.raises(CustomError) as info:
        list(ex.map(raise_custom, ["abc"]))
    assert info.value.args == ("abc",)
    assert isinstance(info.value.__cause__, starburst.RemoteTraceback)


def test_lambdas_closures_and_module_functions_run(executor_factory):
    ex = executor_factory()
    offset = 100

    def closure(x):
        return x + offset

    assert list(ex.map(lambda x: x * 3, range(4))) == [0, 3, 6, 9]
    assert list(ex.map(closure, range(3))) == [100, 101, 102]
    assert ex.submit(double, 5).result(timeout=30) == 10


def test_function_of_module_on_client_sys_path_only(executor_factory, tmp_path, monkeypatch):
    # What a notebook's sys.path.append or pytest's rootdir insertion does.
    (tmp_path / "sb_user_module.py").write_text("def triple(x):\n    return 3 * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "sb_user_module", raising=False)  # gone afterwards
    import sb_user_module

    ex = executor_factory()
    assert list(ex.map(sb_user_module.triple, range(3))) == [0, 3, 6]


def test_large_closure_is_stored_once(executor_factory, monkeypatch):
    ex = executor_factory()
    big = os.urandom(100 * 1024 * 1024)

    def uses_big(i):
        return len(big) + i

    store = ex._client.transport.store
    puts: list[tuple[str, int]] = []
    real_put = store.put

    def counting_put(key, data):
        puts.append((key, len(data)))
        real_put(key, data)

    monkeypatch.setattr(store, "put", counting_put)
    results = list(ex.map(uses_big, range(1000)))
    assert results == [len(big) + i for i in range(1000)]
    objects = f"sessions/{ex.session_id}/objects/"
    big_puts = [(k, n) for k, n in puts if n >= len(big)]
    assert len(big_puts) == 1, puts
    assert big_puts[0][0].startswith(objects)
    assert sum(n for _, n in puts) < 1.5 * len(big)


def test_large_argument_repeated_across_tasks_is_stored_once(executor_factory, monkeypatch):
    ex = executor_factory()
    blob = os.urandom(4 * 1024 * 1024)
    store = ex._client.transport.store
    keys: list[str] = []
    real_put = store.put
    monkeypatch.setattr(store, "put", lambda k, d: (keys.append(k), real_put(k, d))[1])
    assert list(ex.map(len, itertools.repeat(blob, 50))) == [len(blob)] * 50
    shared = [k for k in keys if k.startswith(f"sessions/{ex.session_id}/objects/")]
    assert len(shared) == 2  # the function and the blob


def test_numpy_arrays_round_trip(executor_factory):
    np = pytest.importorskip("numpy")
    ex = executor_factory()
    small = [np.arange(10, dtype=np.int16) * i for i in range(4)]
    big = np.random.default_rng(0).standard_normal((1000, 1000))  # 8 MB: stored, not inline
    out = list(ex.map(lambda a: a * 2, [*small, big]))
    for got, want in zip(out, [*small, big], strict=True):
        assert got.dtype == want.dtype
        assert got.shape == want.shape
        assert np.array_equal(got, want * 2)


def test_large_results_come_back(executor_factory):
    ex = executor_factory()
    sizes = [10, 3 * 1024 * 1024, 20]
    assert [len(b) for b in ex.map(os.urandom, sizes, chunksize=1)] == sizes


# -- status, identity, output ------------------------------------------------------


def test_status_counts_a_finished_map(executor_factory):
    ex = executor_factory()
    assert list(ex.map(double, range(12), chunksize=4)) == [2 * i for i in range(12)]
    status = ex.status()
    assert isinstance(status, starburst.Status)
    assert status.session_id == ex.session_id
    assert status.backend == ex._options.backend
    assert 1 <= status.workers_launched <= 2
    assert status.workers <= 2
    assert (status.tasks_total, status.tasks_done, status.tasks_failed,
            status.tasks_pending) == (12, 12, 0, 0)
    assert (status.chunks_pending, status.chunks_running, status.chunks_done) == (0, 0, 3)
    assert status.attempts == 3
    assert status.elapsed > 0


def test_status_counts_failures_and_pending_work(executor_factory):
    ex = executor_factory()
    future = ex.submit(nap, 1.0)
    failed = ex.submit(raise_value_error, 1)
    with pytest.raises(ValueError):
        failed.result(timeout=30)
    status = ex.status()
    assert status.tasks_total == 2
    assert status.tasks_failed == 1
    assert status.tasks_pending == (0 if future.done() else 1)
    future.result(timeout=30)
    status = ex.status()
    assert (status.tasks_done, status.tasks_failed, status.tasks_pending) == (1, 1, 0)


def test_session_id_format_and_uniqueness(executor_factory):
    first, second = executor_factory(), executor_factory()
    for ex in (first, second):
        assert re.fullmatch(r"sb-\d{8}-\d{6}-[0-9a-f]{6}", ex.session_id)
    assert first.session_id != second.session_id


def test_task_output_is_labelled_with_the_task(executor_factory, capfd):
    ex = executor_factory()
    assert list(ex.map(chatty, [41, 42])) == [41, 42]
    seen = {"out": "", "err": ""}

    def both_lines_arrived():
        captured = capfd.readouterr()
        seen["out"] += captured.out
        seen["err"] += captured.err
        return ("hello from stdout 42" in seen["out"]
                and "hello from stderr 42" in seen["err"])

    wait_for(both_lines_arrived, timeout=10, what="the task output to reach the client")
    assert re.search(r"^\[task \d+\] hello from stdout 41$", seen["out"], re.M)
    assert re.search(r"^\[task \d+\] hello from stdout 42$", seen["out"], re.M)
    assert re.search(r"^\[task \d+\] hello from stderr 42$", seen["err"], re.M)
    labels = re.findall(r"^\[task (\d+)\] hello from stdout", seen["out"], re.M)
    assert len(set(labels)) == 2  # one label per task


def test_idle_timeout_of_settings_is_honoured(executor_factory, fast_settings):
    ex = executor_factory(settings=dataclasses.replace(fast_settings, idle_timeout=1.0))
    assert ex.submit(double, 1).result(timeout=30) == 2
    wait_for(lambda: ex.status().workers == 0, timeout=15,
             what="idle workers to exit after settings.idle_timeout=1")
    assert ex.submit(double, 2).result(timeout=30) == 4  # a new worker takes over


def test_idle_timeout_argument_overrides_settings(executor_factory):
    ex = executor_factory(idle_timeout=1.0)  # fast_settings say 30 s
    assert ex.submit(double, 1).result(timeout=30) == 2
    wait_for(lambda: ex.status().workers == 0, timeout=15,
             what="idle workers to exit after idle_timeout=1")


# -- timeouts ---------------------------------------------------------------------


def test_task_timeout_fails_that_task_only_and_is_not_retried(executor_factory):
    ex = executor_factory(task_timeout=0.5)
    results = ex.map(sleep_if_one, range(4), chunksize=4)  # one chunk
    assert next(results) == 0
    with pytest.raises(starburst.TaskTimeoutError) as info:
        next(results)
    assert isinstance(info.value, TimeoutError)
    assert "task_timeout=0.5" in str(info.value)
    status = ex.status()
    # The other tasks of the chunk ran; the chunk ran once: no retry.
    assert (status.tasks_done, status.tasks_failed, status.tasks_pending) == (3, 1, 0)
    assert (status.chunks_done, status.attempts) == (1, 1)


def test_task_timeout_on_submit_leaves_other_futures_alone(executor_factory):
    ex = executor_factory(task_timeout=0.5)
    slow = ex.submit(sleep_if_one, 1)
    fine = [ex.submit(nap, 0.1) for _ in range(3)]
    with pytest.raises(starburst.TaskTimeoutError):
        slow.result(timeout=30)
    assert [f.result(timeout=30) for f in fine] == [0.1] * 3
    assert ex.submit(double, 4).result(timeout=30) == 8  # the executor goes on


def test_task_stuck_in_native_code_times_out_and_its_chunk_finishes(executor_factory,
                                                                     tmp_path):
    ex = executor_factory(task_timeout=0.5)
    started = time.monotonic()
    results = ex.map(stuck_in_native_code, range(4), [tmp_path] * 4, chunksize=4)
    with pytest.raises(starburst.TaskTimeoutError):
        next(results)
    assert time.monotonic() - started < 20  # timeout + grace + a new worker, not 30 s
    status = ex.status()
    # Tasks 1-3 were reported unrun by the worker that gave up, queued again
    # and run by another worker.
    assert (status.tasks_done, status.tasks_failed, status.tasks_pending) == (3, 1, 0)
    stuck_pid = (tmp_path / "start-0").read_text()
    for x in (1, 2, 3):
        assert (tmp_path / f"start-{x}").read_text() != stuck_pid
