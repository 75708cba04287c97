"""Cancelling work that is queued but not started, as concurrent.futures documents it.

``Future.cancel()`` fails only for a call "currently being executed or
finished", and ``shutdown(cancel_futures=True)`` cancels "all pending
futures that the executor has not started running". ProcessPoolExecutor
keeps all but ``max_workers + 1`` submissions pending, so both work on a
backlog; these tests hold starburst to the same contract on every backend.
"""

from __future__ import annotations

import _tasks as tasks
from _support import wait_for


def test_a_queued_future_can_be_cancelled_while_the_worker_is_busy(executor_factory, tmp_path):
    ex = executor_factory(workers=1)
    blocker = ex.submit(tasks.marked_nap, tmp_path, "blocker", 5.0)
    wait_for((tmp_path / "start-blocker").exists, timeout=30, what="the blocker to start")
    queued = [ex.submit(tasks.double, i) for i in range(20)]
    wait_for(lambda: ex.status().tasks_total == 21, timeout=10,
             what="the client to take up the submissions")
    # The only worker is busy with the blocker: none of these has started.
    assert not any(f.running() for f in queued), "queued futures report RUNNING"
    assert queued[-1].cancel()
    assert blocker.result(timeout=30) == "blocker"


def test_shutdown_cancel_futures_cancels_a_queued_backlog(executor_factory, tmp_path):
    ex = executor_factory(workers=1)
    blocker = ex.submit(tasks.marked_nap, tmp_path, "blocker", 3.0)
    wait_for((tmp_path / "start-blocker").exists, timeout=30, what="the blocker to start")
    queued = [ex.submit(tasks.write_marker, tmp_path, i) for i in range(20)]
    wait_for(lambda: ex.status().tasks_total == 21, timeout=10,
             what="the client to take up the submissions")
    ex.shutdown(wait=True, cancel_futures=True)
    assert blocker.result(timeout=0) == "blocker"
    ran = {int(p.name) for p in tmp_path.iterdir() if p.name.isdigit()}
    cancelled = {i for i, f in enumerate(queued) if f.cancelled()}
    assert ran == set(range(20)) - cancelled
    # ProcessPoolExecutor(1) would cancel all but about two of them here.
    assert len(cancelled) >= 15, f"only {len(cancelled)} of 20 queued tasks were cancelled"
