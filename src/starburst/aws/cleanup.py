"""Clean up a session's leftovers: its tasks, queues and run data."""

from __future__ import annotations

from botocore.exceptions import ClientError

from . import ops, provision
from .clients import client
from .errors import error_code, translate_errors

__all__ = ["clean_orphans", "clean_session"]


def clean_session(place: ops.Place, session: str, *, dry_run: bool = False,
                  tasks: list[str] | None = None) -> list[str]:
    """Stop the session's running tasks, delete its queues and run data; say what went."""
    done: list[str] = []
    if tasks is None:
        tasks = [t["taskArn"] for t in ops.session_tasks(place, session)
                 if t.get("lastStatus") != "STOPPED" and t.get("desiredStatus") != "STOPPED"]
    ecs = client("ecs", region=place.region)
    for arn in tasks:
        done.append(f"stop task {arn} (session {session})")
        if not dry_run:
            with translate_errors(f"ECS StopTask {arn}"):
                try:
                    ecs.stop_task(cluster=place.cluster, task=arn,
                                  reason=f"starburst cleanup (session {session})")
                except ClientError as exc:
                    if error_code(exc) not in ("InvalidParameterException", "ClientException"):
                        raise
    queues = ops.queue_sessions(place).get(session, [])
    if queues:
        done.append(f"delete {len(queues)} queue(s) of session {session}")
        if not dry_run:
            provision.delete_session_queues(session, region=place.region)
    objects = ops.delete_run_data(place, session, dry_run=dry_run)
    if objects:
        done.append(f"delete {objects} object(s) of session {session} from "
                    f"s3://{place.bucket}/{place.key(f'sessions/{session}/')}")
    return done


def clean_orphans(place: ops.Place, *, min_age: float = 600.0,
                  dry_run: bool = False) -> list[str]:
    """Clean every session that has ended (no record, state ended, deadline passed)
    but left tasks, queues or run data behind."""
    tagged = ops.tagged_sessions(place)
    queued = ops.queue_sessions(place)
    stored = ops.run_data_sessions(place)
    done: list[str] = []
    for session in sorted(set(tagged) | set(queued) | stored):
        record = ops.read_record(place, session)
        if not ops.session_gone(record):
            continue
        if record is None and not tagged.get(session) and session in queued and all(
                ops.queue_age(place, url) < min_age for url in queued[session]):
            continue  # a session that is starting: queues come before its record
        running = [t["taskArn"] for t in tagged.get(session, [])
                   if t.get("lastStatus") != "STOPPED" and t.get("desiredStatus") != "STOPPED"]
        done.extend(clean_session(place, session, dry_run=dry_run, tasks=running))
    return done
