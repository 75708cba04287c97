"""The scheduler: a pure state machine, tested by examples and by a
hypothesis state machine that feeds it any order of events."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from starburst.scheduler import (
    Budget,
    ChunkState,
    Discard,
    Fail,
    Launch,
    LaunchPacing,
    OverBudget,
    Redeliver,
    Retire,
    Scheduler,
)
from starburst.scheduling.events import WorkerExit

TERMINAL = {ChunkState.DONE, ChunkState.FAILED, ChunkState.CANCELLED}


def scheduler(max_workers: int = 2, max_attempts: int = 3) -> Scheduler:
    return Scheduler(max_workers=max_workers, max_attempts=max_attempts)


# -- examples ----------------------------------------------------------------------


def test_launches_no_more_workers_than_chunks_or_max_workers():
    s = scheduler(max_workers=3)
    assert s.tick(0.0) == []
    s.submit(0, 5)
    assert s.tick(0.0) == [Launch(1)]
    assert s.tick(0.1) == []  # one is on its way
    for c in range(1, 10):
        s.submit(c, 5)
    assert s.tick(0.2) == [Launch(2)]
    s.launched(["a", "b"], 3)
    assert s.alive == {"a", "b"}
    assert s.tick(0.3) == [Launch(1)]  # the third never came: ask again


def test_lost_worker_redelivers_then_fails_with_its_exit():
    s = scheduler(max_attempts=2)
    s.submit(7, 3)
    s.launched(["a", "b"], 2)
    assert s.started(7, "a", "r1", 0.0) == []
    crash = WorkerExit("a", exit_code=3)
    assert s.worker_exited(crash) == [Redeliver(7, "r1")]
    assert s.chunks[7].state is ChunkState.PENDING
    assert s.started(7, "b", "r2", 1.0) == []
    last = WorkerExit("b", exit_code=3)
    assert s.worker_exited(last) == [Fail(7, 2, last), Discard(7, "r2")]
    assert s.chunks[7].state is ChunkState.FAILED
    assert s.outstanding == 0
    assert not s.finished(7)  # a late result is ignored


def test_release_gives_the_attempt_back():
    s = scheduler(max_attempts=1)
    s.submit(0, 1)
    s.launched(["a", "b"], 2)
    s.started(0, "a", "r1", 0.0)
    s.released(0, "a")
    assert s.chunks[0].attempts == 0
    assert s.total_attempts == 0
    assert s.started(0, "b", "r2", 1.0) == []  # not failed: the release was no attempt
    assert s.finished(0)


def test_a_release_naming_an_older_lease_changes_nothing():
    s = scheduler(max_attempts=1)
    s.submit(0, 1)
    s.launched(["a"], 1)
    s.started(0, "a", "r1", 0.0)
    s.released(0, "a", "r1")
    s.started(0, "a", "r2", 1.0)  # the same worker took the chunk again
    s.released(0, "a", "r1")  # a late copy of the first release
    rec = s.chunks[0]
    assert (rec.state, rec.holder, rec.attempts) == (ChunkState.RUNNING, "a", 1)


@pytest.mark.parametrize("same_worker", [False, True])
def test_a_handed_back_rest_that_starts_before_its_release_takes_the_attempt_over(
        same_worker: bool):
    # Near max_lease worker a queues the rest of chunk 0 under a new message;
    # its start can come before a's release (SQS does not order notices).
    s = scheduler(max_attempts=1)
    s.submit(0, 3)
    s.launched(["a", "b"], 2)
    s.started(0, "a", "r1", 0.0)
    rest = "a" if same_worker else "b"
    assert s.started(0, rest, "r2", 1.0, handed_back=True) == []  # not a second attempt
    s.released(0, "a", "r1")
    rec = s.chunks[0]
    assert (rec.state, rec.holder, rec.attempts) == (ChunkState.RUNNING, rest, 1)
    assert s.total_attempts == 1
    assert s.finished(0)


def test_a_handed_back_rest_counts_its_own_attempt_after_the_release():
    s = scheduler(max_attempts=1)
    s.submit(0, 3)
    s.launched(["a", "b"], 2)
    s.started(0, "a", "r1", 0.0)
    s.released(0, "a", "r1")
    assert s.started(0, "b", "r2", 1.0, handed_back=True) == []
    assert (s.chunks[0].attempts, s.total_attempts) == (1, 1)
    lost = WorkerExit("b", exit_code=1)
    assert s.worker_exited(lost) == [Fail(0, 1, lost), Discard(0, "r2")]


def test_start_notice_after_the_worker_died_counts_as_lost():
    s = scheduler(max_attempts=3)
    s.submit(0, 1)
    s.launched(["a"], 1)
    gone = WorkerExit("a", signal="SIGKILL", exit_code=137)
    assert s.worker_exited(gone) == []
    assert s.started(0, "a", "r1", 0.0) == [Redeliver(0, "r1")]
    assert s.chunks[0].last_exit == gone


def test_lapsed_lease_counts_and_fails_past_max_attempts():
    s = scheduler(max_attempts=1)
    s.submit(0, 1)
    s.launched(["a", "b"], 2)
    s.started(0, "a", "r1", 0.0)
    actions = s.started(0, "b", "r2", 5.0)  # a stalled; its lease lapsed
    assert [type(a) for a in actions] == [Fail, Discard]
    assert actions[0].attempts == 1


def test_terminal_chunks_are_discarded_and_forgotten():
    s = scheduler()
    s.submit(0, 1)
    s.started(0, "a", "r1", 0.0)
    assert s.finished(0)
    assert s.started(0, "b", "r2", 1.0) == [Discard(0, "r2")]
    s.forget(0)
    assert 0 not in s.chunks
    assert s.started(0, "b", "r3", 2.0) == [Discard(0, "r3")]
    s.submit(1, 1)
    with pytest.raises(ValueError, match="twice"):
        s.submit(1, 1)


def test_cancel_only_what_has_not_finished():
    s = scheduler()
    s.submit(0, 1)
    s.submit(1, 1)
    assert s.cancel(0)
    assert not s.cancel(0)
    s.started(1, "a", "r", 0.0)
    assert s.finished(1)
    assert not s.cancel(1)
    assert s.outstanding == 0


def test_stopped_scheduler_launches_nothing():
    s = scheduler()
    s.submit(0, 1)
    s.stop()
    assert s.tick(0.0) == []


@pytest.mark.parametrize(("max_workers", "max_attempts"), [(0, 1), (1, 0)])
def test_scheduler_limits_must_be_positive(max_workers, max_attempts):
    with pytest.raises(ValueError):
        Scheduler(max_workers=max_workers, max_attempts=max_attempts)


# -- launch pacing -------------------------------------------------------------------


@settings(deadline=None, max_examples=200)
@given(steps=st.lists(st.tuples(st.floats(0, 2), st.integers(0, 500)), min_size=1,
                      max_size=40))
def test_pacing_respects_fargate_rates(steps):
    pacing = LaunchPacing()  # 10 per call, 20 calls/s, 20 launches/s, burst 100
    now = 0.0
    total = 0
    for dt, wanted in steps:
        now += dt
        n = pacing.allow(wanted, now)
        assert 0 <= n <= wanted
        total += n
        assert total <= pacing.launch_burst + pacing.launches_per_second * now + 1e-9


def test_pacing_backoff_takes_every_token():
    pacing = LaunchPacing()
    assert pacing.allow(10, 0.0) == 10
    pacing.backoff(0.0, 2.0)
    assert pacing.allow(10, 1.0) == 0
    assert pacing.allow(10, 2.5) > 0


def test_unlimited_pacing_allows_everything():
    pacing = LaunchPacing.unlimited()
    assert pacing.allow(10_000, 0.0) == 10_000
    assert pacing.allow(10_000, 0.0) == 10_000


# -- the state machine ---------------------------------------------------------------


class SchedulerMachine(RuleBasedStateMachine):
    """Any order of queue, worker and clock events; the invariants must hold."""

    @initialize(max_workers=st.integers(1, 4), max_attempts=st.integers(1, 3),
                linger=st.none() | st.floats(0.5, 5),
                budget=st.none() | st.builds(Budget, st.floats(0.0001, 0.01),
                                             st.floats(0.1, 50), st.sampled_from([1.0, 60.0])))
    def setup(self, max_workers, max_attempts, linger, budget):
        self.s = Scheduler(max_workers=max_workers, max_attempts=max_attempts,
                           linger=linger, budget=budget)
        self.now = 0.0
        self.next_chunk = 0
        self.next_worker = 0
        self.submitted: list[int] = []
        self.launched: list[str] = []
        self.exited: set[str] = set()
        self.retired: set[str] = set()
        self.losses: Counter[int] = Counter()
        self.wins: Counter[int] = Counter()
        self.forgotten_attempts = 0

    # -- helpers --
    def _record(self, chunk):
        return self.s.chunks.get(chunk)

    def _handle(self, actions, requested_launch=None):
        for action in actions:
            if isinstance(action, Fail):
                rec = self._record(action.chunk)
                assert rec is not None
                assert rec.state is ChunkState.FAILED
                assert action.attempts >= self.s.max_attempts
                assert self.losses[action.chunk] >= self.s.max_attempts, (
                    f"chunk {action.chunk} failed after {self.losses[action.chunk]} "
                    f"lost attempts (max_attempts={self.s.max_attempts})")
            elif isinstance(action, Redeliver):
                rec = self._record(action.chunk)
                assert rec is not None
                assert rec.state is ChunkState.PENDING
            elif isinstance(action, Retire):
                assert not set(action.workers) & self.s.alive
                self.retired.update(action.workers)
            elif isinstance(action, OverBudget):
                for chunk in action.chunks:
                    assert self._record(chunk).state is ChunkState.CANCELLED
            elif isinstance(action, Launch):
                assert action.count >= 1
                assert requested_launch is not None
                requested_launch.append(action.count)

    # -- rules --
    @rule(n=st.integers(1, 20))
    def submit(self, n):
        self.s.submit(self.next_chunk, n)
        self.submitted.append(self.next_chunk)
        self.next_chunk += 1

    @rule(dt=st.floats(0, 3), data=st.data())
    def tick(self, dt, data):
        self.now += dt
        launches: list[int] = []
        self._handle(self.s.tick(self.now), launches)
        for count in launches:
            started = data.draw(st.integers(0, count), label="started")
            ids = [f"w{self.next_worker + i}" for i in range(started)]
            self.next_worker += started
            self.launched.extend(ids)
            self.s.launched(ids, count, self.now)

    @precondition(lambda self: self.submitted and self.launched)
    @rule(data=st.data())
    def start(self, data):
        chunk = data.draw(st.sampled_from(self.submitted), label="chunk")
        worker = data.draw(st.sampled_from(self.launched), label="worker")
        rec = self._record(chunk)
        live = rec is not None and rec.state not in TERMINAL
        if live and rec.state is ChunkState.RUNNING:
            self.losses[chunk] += 1  # the previous holder's lease lapsed
        if live and worker in self.exited:
            self.losses[chunk] += 1  # its worker is already gone
        actions = self.s.started(chunk, worker, f"r-{chunk}-{worker}", self.now)
        if not live:
            assert any(isinstance(a, Discard) for a in actions)
        self._handle(actions)

    @precondition(lambda self: self.s.alive and any(
        r.state is ChunkState.PENDING for r in self.s.chunks.values()))
    @rule(data=st.data())
    def live_worker_leases_a_pending_chunk(self, data):
        """The common case, so that runs reach retries and failures."""
        pending = sorted(c for c, r in self.s.chunks.items() if r.state is ChunkState.PENDING)
        chunk = data.draw(st.sampled_from(pending), label="chunk")
        worker = data.draw(st.sampled_from(sorted(self.s.alive)), label="worker")
        self._handle(self.s.started(chunk, worker, f"r-{chunk}-{worker}", self.now))
        assert self.s.chunks[chunk].holder == worker

    @precondition(lambda self: any(r.state is ChunkState.RUNNING
                                   for r in self.s.chunks.values()))
    @rule(data=st.data(), code=st.sampled_from([1, 137]))
    def holder_dies(self, data, code):
        running = sorted(c for c, r in self.s.chunks.items() if r.state is ChunkState.RUNNING
                         and r.holder not in self.exited)
        if not running:
            return
        chunk = data.draw(st.sampled_from(running), label="chunk")
        worker = self.s.chunks[chunk].holder
        for c, rec in self.s.chunks.items():
            if rec.state is ChunkState.RUNNING and rec.holder == worker:
                self.losses[c] += 1
        self.exited.add(worker)
        self._handle(self.s.worker_exited(WorkerExit(worker, exit_code=code)))

    @precondition(lambda self: any(r.state is ChunkState.RUNNING
                                   for r in self.s.chunks.values()))
    @rule(data=st.data(), by_holder=st.booleans())
    def release(self, data, by_holder):
        running = sorted(c for c, r in self.s.chunks.items() if r.state is ChunkState.RUNNING)
        chunk = data.draw(st.sampled_from(running), label="chunk")
        holder = self.s.chunks[chunk].holder
        worker = holder if by_holder else data.draw(st.sampled_from(self.launched))
        before = self.s.chunks[chunk].attempts
        self.s.released(chunk, worker)
        if worker == holder:
            assert self.s.chunks[chunk].state is ChunkState.PENDING
            assert self.s.chunks[chunk].attempts == before - 1

    @precondition(lambda self: self.submitted)
    @rule(data=st.data())
    def finish(self, data):
        chunk = data.draw(st.sampled_from(self.submitted), label="chunk")
        rec = self._record(chunk)
        was_live = rec is not None and rec.state not in TERMINAL
        won = self.s.finished(chunk, self.now)
        assert won == was_live
        if won:
            self.wins[chunk] += 1
            assert self.s.chunks[chunk].state is ChunkState.DONE

    @precondition(lambda self: set(self.launched) - self.exited)
    @rule(data=st.data(), code=st.sampled_from([0, 1, 3, 137, None]))
    def worker_exit(self, data, code):
        worker = data.draw(st.sampled_from(sorted(set(self.launched) - self.exited)))
        for chunk, rec in self.s.chunks.items():
            if rec.state is ChunkState.RUNNING and rec.holder == worker:
                self.losses[chunk] += 1
        self.exited.add(worker)
        self._handle(self.s.worker_exited(WorkerExit(worker, exit_code=code)))
        assert worker not in self.s.alive

    @precondition(lambda self: self.submitted)
    @rule(data=st.data())
    def cancel(self, data):
        chunk = data.draw(st.sampled_from(self.submitted), label="chunk")
        rec = self._record(chunk)
        was_live = rec is not None and rec.state not in TERMINAL
        assert self.s.cancel(chunk) == was_live

    @precondition(lambda self: self.submitted)
    @rule(data=st.data())
    def forget(self, data):
        chunk = data.draw(st.sampled_from(self.submitted), label="chunk")
        rec = self._record(chunk)
        if rec is not None and rec.state in TERMINAL:
            self.forgotten_attempts += rec.attempts
        self.s.forget(chunk)
        if rec is not None and rec.state not in TERMINAL:
            assert self._record(chunk) is rec  # only terminal records are dropped

    # -- invariants --
    @invariant()
    def attempts_are_bounded(self):
        for rec in self.s.chunks.values():
            assert 0 <= rec.attempts <= self.s.max_attempts + 1

    @invariant()
    def attempts_are_the_lost_ones_plus_the_running_one(self):
        for chunk, rec in self.s.chunks.items():
            if rec.state in TERMINAL:
                continue
            running = 1 if rec.state is ChunkState.RUNNING else 0
            assert rec.attempts == self.losses[chunk] + running

    @invariant()
    def failed_only_after_max_attempts_losses(self):
        for chunk, rec in self.s.chunks.items():
            if rec.state is ChunkState.FAILED:
                assert self.losses[chunk] >= self.s.max_attempts

    @invariant()
    def total_attempts_add_up(self):
        assert self.s.total_attempts == (
            sum(r.attempts for r in self.s.chunks.values()) + self.forgotten_attempts)

    @invariant()
    def outstanding_and_pending_match_the_records(self):
        states = Counter(r.state for r in self.s.chunks.values())
        assert self.s.outstanding == states[ChunkState.PENDING] + states[ChunkState.RUNNING]
        assert self.s.pending == states[ChunkState.PENDING]

    @invariant()
    def only_running_chunks_have_a_holder(self):
        for rec in self.s.chunks.values():
            assert (rec.holder is not None) == (rec.state is ChunkState.RUNNING)

    @invariant()
    def workers_never_exceed_max_workers(self):
        working = set(self.launched) - self.exited - self.retired
        assert self.s.alive == working
        assert len(self.s.alive) + self.s.launching <= self.s.max_workers

    @invariant()
    def a_chunk_wins_at_most_once(self):
        assert all(count == 1 for count in self.wins.values())


SchedulerMachine.TestCase.settings = settings(
    deadline=None, max_examples=150, stateful_step_count=60,
    suppress_health_check=[HealthCheck.too_slow])
test_scheduler_state_machine = SchedulerMachine.TestCase



def test_a_chunk_held_by_a_worker_this_client_never_knew_keeps_a_worker():
    """An attached client can get the start notice of the previous client's worker,
    already dead and never known here: a lapsed lease is all that frees its chunk.
    Until then the chunk still needs a worker to take it, so lingering must not
    retire the only one (CI hang: attach retired each new worker before it leased)."""
    s = Scheduler(max_workers=1, max_attempts=3, linger=5.0)
    s.submit(0, 1)
    s.submit(1, 1)
    assert s.tick(0.0) == [Launch(1)]
    s.launched(["w2"], 1, now=0.0)
    assert s.started(0, "w1", "r-old", 0.5) == []  # the first client's worker, long gone
    s.started(1, "w2", "r1", 1.0)
    assert s.finished(1, 2.0)
    assert s.tick(60.0) == []  # w2 idles 58 s: kept, for chunk 0's lease to lapse
    assert s.alive == {"w2"}
    s.started(0, "w2", "r2", 61.0)  # the lapsed lease: w2 takes chunk 0 over
    assert s.finished(0, 62.0)
    assert s.tick(70.0) == [Retire(("w2",))]


def test_adopted_workers_count_as_alive_and_exited_ones_as_lost():
    """Attach adopts the session's workers: live ones are not launched again, and
    a start notice from one that died before attach redelivers its chunk at once."""
    s = Scheduler(max_workers=2, max_attempts=3, linger=5.0)
    s.submit(0, 1)
    s.submit(1, 1)
    s.adopt(["w2"], [WorkerExit("w1", signal="SIGKILL", exit_code=137)], now=0.0)
    assert s.tick(0.0) == [Launch(1)]  # two wanted, w2 is one of them
    assert s.started(0, "w1", "r-old", 0.5) == [Redeliver(0, "r-old")]
    assert s.chunks[0].attempts == 1
