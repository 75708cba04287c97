"""The scale model: the real scheduler driven by a discrete-event model of Fargate.

This machine cannot run 1,000 Fargate tasks, so starburst plans at scale
by simulation. :func:`simulate` feeds :class:`~starburst.scheduler.Scheduler`
(the same object the client drives: chunk records, worker count, launch
pacing, leases, redelivery, retirement) with events from a model of
Fargate and a simulated clock; chunk sizes come from the real
:func:`~starburst.chunking.chunk_plan`. Nothing of the scheduling logic is
copied here: the model only decides *when* things happen.

The model (:class:`FargateModel`), with its sources:

* cold start (RunTask to the container running) uniform in 30-90 s:
  "Fargate cold start typically 30-90 s, most of it image pull" (AWS
  containers roadmap and blog measurements; the R staRburst measured
  75-90 s in us-east-1). A share ``pull_fraction`` of it is image pull,
  which is billed (billing starts at ``pullStartedAt``).
* RunTask: at most 10 tasks per call, about 20 calls/s; Fargate launches
  about 20 tasks/s sustained with a burst of 100 (AWS ECS service quotas
  and throttling documentation).
* vCPU quota (Service Quotas ``L-3032A538``) caps concurrent workers.
* per-chunk overhead: one SQS receive, two notices and a delete, ~30 ms
  each within a region.
* lost workers: exponential lifetimes at ``worker_loss_per_hour``.

:func:`lower_bound` is the earliest finish any scheduler could reach with
the same launch pacing and the same cold starts, with tasks kept whole
(a task runs on one worker). :func:`simulate_seed_design` models the
original R design: one container per task, submitted serially, waves as
barriers.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from .chunking import chunk_plan
from .pricing import MINIMUM_SECONDS, hourly_rate, lookup
from .scheduler import Discard, Fail, Launch, Redeliver, Retire, Scheduler
from .scheduling.events import WorkerExit
from .scheduling.pacing import LaunchPacing

__all__ = ["FargateModel", "SimResult", "Workload", "lower_bound", "simulate",
           "simulate_seed_design"]


@dataclass(frozen=True)
class FargateModel:
    """How Fargate behaves, for the scale model (sources in the module docstring)."""

    cold_start_min: float = 30.0
    cold_start_max: float = 90.0
    pull_fraction: float = 0.6
    tasks_per_call: int = 10
    calls_per_second: float = 20.0
    launches_per_second: float = 20.0
    launch_burst: float = 100.0
    quota_vcpu: float = math.inf
    chunk_overhead: float = 0.12
    worker_loss_per_hour: float = 0.0
    idle_timeout: float = 60.0
    linger: float = 5.0
    max_attempts: int = 3

    def pacing(self) -> LaunchPacing:
        """Fresh token buckets with this model's rates."""
        return LaunchPacing(tasks_per_call=self.tasks_per_call,
                            calls_per_second=self.calls_per_second,
                            launches_per_second=self.launches_per_second,
                            launch_burst=self.launch_burst)


@dataclass(frozen=True)
class Workload:
    """What runs: ``tasks`` tasks of ``task_seconds`` (fixed, or a uniform range)."""

    tasks: int
    task_seconds: float | tuple[float, float]
    workers: int
    cpu: float = 1.0
    memory_mib: int = 2048
    region: str = "us-east-1"
    arch: str = "x86_64"

    def durations(self, seed: int) -> list[float]:
        """Task durations, reproducible from ``seed``."""
        if isinstance(self.task_seconds, tuple):
            lo, hi = self.task_seconds
            rng = random.Random(seed * 2 + 2)
            return [rng.uniform(lo, hi) for _ in range(self.tasks)]
        return [float(self.task_seconds)] * self.tasks

    def effective_workers(self, model: FargateModel) -> int:
        """Workers the quota allows (at least one)."""
        fit = model.quota_vcpu / self.cpu
        return max(1, min(self.workers, int(fit) if math.isfinite(fit) else self.workers))

    def rate_per_second(self) -> float:
        """Dollars per worker-second."""
        return hourly_rate(lookup(self.region, self.arch), self.cpu, self.memory_mib) / 3600


@dataclass
class SimResult:
    """Outcome of one simulated run."""

    makespan: float
    cost: float
    workers_launched: int
    chunks: int = 0
    attempts: int = 0
    failed_tasks: int = 0
    worker_seconds: float = 0.0
    lower_bound_makespan: float = 0.0
    lower_bound_cost: float = 0.0

    @property
    def makespan_ratio(self) -> float:
        """Makespan over its lower bound (1.0 is optimal)."""
        return self.makespan / self.lower_bound_makespan if self.lower_bound_makespan else 0.0

    @property
    def cost_ratio(self) -> float:
        """Cost over its lower bound."""
        return self.cost / self.lower_bound_cost if self.lower_bound_cost else 0.0


def _cold_starts(model: FargateModel, seed: int) -> random.Random:
    return random.Random(seed * 2 + 1)


def _launch_times(count: int, model: FargateModel) -> list[float]:
    """The earliest times ``count`` launches can happen under the model's pacing."""
    pacing = model.pacing()
    times: list[float] = []
    now = 0.0
    step = 1.0 / max(model.launches_per_second, model.calls_per_second)
    while len(times) < count:
        n = pacing.allow(count - len(times), now)
        times.extend([now] * n)
        now += step
    return times


def lower_bound(durations: Sequence[float], workers: int, model: FargateModel, *,
                seed: int = 0, rate_per_second: float = 0.0) -> tuple[float, float]:
    """(makespan, cost) no scheduler can beat under the same pacing and cold starts.

    Workers launch as early as the pacing allows and come up after the
    same cold starts the simulation draws (in launch order). Identical
    tasks: greedy earliest-finish assignment, which is optimal for equal
    tasks on machines with availability times. Otherwise: the larger of
    the fluid bound (work split freely over available workers) and the
    first availability plus the longest task. The cost bound pays each
    used worker's image pull and the work once, at least one minute each.
    """
    n = len(durations)
    if n == 0:
        return 0.0, 0.0
    rng = _cold_starts(model, seed)
    colds = [rng.uniform(model.cold_start_min, model.cold_start_max) for _ in range(workers)]
    launches = _launch_times(workers, model)
    avail = sorted((t + c, c) for t, c in zip(launches, colds, strict=True))
    total = float(sum(durations))
    used: list[float] = []
    if len(set(durations)) == 1:
        d = durations[0]
        heap = [(a + d, i) for i, (a, _) in enumerate(avail)]
        heapq.heapify(heap)
        finish = 0.0
        taken: set[int] = set()
        for _ in range(n):
            end, i = heapq.heappop(heap)
            finish = max(finish, end)
            taken.add(i)
            heapq.heappush(heap, (end + d, i))
        makespan = finish
        used = [avail[i][1] for i in taken]
    else:
        times = [a for a, _ in avail]
        fluid = math.inf
        for k in range(1, len(times) + 1):
            # Only the first k workers are up before T.
            t = (total + sum(times[:k])) / k
            if k == len(times) or t <= times[k]:
                fluid = t
                break
        makespan = max(fluid, times[0] + max(durations))
        used = [c for a, c in avail if a < makespan][: n]
    pulls = sum(c * model.pull_fraction for c in used)
    cost = rate_per_second * max(MINIMUM_SECONDS * len(used), pulls + total)
    return makespan, cost


@dataclass
class _Worker:
    pull_at: float
    stopped_at: float | None = None
    chunk: int | None = None
    version: int = 0


@dataclass(order=True)
class _Event:
    time: float
    seq: int
    kind: str = field(compare=False)
    worker: str = field(compare=False, default="")
    chunk: int = field(compare=False, default=-1)
    version: int = field(compare=False, default=0)


def simulate(workload: Workload, model: FargateModel | None = None, *,
             seed: int = 0) -> SimResult:
    """Run ``workload`` through the real scheduler on the Fargate model."""
    model = model or FargateModel()
    durations = workload.durations(seed)
    workers = workload.effective_workers(model)
    rate = workload.rate_per_second()
    sizes = chunk_plan(len(durations), workers)
    chunk_time: list[float] = []
    start = 0
    for size in sizes:
        chunk_time.append(sum(durations[start : start + size]) + model.chunk_overhead)
        start += size
    sched = Scheduler(max_workers=workers, max_attempts=model.max_attempts,
                      pacing=model.pacing(), linger=model.linger)
    for cid, size in enumerate(sizes):
        sched.submit(cid, size)
    queue: deque[int] = deque(range(len(sizes)))
    colds = _cold_starts(model, seed)
    losses = random.Random(seed * 2 + 3)
    pool: dict[str, _Worker] = {}
    idle: set[str] = set()
    events: list[_Event] = []
    seq = itertools.count()
    ids = itertools.count()
    failed = 0
    finished = 0
    last_done = 0.0
    tick_pending = False

    def push(time: float, kind: str, worker: str = "", chunk: int = -1, version: int = 0) -> None:
        heapq.heappush(events, _Event(time, next(seq), kind, worker, chunk, version))

    def stop(worker: str, now: float) -> None:
        w = pool[worker]
        if w.stopped_at is None:
            w.stopped_at = now  # before pull_at: stopped before billing began
            w.version += 1
        idle.discard(worker)

    def act(actions: Sequence[object], now: float) -> None:
        nonlocal failed, finished
        for action in actions:
            if isinstance(action, Launch):
                new = [f"w{next(ids)}" for _ in range(action.count)]
                sched.launched(new, action.count, now)
                for worker in new:
                    cold = colds.uniform(model.cold_start_min, model.cold_start_max)
                    pool[worker] = _Worker(pull_at=now + cold * (1 - model.pull_fraction))
                    push(now + cold, "ready", worker)
                    if model.worker_loss_per_hour > 0:
                        life = losses.expovariate(model.worker_loss_per_hour / 3600)
                        push(now + cold + life, "death", worker)
            elif isinstance(action, Retire):
                for worker in action.workers:
                    stop(worker, now)
            elif isinstance(action, Redeliver):
                queue.appendleft(action.chunk)
            elif isinstance(action, Fail):
                failed += sizes[action.chunk]
                finished += 1
            elif isinstance(action, Discard):
                continue

    def serve(worker: str, now: float) -> None:
        w = pool[worker]
        while queue:
            cid = queue.popleft()
            actions = sched.started(cid, worker, str(cid), now)
            act(actions, now)
            rec = sched.chunks.get(cid)
            if rec is not None and rec.holder == worker:
                w.chunk = cid
                idle.discard(worker)
                push(now + chunk_time[cid], "done", worker, cid, w.version)
                return
        w.chunk = None
        idle.add(worker)
        w.version += 1
        push(now + model.idle_timeout, "idle", worker, version=w.version)
        push(now + model.linger, "tick")

    def tick(now: float) -> None:
        nonlocal tick_pending
        act(sched.tick(now), now)
        while queue and idle:
            serve(min(idle), now)
        if sched.wants_workers() and not tick_pending:
            tick_pending = True
            push(now + 1.0 / max(model.launches_per_second, 1.0), "tick")

    tick(0.0)
    while events and finished < len(sizes):
        ev = heapq.heappop(events)
        now = ev.time
        w = pool.get(ev.worker) if ev.worker else None
        if ev.kind == "tick":
            tick_pending = False
        elif ev.kind == "ready" and w is not None and w.stopped_at is None:
            serve(ev.worker, now)
        elif ev.kind == "done" and w is not None and w.version == ev.version \
                and w.stopped_at is None:
            if sched.finished(ev.chunk, now):
                finished += 1
                last_done = now
            w.chunk = None
            serve(ev.worker, now)
        elif ev.kind == "idle" and w is not None and w.version == ev.version \
                and w.stopped_at is None and w.chunk is None:
            stop(ev.worker, now)
            act(sched.worker_exited(WorkerExit(ev.worker, exit_code=0)), now)
        elif ev.kind == "death" and w is not None and w.stopped_at is None:
            stop(ev.worker, now)
            w.chunk = None
            act(sched.worker_exited(WorkerExit(ev.worker, exit_code=137, signal="SIGKILL")),
                now)
        tick(now)
    for worker in pool:
        stop(worker, last_done)  # shutdown stops every worker when the work is done
    seconds = [max(MINIMUM_SECONDS, (w.stopped_at or last_done) - w.pull_at)
               for w in pool.values() if (w.stopped_at or last_done) > w.pull_at]
    lb_makespan, lb_cost = lower_bound(durations, workers, model, seed=seed,
                                       rate_per_second=rate)
    return SimResult(makespan=last_done, cost=rate * sum(seconds), workers_launched=len(pool),
                     chunks=len(sizes), attempts=sched.total_attempts, failed_tasks=failed,
                     worker_seconds=sum(seconds), lower_bound_makespan=lb_makespan,
                     lower_bound_cost=lb_cost)


def simulate_seed_design(workload: Workload, model: FargateModel | None = None, *,
                         seed: int = 0, submit_rate: float = 1.5) -> SimResult:
    """The original R design: one container per task, serial submission, waves as barriers.

    ``submit_rate`` is tasks per second of the serial RunTask loop (the R
    implementation measured about 1.5). Each wave holds as many tasks as
    the quota allows workers; the next wave starts when the slowest task
    of the previous one has finished.
    """
    model = model or FargateModel()
    durations = workload.durations(seed)
    workers = workload.effective_workers(model)
    rate = workload.rate_per_second()
    colds = _cold_starts(model, seed)
    clock = 0.0
    seconds = 0.0
    for wave_start in range(0, len(durations), workers):
        wave = durations[wave_start : wave_start + workers]
        end = clock
        for i, d in enumerate(wave):
            submitted = clock + i / submit_rate
            cold = colds.uniform(model.cold_start_min, model.cold_start_max)
            pull_at = submitted + cold * (1 - model.pull_fraction)
            finish = submitted + cold + d
            seconds += max(MINIMUM_SECONDS, finish - pull_at)
            end = max(end, finish)
        clock = end
    lb_makespan, lb_cost = lower_bound(durations, workers, model, seed=seed,
                                       rate_per_second=rate)
    return SimResult(makespan=clock, cost=rate * seconds, workers_launched=len(durations),
                     chunks=len(durations), attempts=len(durations), worker_seconds=seconds,
                     lower_bound_makespan=lb_makespan, lower_bound_cost=lb_cost)
