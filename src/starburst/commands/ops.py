"""``starburst status | sessions | cost | logs | cleanup``: sessions in the store, their
workers on ECS (Fargate tasks) and on AWS Batch (GPU jobs)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import click

from ..cost import format_money
from ._common import aws_errors, echo_json, json_option, region_option, table

__all__ = ["cleanup", "cost", "logs", "sessions", "status"]


def _when(epoch: float | None) -> str:
    if not epoch:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _place(region: str | None) -> Any:
    from ..aws.inventory import Place
    return Place.from_config(region)


def _states(items: list[Any], key: str) -> dict[str, int]:
    """How many of ``items`` are in each state (``item[key]``)."""
    states: dict[str, int] = {}
    for item in items:
        states[item.get(key, "?")] = states.get(item.get(key, "?"), 0) + 1
    return states


def _running(tasks: list[Any], jobs: list[Any]) -> int:
    """Workers that may still run (and bill): ECS tasks not stopped, Batch jobs not done."""
    from ..aws import inventory
    return sum(map(inventory.task_active, tasks)) + sum(map(inventory.job_active, jobs))


def _summary(place: Any, session: str, tasks: list[Any], jobs: list[Any],
             queues: list[str]) -> dict[str, Any]:
    from ..admin import ops
    record = ops.read_record(place, session)
    return {"session": session, "state": record.state if record else "gone",
            "created": record.created if record else None,
            "detached": record.detached if record else None,
            "workers": record.workers if record else None,
            "tasks": _states(tasks, "lastStatus"), "gpu_jobs": _states(jobs, "status"),
            "running": _running(tasks, jobs), "queues": len(queues),
            "ended": ops.session_gone(record)}


def _counts(states: dict[str, int]) -> str:
    return ", ".join(f"{n} {k.lower()}" for k, n in states.items()) or "-"


@click.command(short_help="A session's state, workers and queues (all sessions: none given).")
@click.argument("session", required=False)
@region_option
@json_option
def status(session: str | None, region: str | None, as_json: bool) -> None:
    """Show one session (record state, ECS tasks and GPU jobs by status, running workers,
    queues), or every session."""
    with aws_errors():
        from ..admin import ops
        from ..aws import inventory
        place = _place(region)
        names = [session] if session else [r.session for r in ops.list_records(place)]
        tasks = inventory.tagged_sessions(place)
        jobs = inventory.tagged_jobs(place, session)
        queues = inventory.queue_sessions(place)
        rows = [_summary(place, s, tasks.get(s, []), jobs.get(s, []), queues.get(s, []))
                for s in names]
    if as_json:
        echo_json(rows[0] if session else rows)
        return
    if not rows:
        click.echo(f"No sessions in s3://{place.bucket}/{place.key('sessions/')}")
        return
    table("starburst sessions", ["session", "state", "created (UTC)", "workers", "running",
                                 "tasks", "GPU jobs", "queues"],
          [[r["session"], r["state"], _when(r["created"]), r["workers"] or "-", r["running"],
            _counts(r["tasks"]), _counts(r["gpu_jobs"]), r["queues"]] for r in rows])


@click.command(short_help="List the sessions recorded in the store.")
@region_option
@json_option
def sessions(region: str | None, as_json: bool) -> None:
    """List the session records (sessions/ID/record.json) under the configured bucket
    and prefix, with how many of each session's workers (ECS tasks, GPU jobs) may
    still be running."""
    with aws_errors():
        from ..admin import ops
        from ..aws import inventory
        place = _place(region)
        records = ops.list_records(place)
        tasks = inventory.tagged_sessions(place)
        jobs = inventory.tagged_jobs(place)
    running = {r.session: _running(tasks.get(r.session, []), jobs.get(r.session, []))
               for r in records}
    if as_json:
        echo_json([{"session": r.session, "state": r.state, "created": r.created,
                    "detached": r.detached, "deadline": r.deadline, "workers": r.workers,
                    "running": running[r.session], "backend": _backend(r)}
                   for r in records])
        return
    table(f"sessions in s3://{place.bucket}/{place.key('sessions/')}",
          ["session", "state", "created (UTC)", "detached", "workers", "running", "backend"],
          [[r.session, r.state, _when(r.created), "yes" if r.detached else "no", r.workers,
            running[r.session], _backend(r)] for r in records])


def _backend(record: Any) -> str:
    """The backend a session ran on: ``batch`` for GPU workers (``backend="fargate"`` with
    ``gpu=`` runs on AWS Batch too)."""
    return "batch" if record.options.get("gpu") is not None else str(record.backend)


class _Rates:
    """Hourly rate of each worker of one session, by kind, with where each comes from.

    A Fargate task is priced by its capacity provider (``FARGATE_SPOT``: the
    Spot rate in use, from the session's ``spot_discount=``, the cached Spot
    price or AWS's advertised discount; else On-Demand), its architecture,
    CPU and memory; a GPU job by its job queue's instance type and capacity,
    at the instance price (the session's ``instance_rate=`` when recorded)
    divided among the workers one instance holds. A price that cannot be
    found leaves that kind at $0 and says why, rather than failing the report.
    """

    def __init__(self, region: str, options: dict[str, Any]) -> None:
        self.region = region
        self.options = options
        self.kinds: dict[str, dict[str, Any]] = {}

    def _kind(self, label: str, price: Any) -> dict[str, Any]:
        if label not in self.kinds:
            from ..exceptions import ConfigurationError
            try:
                rate, source = price()
            except ConfigurationError as exc:
                rate, source = 0.0, f"not priced: {exc}"
            self.kinds[label] = {"hourly_rate": rate, "source": source, "workers": 0,
                                 "computed": 0.0}
        return self.kinds[label]

    def task(self, task: Any) -> dict[str, Any]:
        """The kind of an ECS task (Fargate or Fargate Spot, architecture, size)."""
        from ..backends.fargate import SPOT
        from ..pricing import hourly_rate, lookup
        from ..pricing_cache import spot_price_in_use, table_in_use
        from ..session import WORKER_OPTION
        arch = next((a.get("value") for a in task.get("attributes", [])
                     if a.get("name") == "ecs.cpu-architecture"), None) or str(
            (self.options.get(WORKER_OPTION) or {}).get("arch") or "x86_64")
        cpu, memory = int(task.get("cpu", "1024")) / 1024, int(task.get("memory", "2048"))
        spot = task.get("capacityProviderName") == SPOT
        discount = self.options.get("spot_discount")

        def price() -> tuple[float, str]:
            fargate = spot_price_in_use(
                self.region, arch, discount=float(discount) if isinstance(discount, (int, float))
                and not isinstance(discount, bool) else None
            ) if spot else lookup(self.region, arch, table=table_in_use())
            return (hourly_rate(fargate, cpu, memory, public_ip=True),
                    f"{fargate.source}, recorded {fargate.recorded}")

        return self._kind(f"Fargate{' Spot' if spot else ''} {arch} {cpu:g} vCPU "
                          f"{memory} MiB", price)

    def job(self, job: Any) -> dict[str, Any]:
        """The kind of a GPU worker's Batch job (its job queue's instance and capacity)."""
        from ..backends.batch import queue_instance, worker_price
        queue = str(job.get("jobQueue", ""))

        def price() -> tuple[float, str]:
            return worker_price(queue, self.region, rate=self.options.get("instance_rate"))

        from ..exceptions import ConfigurationError
        try:
            instance, spot = queue_instance(queue)
            label = f"GPU {instance.instance_type}{' Spot' if spot else ''}"
        except ConfigurationError:  # priced as "not priced", with the cause, by _kind
            label = f"GPU {queue.rsplit('/', 1)[-1]}"
        return self._kind(label, price)

    def add(self, kind: dict[str, Any], started: float | None, stopped: float | None) -> float:
        """Count one worker of ``kind`` and its cost (none if it never started)."""
        from ..pricing import task_cost
        kind["workers"] += 1
        if started is None:
            return 0.0
        dollars = task_cost(kind["hourly_rate"], started, stopped or time.time())
        kind["computed"] += dollars
        return dollars


@click.command(short_help="A session's cost: estimated vs computed from worker runtimes.")
@click.argument("session")
@region_option
@json_option
def cost(session: str, region: str | None, as_json: bool) -> None:
    """Compare the estimate (hourly rate x workers x wall time, each worker billed at
    least a minute) with the cost computed
    from each worker's runtime (per second, one-minute minimum): an ECS task's
    pullStartedAt..stoppedAt at its capacity provider's rate (Fargate Spot tasks at the
    Spot rate), a GPU job's startedAt..stoppedAt at its instance's rate. Computed from
    runtimes, not read from your bill; ECS forgets stopped tasks after about an hour,
    AWS Batch finished jobs after a day or more."""
    with aws_errors():
        from ..admin import ops
        from ..aws import inventory
        from ..backends.batch import job_exit
        from ..backends.fargate import task_exit
        from ..cost import LABEL
        from ..pricing import billed_seconds
        place = _place(region)
        record = ops.read_record(place, session)
        tasks = inventory.session_tasks(place, session)
        jobs = inventory.session_jobs(place, session)
        rates = _Rates(place.region, record.options if record else {})
        computed = worker_s = 0.0
        first, last = time.time(), 0.0
        runs = [(rates.task(t), task_exit(t)) for t in tasks] + [
            (rates.job(j), job_exit(j, j.get("jobName", ""), spot=False)) for j in jobs]
        for kind, ex in runs:
            dollars = rates.add(kind, ex.started_at, ex.stopped_at)
            if ex.started_at is None:
                continue
            stop = ex.stopped_at or time.time()
            first, last = min(first, ex.started_at), max(last, stop)
            computed += dollars
            worker_s += dollars / kind["hourly_rate"] * 3600 if kind["hourly_rate"] else 0.0
        # The estimate uses the rate most of the session's workers ran at.
        main = max(rates.kinds.values(), key=lambda k: k["workers"], default=None)
        rate = main["hourly_rate"] if main else 0.0
        workers = record.workers if record else len(runs)
        start_at = record.created if record else first
        wall = max(0.0, (last or time.time()) - start_at)
        # Like with like: each worker is billed at least a minute, as in the computed figure.
        billed = billed_seconds(0.0, wall)
        estimated = rate * workers * billed / 3600
    out = {"session": session, "state": record.state if record else "gone",
           "tasks": len(tasks), "gpu_jobs": len(jobs), "hourly_rate": rate,
           "workers": workers, "wall_seconds": wall, "billed_seconds_per_worker": billed,
           "estimated": estimated,
           "computed": computed, "worker_seconds": worker_s, "rates": rates.kinds,
           "note": LABEL}
    if as_json:
        echo_json(out)
        return
    if not runs:
        click.echo(f"session {session}: neither ECS nor AWS Batch knows workers of it (none "
                   "ran, or they stopped too long ago); nothing to compute.")
        return
    table(f"cost of session {session} ({LABEL})", ["", "dollars", "basis"], [
        ["estimated", format_money(estimated, 3),
         f"{workers} workers x {format_money(rate, 3)}/h x {billed:,.0f} s ({wall:,.0f} s "
         "wall, one-minute minimum)"],
        ["computed", format_money(computed, 3),
         f"{len(tasks)} tasks, {len(jobs)} GPU jobs, {worker_s:,.0f} billed "
         "worker-seconds"],
        *[[f"  {label}", format_money(k["computed"], 3),
           f"{k['workers']} x {format_money(k['hourly_rate'], 3)}/h ({k['source']})"]
          for label, k in rates.kinds.items()]])


def _short(worker: str, session: str) -> str:
    """A worker's name in a log line: a GPU job's ``w<n>`` (its name less the session), an
    ECS task id's first 8 characters."""
    return worker.removeprefix(f"{session}-") if worker.startswith(f"{session}-") \
        else worker[:8]


@click.command(short_help="Print what a session's workers wrote (CloudWatch Logs).")
@click.argument("session")
@click.option("--worker", default=None,
              help="Only this worker (ECS task id or ARN; GPU job name, e.g. SESSION-w1, or "
                   "job id).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
@click.option("--since", default=None, help="Only lines newer than this (30s, 10m, 2h, 1d).")
@region_option
@json_option
def logs(session: str, worker: str | None, follow: bool, since: str | None,
         region: str | None, as_json: bool) -> None:
    """Print the session's worker output (Fargate tasks and GPU jobs), oldest first, one
    line per event."""
    from ..admin import ops
    try:
        start = int((time.time() - ops.parse_since(since)) * 1000) if since else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from exc
    seen: set[tuple[str, int, str]] = set()
    with aws_errors():
        place = _place(region)
        while True:
            events = ops.session_logs(place, session, worker=worker, start_ms=start)
            fresh = [e for e in events
                     if (e["worker"], e["time"], e["message"]) not in seen]
            for e in fresh:
                seen.add((e["worker"], e["time"], e["message"]))
                if as_json:
                    echo_json(e) if not follow else click.echo(
                        f'{{"worker": "{e["worker"]}", "time": {e["time"]}, '
                        f'"message": {e["message"]!r}}}')
                else:
                    click.echo(f"{_when(e['time'] / 1000)} {_short(e['worker'], session)} "
                               f"{e['message']}")
            if not follow:
                return
            if fresh:
                start = max(e["time"] for e in fresh)
            time.sleep(2.0)


@click.command(short_help="Stop workers, delete queues and run data of ended sessions.")
@click.argument("session", required=False)
@click.option("--orphans", is_flag=True,
              help="Every session whose record is gone or ended, but whose tasks, GPU "
                   "jobs, queues or run data remain.")
@click.option("--local", "local", is_flag=True,
              help="Local sessions on this machine instead (their worker processes and "
                   "directories in STARBURST_LOCAL_DIR, else the temp dir); needs no AWS.")
@click.option("--min-age", type=float, default=600.0, show_default=True,
              help="With --orphans, leave queues younger than this many seconds (a session "
                   "that is starting has queues before its record); with --local, leave a "
                   "session whose client beat this recently.")
@click.option("--dry-run", is_flag=True, help="Say what would go; touch nothing.")
@region_option
@json_option
def cleanup(session: str | None, orphans: bool, local: bool, min_age: float, dry_run: bool,
            region: str | None, as_json: bool) -> None:
    """Clean up SESSION, or with --orphans every ended session's leftovers: ECS tasks are
    stopped, GPU workers' AWS Batch jobs terminated (queued ones cancelled), queues and
    run data deleted. With --local, the same for local sessions: worker processes
    stopped, session directories deleted (a detached one once it ended or its
    session_timeout passed, one whose client died once no worker runs)."""
    if bool(session) == orphans:
        raise click.UsageError("give a SESSION or --orphans (not both)")
    if local:
        from ..admin.local_cleanup import clean_local_orphans, clean_local_session
        actions = clean_local_orphans(min_age=min_age, dry_run=dry_run) if orphans else \
            clean_local_session(str(session), dry_run=dry_run)
    else:
        with aws_errors():
            from ..admin.cleanup import clean_orphans, clean_session
            place = _place(region)
            actions = clean_orphans(place, min_age=min_age, dry_run=dry_run) if orphans else \
                clean_session(place, str(session), dry_run=dry_run)
    if as_json:
        echo_json({"dry_run": dry_run, "actions": actions})
        return
    if not actions:
        click.echo("Nothing to clean up.")
    for action in actions:
        click.echo(f"{'would ' if dry_run else ''}{action}")
