"""``starburst status | sessions | cost | logs | cleanup``: sessions in the store and on ECS."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import click

from ._common import aws_errors, echo_json, json_option, region_option, table

__all__ = ["cleanup", "cost", "logs", "sessions", "status"]


def _when(epoch: float | None) -> str:
    if not epoch:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _place(region: str | None) -> Any:
    from ..aws.ops import Place
    return Place.from_config(region)


def _summary(place: Any, session: str) -> dict[str, Any]:
    from ..aws import ops
    record = ops.read_record(place, session)
    tasks = ops.session_tasks(place, session)
    queues = ops.queue_sessions(place).get(session, [])
    states: dict[str, int] = {}
    for t in tasks:
        states[t.get("lastStatus", "?")] = states.get(t.get("lastStatus", "?"), 0) + 1
    return {"session": session, "state": record.state if record else "gone",
            "created": record.created if record else None,
            "detached": record.detached if record else None,
            "workers": record.workers if record else None,
            "tasks": states, "queues": len(queues), "ended": ops.session_gone(record)}


@click.command(short_help="A session's state, tasks and queues (all sessions: none given).")
@click.argument("session", required=False)
@region_option
@json_option
def status(session: str | None, region: str | None, as_json: bool) -> None:
    """Show one session (record state, ECS tasks by status, queues), or every session."""
    with aws_errors():
        from ..aws import ops
        place = _place(region)
        names = [session] if session else [r.session for r in ops.list_records(place)]
        rows = [_summary(place, s) for s in names]
    if as_json:
        echo_json(rows[0] if session else rows)
        return
    if not rows:
        click.echo(f"No sessions in s3://{place.bucket}/{place.key('sessions/')}")
        return
    table("starburst sessions", ["session", "state", "created (UTC)", "workers", "tasks",
                                 "queues"],
          [[r["session"], r["state"], _when(r["created"]), r["workers"] or "-",
            ", ".join(f"{n} {k.lower()}" for k, n in r["tasks"].items()) or "-",
            r["queues"]] for r in rows])


@click.command(short_help="List the sessions recorded in the store.")
@region_option
@json_option
def sessions(region: str | None, as_json: bool) -> None:
    """List ``sessions/*/record.json`` under the configured bucket and prefix."""
    with aws_errors():
        from ..aws import ops
        place = _place(region)
        records = ops.list_records(place)
    if as_json:
        echo_json([{"session": r.session, "state": r.state, "created": r.created,
                    "detached": r.detached, "deadline": r.deadline, "workers": r.workers,
                    "backend": r.backend} for r in records])
        return
    table(f"sessions in s3://{place.bucket}/{place.key('sessions/')}",
          ["session", "state", "created (UTC)", "detached", "workers", "backend"],
          [[r.session, r.state, _when(r.created), "yes" if r.detached else "no", r.workers,
            r.backend] for r in records])


@click.command(short_help="A session's cost: estimated vs computed from task runtimes.")
@click.argument("session")
@region_option
@json_option
def cost(session: str, region: str | None, as_json: bool) -> None:
    """Compare the estimate (hourly rate x workers x wall time) with the cost computed
    from each ECS task's pullStartedAt..stoppedAt (per second, one-minute minimum).
    Computed from task runtimes, not read from your bill; ECS forgets stopped tasks
    after about an hour."""
    with aws_errors():
        from ..aws import ops
        from ..backends.fargate import task_exit
        from ..cost import LABEL
        from ..pricing import hourly_rate, lookup, task_cost
        from ..pricing_cache import table_in_use
        place = _place(region)
        record = ops.read_record(place, session)
        tasks = ops.session_tasks(place, session)
        price = lookup(place.region, "x86_64", table=table_in_use())
        computed = worker_s = rate = 0.0
        first, last = time.time(), 0.0
        for task in tasks:
            rate = hourly_rate(price, int(task.get("cpu", "1024")) / 1024,
                               int(task.get("memory", "2048")), public_ip=True)
            ex = task_exit(task)
            start = ex.started_at or time.time()
            stop = ex.stopped_at or time.time()
            first, last = min(first, start), max(last, stop)
            dollars = task_cost(rate, start, stop)
            computed += dollars
            worker_s += dollars / rate * 3600 if rate else 0.0
        workers = record.workers if record else len(tasks)
        start_at = record.created if record else first
        wall = max(0.0, (last or time.time()) - start_at)
        estimated = rate * workers * wall / 3600
    out = {"session": session, "state": record.state if record else "gone",
           "tasks": len(tasks), "hourly_rate": rate, "workers": workers,
           "wall_seconds": wall, "estimated": estimated, "computed": computed,
           "worker_seconds": worker_s, "note": LABEL}
    if as_json:
        echo_json(out)
        return
    if not tasks:
        click.echo(f"session {session}: ECS knows no tasks of it (none ran, or they stopped "
                   "over an hour ago); nothing to compute.")
        return
    table(f"cost of session {session} ({LABEL})", ["", "dollars", "basis"], [
        ["estimated", f"${estimated:,.4f}",
         f"{workers} workers x ${rate:,.4f}/h x {wall:,.0f} s wall"],
        ["computed", f"${computed:,.4f}",
         f"{len(tasks)} tasks, {worker_s:,.0f} billed worker-seconds"]])


@click.command(short_help="Print what a session's workers wrote (CloudWatch Logs).")
@click.argument("session")
@click.option("--worker", default=None, help="Only this worker (ECS task id or ARN).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
@click.option("--since", default=None, help="Only lines newer than this (30s, 10m, 2h, 1d).")
@region_option
@json_option
def logs(session: str, worker: str | None, follow: bool, since: str | None,
         region: str | None, as_json: bool) -> None:
    """Print the session's worker output, oldest first, one line per event."""
    from ..aws import ops
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
                    click.echo(f"{_when(e['time'] / 1000)} {e['worker'][:8]} {e['message']}")
            if not follow:
                return
            if fresh:
                start = max(e["time"] for e in fresh)
            time.sleep(2.0)


@click.command(short_help="Stop tasks, delete queues and run data of ended sessions.")
@click.argument("session", required=False)
@click.option("--orphans", is_flag=True,
              help="Every session whose record is gone or ended, but whose tasks, queues "
                   "or run data remain.")
@click.option("--min-age", type=float, default=600.0, show_default=True,
              help="With --orphans, leave queues younger than this many seconds (a session "
                   "that is starting has queues before its record).")
@click.option("--dry-run", is_flag=True, help="Say what would go; touch nothing.")
@region_option
@json_option
def cleanup(session: str | None, orphans: bool, min_age: float, dry_run: bool,
            region: str | None, as_json: bool) -> None:
    """Clean up SESSION, or with --orphans every ended session's leftovers."""
    if bool(session) == orphans:
        raise click.UsageError("give a SESSION or --orphans (not both)")
    with aws_errors():
        from ..aws.cleanup import clean_orphans, clean_session
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
