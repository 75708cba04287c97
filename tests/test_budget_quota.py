"""Budget caps and quota fitting: pure scheduler and quota logic."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from starburst.quota import plan_workers, suggest_quota
from starburst.scheduler import Budget, Launch, OverBudget, Retire, Scheduler
from starburst.scheduling.events import WorkerExit


def _run_one_chunk(s: Scheduler, worker: str, chunk: int, t0: float, t1: float) -> None:
    s.started(chunk, worker, f"r{chunk}", t0)
    assert s.finished(chunk, t1)


def test_budget_stops_launches_and_fails_what_it_cannot_pay_for() -> None:
    # $0.01 per worker-second, cap $3: two workers cost >= $1.20 at once (1-min minimum).
    s = Scheduler(max_workers=2, max_attempts=3, budget=Budget(0.01, 3.0))
    for c in range(10):
        s.submit(c, 10)
    (launch,) = s.tick(0.0)
    assert launch == Launch(2)
    s.launched(["a", "b"], 2, 0.0)
    # One chunk of 10 tasks took 50 s: 5 s per task, 90 tasks pending -> $4.50 projected.
    _run_one_chunk(s, "a", 0, 0.0, 50.0)
    actions = s.tick(50.0)
    over = [a for a in actions if isinstance(a, OverBudget)]
    assert over
    assert set(over[0].chunks) == set(range(1, 10))
    assert over[0].spent == pytest.approx(1.2)
    assert over[0].projected == pytest.approx(90 * 5 * 0.01)
    retired = [a for a in actions if isinstance(a, Retire)]
    assert retired
    assert set(retired[0].workers) == {"a", "b"}
    assert not s.wants_workers()
    # A worker that leased a cancelled chunk is told to stop.
    s.launched(["c"], 0, 51.0)
    assert any(isinstance(a, Retire) for a in s.started(5, "c", "r5", 51.0))


def test_budget_limits_how_many_workers_start() -> None:
    s = Scheduler(max_workers=100, max_attempts=3, budget=Budget(0.001, 0.5))
    for c in range(200):
        s.submit(c, 1)
    (launch,) = s.tick(0.0)
    assert launch == Launch(8)  # each worker commits 60 s x $0.001 = $0.06; $0.5 buys 8


def test_no_budget_means_no_cap() -> None:
    s = Scheduler(max_workers=3, max_attempts=3)
    for c in range(3):
        s.submit(c, 1)
    assert s.tick(0.0) == [Launch(3)]
    assert s.spent(100.0) == 0.0


def test_quota_message_says_workers_and_waves() -> None:
    plan = plan_workers(100, 4, quota_vcpu=100, in_use_vcpu=0)
    assert plan.workers == 25
    assert plan.waves == 4
    assert plan.message() == (
        "Quota allows 25 workers of 4 vCPU (100 vCPU, 0 in use); 100 workers requested: "
        "the work runs on 25 workers (about 4 waves of your tasks).")
    assert plan_workers(10, 4, quota_vcpu=100).message() == ""
    assert "could not be read" in plan_workers(10, 4, quota_vcpu=None).message()
    full = plan_workers(5, 4, quota_vcpu=6, in_use_vcpu=4)
    assert full.workers == 0
    assert "quota increase" in full.message()
    assert suggest_quota(100, 4, in_use_vcpu=12) == 450


@given(st.integers(1, 2000), st.sampled_from([0.25, 0.5, 1, 2, 4, 8, 16]),
       st.floats(0, 5000), st.floats(0, 5000))
def test_quota_plan_never_exceeds_free_vcpus(requested: int, cpu: float, quota: float,
                                             used: float) -> None:
    plan = plan_workers(requested, cpu, quota, used)
    assert 0 <= plan.workers <= requested
    assert plan.workers * cpu <= max(0.0, quota - used) + 1e-6
    if plan.workers:
        assert plan.workers * plan.waves >= requested


def test_budget_that_cannot_pay_another_worker_fails_the_rest_instead_of_waiting() -> None:
    # $0.01 per worker-second, cap $1: the first worker commits $0.60 (one-minute
    # minimum) and exits; $0.40 is left, less than the next worker's first minute.
    s = Scheduler(max_workers=1, max_attempts=3, budget=Budget(0.01, 1.0))
    for c in range(3):
        s.submit(c, 1)
    assert s.tick(0.0) == [Launch(1)]
    s.launched(["a"], 1, 0.0)
    _run_one_chunk(s, "a", 0, 0.0, 1.0)
    s.worker_exited(WorkerExit("a", exit_code=0))
    actions = s.tick(2.0)
    over = [a for a in actions if isinstance(a, OverBudget)]
    assert over, actions  # before the fix: [] on every tick, forever
    assert set(over[0].chunks) == {1, 2}
    assert over[0].needed == pytest.approx(0.60)
    assert s.pending == 0
    assert s.outstanding == 0
    assert not any(isinstance(a, Launch) for a in s.tick(3.0))


def test_budget_waits_while_a_live_worker_can_still_drain_the_queue() -> None:
    s = Scheduler(max_workers=2, max_attempts=3, budget=Budget(0.01, 1.0))
    for c in range(3):
        s.submit(c, 1)
    assert s.tick(0.0) == [Launch(1)]  # $1 buys one worker-minute, not two
    s.launched(["a"], 1, 0.0)
    _run_one_chunk(s, "a", 0, 0.0, 1.0)
    assert not any(isinstance(a, OverBudget) for a in s.tick(2.0))  # "a" runs the rest
