"""Workers of one session at different rates (a Fargate Spot session's On-Demand
fallbacks): the scheduler's live cost and the ``max_cost`` budget price each
worker at its own rate; and why tasks came back ``unrun`` travels with them.

Pure scheduler examples, plus the worker's ``done`` notice and the attached
client's message on a local transport (no AWS).
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from _support import TEST_KEY, task_process

import starburst
from starburst.client import _Chunk
from starburst.exceptions import TaskError
from starburst.scheduler import Budget, Launch, OverBudget, Scheduler
from starburst.scheduling.events import WorkerExit
from starburst.transport.local import LocalTransport
from starburst.wire import messages as protocol
from starburst.wire.serialization import checksum, dumps
from starburst.worker.loop import UNRUN_STOPPED, UNRUN_STUCK

SPOT, ON_DEMAND = 0.001, 0.0033  # dollars per worker-second, On-Demand ~3.3x Spot


def _two_workers(budget: Budget | None = None) -> Scheduler:
    """One Spot worker (the session's rate) and one On-Demand fallback, launched at 0."""
    s = Scheduler(max_workers=2, max_attempts=3, budget=budget)
    s.launched(["spot", "fallback"], 2, 0.0, {"fallback": ON_DEMAND})
    return s


def test_worker_cost_prices_each_worker_at_its_own_rate() -> None:
    s = _two_workers()
    # One-minute minimum each: 60 s Spot + 60 s On-Demand.
    assert s.worker_cost(30.0, SPOT) == pytest.approx(60 * SPOT + 60 * ON_DEMAND)
    # Past the minimum, each second at its worker's rate.
    assert s.worker_cost(100.0, SPOT) == pytest.approx(100 * SPOT + 100 * ON_DEMAND)
    # Seconds are still seconds, whatever they cost.
    assert s.worker_seconds(100.0) == pytest.approx(200.0)


def test_a_stopped_fallback_stops_costing_at_its_own_rate() -> None:
    s = _two_workers()
    s.tick(90.0)
    s.worker_exited(WorkerExit("fallback", exit_code=0))
    assert s.worker_cost(200.0, SPOT) == pytest.approx(200 * SPOT + 90 * ON_DEMAND)


def test_rates_only_for_workers_that_started() -> None:
    s = Scheduler(max_workers=2, max_attempts=3)
    s.launched(["a"], 2, 0.0, {"a": ON_DEMAND, "never-started": 1.0})
    assert s.worker_rate == {"a": ON_DEMAND}


def test_the_budget_counts_a_fallback_at_the_on_demand_rate() -> None:
    # $0.20 pays two workers' first minute at the session (Spot) rate ($0.12), but not
    # one Spot and one On-Demand minute ($0.06 + $0.198 = $0.258).
    s = _two_workers(Budget(SPOT, 0.20))
    for c in range(4):
        s.submit(c, 1)
    assert s.spent(10.0) == pytest.approx(60 * SPOT + 60 * ON_DEMAND)
    [over] = [a for a in s.tick(10.0) if isinstance(a, OverBudget)]
    assert over.spent == pytest.approx(0.258)
    assert over.chunks == (0, 1, 2, 3)


def test_the_projection_uses_the_mean_rate_of_the_workers_alive() -> None:
    s = _two_workers(Budget(SPOT, 100.0))
    for c in range(3):
        s.submit(c, 10)
    s.started(0, "spot", "r0", 0.0)
    assert s.finished(0, 20.0)  # 2 s per task, 20 tasks pending -> 40 worker-seconds
    assert s.projected() == pytest.approx(40 * (SPOT + ON_DEMAND) / 2)


def test_new_workers_are_afforded_at_the_dearest_rate_they_may_start_at() -> None:
    # $0.5 buys eight one-minute workers at $0.001/s, but only two at $0.0033/s
    # (should Spot be short, each may start On-Demand).
    plain = Scheduler(max_workers=100, max_attempts=3, budget=Budget(SPOT, 0.5))
    dear = Scheduler(max_workers=100, max_attempts=3,
                     budget=Budget(SPOT, 0.5, launch_rate_per_second=ON_DEMAND))
    for s in (plain, dear):
        for c in range(200):
            s.submit(c, 1)
    assert plain.tick(0.0) == [Launch(8)]
    assert dear.tick(0.0) == [Launch(2)]


# -- why tasks came back unrun ------------------------------------------------------------


def _report(tmp_path: Path, outcomes: list[Any], **kw: Any) -> protocol.Notice:
    """Have a worker report ``outcomes`` for a leased chunk; return its ``done`` notice."""
    transport = LocalTransport(tmp_path / "session")
    session = "sb-20000101-000000-unrun0"
    task = protocol.TaskMessage(session=session, chunk=0, n=len(outcomes), checksum="")
    transport.tasks.send([protocol.encode(task, TEST_KEY)])
    [msg] = transport.tasks.receive(max_messages=1, wait_seconds=0.0, visibility=60.0)
    with task_process(transport, session=session) as worker:
        worker._report(task, outcomes, "att", msg, time.time(), **kw)
    [sent] = transport.results.receive(max_messages=1, wait_seconds=0.0, visibility=60.0)
    notice = protocol.decode(sent.body, TEST_KEY)
    assert isinstance(notice, protocol.Notice)
    return notice


def test_a_stopped_worker_says_it_was_stopped(tmp_path: Path) -> None:
    # The Spot drain path (_handle after SIGTERM) reports with the default reason.
    notice = _report(tmp_path, [(0, "ok", 1, "", None), (1, "unrun", None, "", None)])
    assert notice.info["unrun"] == UNRUN_STOPPED


def test_a_worker_that_gave_up_says_a_task_was_stuck(tmp_path: Path) -> None:
    notice = _report(tmp_path, [(0, "timeout", None, "", None), (1, "unrun", None, "", None)],
                     unrun=UNRUN_STUCK)
    assert notice.info["unrun"] == UNRUN_STUCK


def test_a_complete_result_says_nothing_of_unrun_tasks(tmp_path: Path) -> None:
    assert "unrun" not in _report(tmp_path, [(0, "ok", 1, "", None)]).info


@pytest.mark.parametrize(("why", "said"), [
    (UNRUN_STOPPED, "their worker was stopped while running the chunk (a Fargate Spot "
                    "interruption, or a stop) and handed them back"),
    (UNRUN_STUCK, "their worker gave up on a task stuck past its timeout"),
    (None, "their worker handed them back: it was stopped, or a task was stuck"),
])
def test_an_attached_client_says_why_it_cannot_requeue_unrun_tasks(why: str | None,
                                                                   said: str) -> None:
    with starburst.Executor(backend="local", workers=1, progress=False) as ex:
        client = ex._client
        done: Future[Any] = Future()
        unrun: Future[Any] = Future()
        # An attached client's chunk: futures, but not the tasks' arguments.
        chunk = _Chunk(10_000, [], [done, unrun])
        frame = dumps([(0, "ok", 1, "", None), (1, "unrun", None, "", None)])
        notice = protocol.Notice(kind="done", session=ex.session_id, chunk=chunk.id,
                                 worker="w", attempt="a", checksum=checksum(frame),
                                 info={} if why is None else {"unrun": why}, body=frame)
        client._complete(chunk, notice)
        assert done.result(timeout=0) == 1
        with pytest.raises(TaskError) as info:
            unrun.result(timeout=0)
        assert f"were not run ({said}) and an attached client cannot queue them" in str(
            info.value)
