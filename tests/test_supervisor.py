"""The worker's supervisor: timeouts, leases and heartbeats from outside the task.

Tasks run in a long-lived child of the worker, so a task that holds the GIL
cannot starve the heartbeat nor escape its timeout; the child runs the
initializer before its first task and is replaced after
``max_tasks_per_child`` tasks; and progress counts tasks as they finish.
"""

from __future__ import annotations

import concurrent.futures
import time

import pytest
from _support import wait_for
from _tasks import failing_init, hold_gil_if_zero, initialized, nap, remember_init

import starburst


def test_a_task_holding_the_gil_times_out_and_its_chunk_runs_once(executor_factory):
    # sum(range(10**12)) never lets the alarm's handler run; the supervisor kills
    # its process at task_timeout + timeout_grace (1 s + 1 s), and the rest of
    # the chunk runs in a fresh one. The 2 s lease never lapses meanwhile, so
    # the chunk is not run a second time.
    ex = executor_factory(task_timeout=1)
    started = time.monotonic()
    results = ex.map(hold_gil_if_zero, range(4), chunksize=4, return_exceptions=True)
    got = list(results)
    assert isinstance(got[0], starburst.TaskTimeoutError)
    assert got[1:] == [10, 20, 30]
    assert time.monotonic() - started < 30
    status = ex.status()
    assert (status.tasks_done, status.tasks_failed) == (3, 1)
    assert (status.chunks_done, status.attempts) == (1, 1)


def test_the_initializer_runs_once_in_each_task_process(executor_factory, tmp_path):
    ex = executor_factory(initializer=remember_init, initargs=(str(tmp_path), "ready"))
    got = list(ex.map(initialized, range(20), chunksize=5))
    assert {tuple(inits) for inits, _ in got} == {("ready",)}  # once per process
    pids = {pid for _, pid in got}
    assert {int(p.name.split("-")[1]) for p in tmp_path.glob("init-*")} >= pids


def test_max_tasks_per_child_replaces_the_task_process(executor_factory, tmp_path):
    ex = executor_factory(workers=1, initializer=remember_init,
                          initargs=(str(tmp_path), "fresh"), max_tasks_per_child=2)
    got = list(ex.map(initialized, range(6), chunksize=6))
    pids = [pid for _, pid in got]
    # Two tasks per process, each process initialized once; one chunk, one attempt.
    assert [pids[i] == pids[i + 1] for i in range(0, 6, 2)] == [True] * 3
    assert len(set(pids)) == 3
    assert all(inits == ["fresh"] for inits, _ in got)
    assert ex.status().attempts == 1


def test_an_initializer_that_raises_fails_the_futures_with_a_broken_executor_error(
        executor_factory):
    ex = executor_factory(initializer=failing_init)
    future = ex.submit(nap, 0)
    with pytest.raises(starburst.InitializerError, match="failing_init") as info:
        future.result(timeout=60)
    assert isinstance(info.value, concurrent.futures.BrokenExecutor)
    cause = info.value.__cause__
    assert isinstance(cause, FileNotFoundError)
    assert isinstance(cause.__cause__, starburst.RemoteTraceback)
    assert "failing_init" in str(cause.__cause__)


def test_progress_counts_tasks_before_their_chunk_finishes(fast_settings):
    # 40 tasks of 0.1 s in one chunk: 4 s of work; the count must move long
    # before the chunk's result arrives.
    with starburst.Executor(workers=1, settings=fast_settings, progress=False) as ex:
        results = ex.map(nap, [0.1] * 40, chunksize=40)
        client = ex._client
        seen = wait_for(client.tasks_finished, timeout=30,
                        what="progress before the chunk finished")
        assert ex.status().chunks_done == 0
        assert 0 < seen < 40
        assert list(results) == [0.1] * 40
        assert client.tasks_finished() == 40
