"""The scheduler: a pure state machine over chunks and workers.

It has no clock, no sleeps and no I/O. The client feeds it events (with
the time they happened) and carries out the actions it returns; the scale
model (:mod:`starburst.simulate`) feeds it the same events from a model
of Fargate with a simulated clock.

Per chunk it keeps the record that makes retries correct: state, holder,
lease receipt and attempts. An attempt is counted when a worker reports
it has leased the chunk; a release on SIGTERM (or a Spot interruption)
gives the attempt back, and so does a hand-back near ``max_lease`` (the
rest of the chunk, under a new message, keeps its chunk id). A chunk
whose holder died is redelivered at once (no need to wait for its lease
to lapse) until ``max_attempts`` attempts were lost, then it fails with
the worker's exit details.

Per session it decides how many workers should exist (never more than
``max_workers`` nor more than there are chunks to run), paces launches
under the backend's rate limits with token buckets, and, on backends
that bill idle time, retires a worker that has had nothing to do for
``linger`` seconds while no chunk waits (instead of paying for its whole
idle timeout).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from .scheduling.events import SPOT_INTERRUPTION, WorkerExit
from .scheduling.pacing import LaunchPacing

__all__ = [
    "Action",
    "Budget",
    "ChunkRecord",
    "ChunkState",
    "Discard",
    "Fail",
    "Launch",
    "OverBudget",
    "Redeliver",
    "Retire",
    "Scheduler",
]

class ChunkState(enum.Enum):
    """Lifecycle of a chunk."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


_TERMINAL = (ChunkState.DONE, ChunkState.FAILED, ChunkState.CANCELLED)


@dataclass(slots=True)
class ChunkRecord:
    """What the scheduler knows of one chunk."""

    chunk: int
    n: int
    state: ChunkState = ChunkState.PENDING
    attempts: int = 0
    holder: str | None = None
    receipt: str = ""
    started_at: float | None = None
    last_exit: WorkerExit | None = None


@dataclass(frozen=True, slots=True)
class Launch:
    """Start ``count`` workers."""

    count: int


@dataclass(frozen=True, slots=True)
class Redeliver:
    """Make the chunk's message visible again now (its holder died)."""

    chunk: int
    receipt: str


@dataclass(frozen=True, slots=True)
class Discard:
    """Delete a message whose chunk is already finished, failed or cancelled."""

    chunk: int
    receipt: str


@dataclass(frozen=True, slots=True)
class Fail:
    """Fail every task of the chunk: its worker was lost ``attempts`` times."""

    chunk: int
    attempts: int
    exit: WorkerExit


@dataclass(frozen=True, slots=True)
class Retire:
    """Stop these idle workers: no chunk waits for them."""

    workers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class OverBudget:
    """Fail these pending chunks: the budget cannot pay for them.

    ``needed`` is set (dollars) when no worker is left to run them and the
    budget cannot pay the next one's first billed minute; 0 when the
    projection of the pending tasks went over the cap.
    """

    chunks: tuple[int, ...]
    spent: float
    projected: float
    limit: float
    needed: float = 0.0


@dataclass(slots=True)
class Budget:
    """A hard cap on a run's cost (``max_cost``), in dollars.

    Spending is counted conservatively from each worker's launch (Fargate
    bills from the image pull, a little later), per second with the
    one-minute minimum, each worker at its own rate when the backend said
    it (:meth:`Scheduler.launched`: a Fargate Spot session's On-Demand
    fallbacks cost about 3.3 times its Spot workers). The projection adds
    the remaining tasks at the mean task time measured so far, at the mean
    rate of the workers alive.

    Attributes:
        rate_per_second: dollars per worker-second of a worker whose own
            rate is not known (the session's rate).
        max_cost: the cap.
        min_seconds: billing minimum per worker.
        launch_rate_per_second: the most a worker about to be launched may
            cost per second (Spot ``"prefer"``: the On-Demand rate of a
            fallback), so the budget never commits to a minute it cannot
            pay; None: ``rate_per_second``.
    """

    rate_per_second: float
    max_cost: float
    min_seconds: float = 60.0
    launch_rate_per_second: float | None = None


Action = Launch | Redeliver | Discard | Fail | Retire | OverBudget


class Scheduler:
    """Chunk records, worker count and launch pacing. Pure: events in, actions out."""

    def __init__(self, *, max_workers: int, max_attempts: int,
                 pacing: LaunchPacing | None = None, linger: float | None = None,
                 budget: Budget | None = None) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be >= 1")
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.max_workers = max_workers
        self.max_attempts = max_attempts
        self.pacing = pacing or LaunchPacing.unlimited()
        self.linger = linger
        self.budget = budget
        self.draining = False
        self.idle_since: dict[str, float] = {}
        self.worker_start: dict[str, float] = {}
        self.worker_stop: dict[str, float] = {}
        #: Dollars per second of the workers whose backend said their rate.
        self.worker_rate: dict[str, float] = {}
        self._task_seconds = 0.0
        self._tasks_timed = 0
        self._pending = 0
        self.chunks: dict[int, ChunkRecord] = {}
        self.alive: set[str] = set()
        self.exited: dict[str, WorkerExit] = {}
        self.launching = 0
        self._outstanding = 0
        self.stopped = False
        #: Attempts counted over the whole session (records are forgotten).
        self.total_attempts = 0
        self.last_tick = 0.0

    # -- chunks ---------------------------------------------------------
    def submit(self, chunk: int, n: int) -> None:
        """A chunk was queued."""
        if chunk in self.chunks:
            raise ValueError(f"chunk {chunk} submitted twice")
        self.chunks[chunk] = ChunkRecord(chunk, n)
        self._outstanding += 1
        self._pending += 1

    def _finish(self, rec: ChunkRecord, state: ChunkState) -> None:
        if rec.state is ChunkState.PENDING:
            self._pending -= 1
        rec.state = state
        rec.holder = None
        self._outstanding -= 1

    def started(self, chunk: int, worker: str, receipt: str, now: float, *,
                handed_back: bool = False) -> list[Action]:
        """``worker`` leased ``chunk`` (a ``start`` notice arrived).

        ``handed_back``: the message is the rest of the chunk, which its holder
        handed back near ``max_lease`` under a new message.
        """
        rec = self.chunks.get(chunk)
        if rec is None or rec.state in _TERMINAL:
            if self.draining and worker in self.alive:
                # Over budget: this worker must not run anything more.
                self.alive.discard(worker)
                return [Discard(chunk, receipt), Retire((worker,))]
            return [Discard(chunk, receipt)]
        if not (handed_back and rec.state is ChunkState.RUNNING):
            # Another holder means the previous lease lapsed (a stalled worker):
            # that attempt stays counted. But the rest of a handed-back chunk
            # may start before the hand-back's release arrives (it names the
            # old lease, so it then changes nothing): that attempt carries over.
            rec.attempts += 1
            self.total_attempts += 1
        if rec.state is ChunkState.PENDING:
            self._pending -= 1
        rec.state = ChunkState.RUNNING
        self.idle_since.pop(worker, None)
        rec.holder = worker
        rec.receipt = receipt
        rec.started_at = now
        if worker in self.exited:
            # The worker died before its start notice reached us.
            return self._lost(rec, self.exited[worker])
        if rec.attempts > self.max_attempts:
            ex = rec.last_exit or WorkerExit(worker, reason="lease expired")
            self._finish(rec, ChunkState.FAILED)
            return [Fail(chunk, rec.attempts - 1, ex), Discard(chunk, receipt)]
        return []

    def released(self, chunk: int, worker: str, receipt: str = "") -> None:
        """``worker`` handed ``chunk`` back (SIGTERM, Spot, ``max_lease``): not an attempt.

        ``receipt``: the lease it released, when the notice names it; a release
        of an older lease than the one recorded changes nothing.
        """
        rec = self.chunks.get(chunk)
        if rec is None or rec.state in _TERMINAL:
            return
        if rec.holder == worker and (not receipt or receipt == rec.receipt):
            rec.attempts = max(0, rec.attempts - 1)
            self.total_attempts -= 1
            rec.holder = None
            rec.state = ChunkState.PENDING
            self._pending += 1

    def finished(self, chunk: int, now: float | None = None) -> bool:
        """A result for ``chunk`` arrived; True if it is the first (it wins)."""
        rec = self.chunks.get(chunk)
        if rec is None or rec.state in _TERMINAL:
            return False
        if rec.holder is not None and rec.holder in self.alive and now is not None:
            self.idle_since[rec.holder] = now
        if now is not None and rec.started_at is not None and now >= rec.started_at:
            self._task_seconds += now - rec.started_at
            self._tasks_timed += rec.n
        self._finish(rec, ChunkState.DONE)
        return True

    def cancel(self, chunk: int) -> bool:
        """The user cancelled ``chunk`` before it ran; True if it was still pending."""
        rec = self.chunks.get(chunk)
        if rec is None or rec.state in _TERMINAL:
            return False
        self._finish(rec, ChunkState.CANCELLED)
        return True

    def forget(self, chunk: int) -> None:
        """Drop a terminal chunk's record (keeps memory bounded on long runs)."""
        rec = self.chunks.get(chunk)
        if rec is not None and rec.state in _TERMINAL:
            del self.chunks[chunk]

    def _lost(self, rec: ChunkRecord, ex: WorkerExit) -> list[Action]:
        rec.last_exit = ex
        rec.holder = None
        if ex.stop_code == SPOT_INTERRUPTION:
            # Fargate Spot took the worker back: not the chunk's fault, so the
            # attempt is given back even when the worker's release notice was lost.
            rec.attempts = max(0, rec.attempts - 1)
            self.total_attempts -= 1
        if rec.attempts >= self.max_attempts:
            self._finish(rec, ChunkState.FAILED)
            return [Fail(rec.chunk, rec.attempts, ex), Discard(rec.chunk, rec.receipt)]
        rec.state = ChunkState.PENDING
        self._pending += 1
        return [Redeliver(rec.chunk, rec.receipt)]

    # -- workers --------------------------------------------------------
    def launched(self, workers: list[str], requested: int, now: float | None = None,
                 rates: Mapping[str, float] | None = None) -> None:
        """The backend started ``workers`` out of ``requested`` asked for.

        ``rates``: dollars per worker-second of those whose rate differs
        from the session's (a Spot session's On-Demand fallbacks); the
        spend, the budget and :meth:`worker_cost` price each at its own.
        """
        self.launching = max(0, self.launching - requested)
        self.alive.update(workers)
        if rates:
            self.worker_rate.update((w, rates[w]) for w in workers if w in rates)
        if now is not None:
            # Idle until they lease something: if the queue drains before a
            # worker comes up, it is retired before it costs anything more.
            for worker in workers:
                self.idle_since[worker] = now
                self.worker_start[worker] = now

    def adopt(self, alive: list[str], exits: list[WorkerExit], now: float) -> None:
        """An attached client takes over the session's workers from the previous client.

        ``alive`` still run: they count toward the workers wanted (none is
        launched twice over) and linger like launched ones. ``exits`` ended
        before the attach: a start notice of theirs still queued then
        redelivers its chunk at once instead of waiting for the lease to lapse.
        """
        self.launched(list(alive), 0, now)
        for ex in exits:
            self.exited[ex.worker] = ex

    def _held_by_strangers(self) -> bool:
        """Whether a chunk runs on a worker not alive here (one this client never
        launched nor adopted: a previous client's). Only a lapsed lease frees it,
        and then it needs a worker to take it, so none is retired meanwhile."""
        return any(rec.state is ChunkState.RUNNING and rec.holder not in self.alive
                   for rec in self.chunks.values())

    def worker_stopped(self, ex: WorkerExit) -> None:
        """A worker stopped: it no longer counts as alive, and its billing ends.

        Alone, for the workers the session's end stopped (their chunks are not
        lost: the client fails what is still outstanding).
        """
        self.alive.discard(ex.worker)
        self.idle_since.pop(ex.worker, None)
        self.exited[ex.worker] = ex
        if ex.worker in self.worker_start and ex.worker not in self.worker_stop:
            self.worker_stop[ex.worker] = self.last_tick

    def worker_exited(self, ex: WorkerExit) -> list[Action]:
        """A worker stopped; its running chunk, if any, was lost."""
        self.worker_stopped(ex)
        actions: list[Action] = []
        for rec in self.chunks.values():
            if rec.state is ChunkState.RUNNING and rec.holder == ex.worker:
                actions.extend(self._lost(rec, ex))
        return actions

    def throttled(self, now: float, seconds: float, requested: int) -> None:
        """The backend refused launches for now (throttling, capacity)."""
        self.launching = max(0, self.launching - requested)
        self.pacing.backoff(now, seconds)

    def stop(self) -> None:
        """No more launches (shutdown, budget)."""
        self.stopped = True

    # -- budget -------------------------------------------------------------
    def worker_seconds(self, now: float, min_seconds: float = 60.0) -> float:
        """Billable worker-seconds so far: from each launch, one-minute minimum."""
        seconds = 0.0
        for worker, start in self.worker_start.items():
            end = self.worker_stop.get(worker, now)
            seconds += max(min_seconds, end - start)
        return seconds

    def worker_cost(self, now: float, rate_per_second: float,
                    min_seconds: float = 60.0) -> float:
        """Dollars of billable worker time so far: from each launch, one-minute minimum,
        each worker at its own rate (:meth:`launched`), else at ``rate_per_second``."""
        dollars = 0.0
        for worker, start in self.worker_start.items():
            end = self.worker_stop.get(worker, now)
            dollars += (max(min_seconds, end - start)
                        * self.worker_rate.get(worker, rate_per_second))
        return dollars

    def spent(self, now: float) -> float:
        """Dollars committed so far (conservative: from launch, one-minute minimum)."""
        if self.budget is None:
            return 0.0
        return self.worker_cost(now, self.budget.rate_per_second, self.budget.min_seconds)

    def _running_rate(self, default: float) -> float:
        """Mean dollars per second of the workers alive (``default`` when none is):
        what the pending tasks will cost per second of work."""
        if not self.alive:
            return default
        return sum(self.worker_rate.get(w, default) for w in self.alive) / len(self.alive)

    def projected(self) -> float:
        """Dollars the pending tasks will still cost at the mean task time so far,
        at the mean rate of the workers alive."""
        if self.budget is None or not self._tasks_timed:
            return 0.0
        pending_tasks = sum(r.n for r in self.chunks.values() if r.state is ChunkState.PENDING)
        per_task = self._task_seconds / self._tasks_timed
        return pending_tasks * per_task * self._running_rate(self.budget.rate_per_second)

    def _check_budget(self, now: float) -> list[Action]:
        budget = self.budget
        if budget is None or self.draining:
            return []
        spent, projected = self.spent(now), self.projected()
        needed = 0.0
        if spent + projected <= budget.max_cost:
            if not self._pending or self.alive or self.launching or self._affordable(1, now):
                return []
            # Work waits, no worker is left to run it and none is affordable:
            # without this the run would wait forever.
            rate = (budget.rate_per_second if budget.launch_rate_per_second is None
                    else budget.launch_rate_per_second)
            needed = budget.min_seconds * rate
        self.draining = True
        self.stopped = True
        over = tuple(sorted(r.chunk for r in self.chunks.values()
                            if r.state is ChunkState.PENDING))
        for chunk in over:
            self._finish(self.chunks[chunk], ChunkState.CANCELLED)
        return [OverBudget(over, spent, projected, budget.max_cost, needed)]

    def _affordable(self, n: int, now: float) -> int:
        """How many of ``n`` new workers the budget can still pay one minute each for."""
        budget = self.budget
        if budget is None or n <= 0:
            return n
        left = budget.max_cost - self.spent(now) - self.projected()
        rate = (budget.rate_per_second if budget.launch_rate_per_second is None
                else budget.launch_rate_per_second)
        per_worker = budget.min_seconds * rate
        return max(0, min(n, int(left // per_worker))) if per_worker > 0 else n

    def tick(self, now: float) -> list[Action]:
        """Decide launches and retirements at ``now``."""
        self.last_tick = now
        actions: list[Action] = self._check_budget(now)
        if self.draining:
            busy = {r.holder for r in self.chunks.values() if r.state is ChunkState.RUNNING}
            idle = tuple(sorted(w for w in self.alive if w not in busy))
            if idle:
                self.alive.difference_update(idle)
                actions.append(Retire(idle))
            return actions
        if self.linger is not None and self._pending == 0:
            idle = tuple(sorted(w for w, since in self.idle_since.items()
                                if now - since >= self.linger and w in self.alive))
            if idle and not self._held_by_strangers():
                for worker in idle:
                    self.alive.discard(worker)
                    self.idle_since.pop(worker, None)
                actions.append(Retire(idle))
        if self.stopped:
            return actions
        wanted = min(self.max_workers, self._outstanding)
        deficit = self._affordable(wanted - len(self.alive) - self.launching, now)
        n = self.pacing.allow(deficit, now)
        if n > 0:
            self.launching += n
            actions.append(Launch(n))
        return actions

    def wants_workers(self) -> bool:
        """Whether more workers are wanted than are alive or launching."""
        return (not self.stopped and
                min(self.max_workers, self._outstanding) > len(self.alive) + self.launching)

    # -- views ----------------------------------------------------------
    @property
    def outstanding(self) -> int:
        """Chunks pending or running."""
        return self._outstanding

    @property
    def pending(self) -> int:
        """Chunks waiting for a worker."""
        return self._pending

    def counts(self) -> dict[str, int]:
        """Chunks by state, plus total attempts."""
        out = {state.value: 0 for state in ChunkState}
        attempts = 0
        for rec in self.chunks.values():
            out[rec.state.value] += 1
            attempts += rec.attempts
        out["attempts"] = attempts
        return out
