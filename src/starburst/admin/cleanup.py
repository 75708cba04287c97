"""Clean up a session's leftovers: its workers (ECS tasks, AWS Batch jobs), queues, run
data, its own task role (``starburst-session-<id>``), its key secret and its own task
definitions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from ..aws import inventory, session_key, session_role
from ..aws.clients import client
from ..aws.errors import error_code, translate_errors
from ..transport.aws import delete_session_queues
from ..wire.keys import session_prefix
from . import ops

if TYPE_CHECKING:
    from mypy_boto3_batch.type_defs import JobDetailTypeDef

__all__ = ["clean_orphans", "clean_session"]


def _job_label(job: JobDetailTypeDef) -> str:
    return f"{job.get('jobId', '')} ({job.get('jobName', '')}, {job.get('status', '?')})"


def clean_session(place: inventory.Place, session: str, *, dry_run: bool = False,
                  tasks: list[str] | None = None,
                  jobs: list[JobDetailTypeDef] | None = None,
                  role: bool | None = None, secret: bool | None = None) -> list[str]:
    """Stop the session's running workers, delete its queues, run data and role; say what
    went.

    Workers are the session's ECS tasks not yet stopped (``tasks``: their
    ARNs, else looked up) and its GPU workers' AWS Batch jobs that may still
    start or run (``jobs``: their DescribeJobs entries, else looked up).
    TerminateJob cancels a queued job and stops a running one, so no GPU
    instance is kept busy (and billing) by a session that has ended. Its
    task role goes last, after its workers (``role``: whether it exists,
    else looked up), with its key secret (``secret``: likewise) and its own task
    definitions.
    """
    done: list[str] = []
    if tasks is None:
        tasks = [t["taskArn"] for t in inventory.session_tasks(place, session)
                 if inventory.task_active(t)]
    if jobs is None:
        jobs = [j for j in inventory.session_jobs(place, session) if inventory.job_active(j)]
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
    if jobs:
        batch = client("batch", region=place.region)
        for job in jobs:
            done.append(f"terminate GPU job {_job_label(job)} (session {session})")
            if not dry_run:
                with translate_errors(f"AWS Batch TerminateJob {job.get('jobId', '')}"):
                    try:
                        batch.terminate_job(jobId=job["jobId"],
                                            reason=f"starburst cleanup (session {session})")
                    except ClientError as exc:
                        if error_code(exc) != "ClientException":  # finished meanwhile
                            raise
    queues = inventory.queue_sessions(place).get(session, [])
    if queues:
        done.append(f"delete {len(queues)} queue(s) of session {session}")
        if not dry_run:
            delete_session_queues(session, region=place.region)
    objects = ops.delete_run_data(place, session, dry_run=dry_run)
    if objects:
        done.append(f"delete {objects} object(s) of session {session} from "
                    f"s3://{place.bucket}/{place.key(session_prefix(session))}")
    if role is None:
        role = any(r.session == session for r in session_role.session_roles(region=place.region))
    if role:
        done.append(f"delete IAM role {session_role.session_role_name(session)} "
                    f"(session {session})")
        if not dry_run:
            session_role.delete_session_role(session, region=place.region)
    if secret is None:
        secret = session in session_key.key_secret_sessions(region=place.region)
    if secret:
        done.append(f"delete the key secret {session_key.secret_name(session)} "
                    f"(session {session})")
        if not dry_run:
            session_key.delete_key_secret(session, region=place.region)
    definitions = session_key.session_definitions(session, region=place.region)
    if definitions:
        done.append(f"deregister {len(definitions)} task definition(s) of session {session}")
        if not dry_run:
            session_key.deregister_definitions(definitions, region=place.region)
    return done


def clean_orphans(place: inventory.Place, *, min_age: float = 600.0,
                  dry_run: bool = False) -> list[str]:
    """Clean every session that has ended (no record, state ended, deadline passed)
    but left tasks, GPU jobs, queues or run data behind."""
    tagged = inventory.tagged_sessions(place)
    gpu_jobs = inventory.tagged_jobs(place)
    queued = inventory.queue_sessions(place)
    stored = ops.run_data_sessions(place)
    roles = {r.session: r for r in session_role.session_roles(region=place.region)}
    secrets = session_key.key_secret_sessions(region=place.region)
    now = datetime.now(UTC)
    done: list[str] = []
    for session in sorted(set(tagged) | set(gpu_jobs) | set(queued) | stored | set(roles)
                          | set(secrets)):
        record = ops.read_record(place, session)
        if not ops.session_gone(record):
            continue
        if record is None and not tagged.get(session) and not gpu_jobs.get(session) and \
                all(inventory.queue_age(place, url) < min_age
                    for url in queued.get(session, [])) and \
                (session in queued or session in roles or session in secrets) and \
                (session not in roles or _age(roles[session].created, now) < min_age) and \
                (session not in secrets or _age(secrets[session], now) < min_age):
            continue  # a session that is starting: queues and role come before its record
        running = [t["taskArn"] for t in tagged.get(session, []) if inventory.task_active(t)]
        active = [j for j in gpu_jobs.get(session, []) if inventory.job_active(j)]
        done.extend(clean_session(place, session, dry_run=dry_run, tasks=running, jobs=active,
                                  role=session in roles, secret=session in secrets))
    return done


def _age(created: datetime, now: datetime) -> float:
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return (now - created).total_seconds()
