"""What the operations commands read: sessions, their logs and run data.

Sessions are found in the store: ``<prefix>/sessions/*/record.json`` in
the configured bucket, listed with boto3 (the Store interface has no
listing). Their workers and queues are found by :mod:`starburst.aws.inventory`.
"""

from __future__ import annotations

import re
import time
from typing import Any

from botocore.exceptions import ClientError

from ..aws import provision
from ..aws.clients import client
from ..aws.errors import error_code, translate_errors
from ..aws.inventory import Place, job_log_stream, read_object, session_jobs, session_tasks
from ..exceptions import ProtocolError
from ..session import SessionRecord
from ..wire.keys import SESSIONS, record_key, session_prefix

__all__ = ["delete_run_data", "list_records", "parse_since", "read_record",
           "run_data_sessions", "session_gone", "session_logs"]

_SINCE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str) -> float:
    """``10m`` / ``2h`` / ``30s`` / ``1d`` -> seconds."""
    match = _SINCE.match(text.strip().lower())
    if not match:
        raise ValueError(f"{text!r} is not a duration such as 30s, 10m, 2h or 1d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def list_records(place: Place) -> list[SessionRecord]:
    """Every readable session record in the store, newest first."""
    s3 = client("s3", region=place.region)
    out: list[SessionRecord] = []
    with translate_errors(f"listing sessions in s3://{place.bucket}/{place.key(SESSIONS)}"):
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=place.bucket, Prefix=place.key(SESSIONS))
        keys = [o["Key"] for page in pages for o in page.get("Contents", [])
                if o["Key"].endswith("/record.json")]
        for key in keys:
            try:
                body = s3.get_object(Bucket=place.bucket, Key=key)["Body"].read()
                out.append(SessionRecord.from_bytes(body))
            except (ProtocolError, ClientError):
                continue
    return sorted(out, key=lambda r: r.created, reverse=True)


def read_record(place: Place, session: str, *, strict: bool = False) -> SessionRecord | None:
    """The session's record, or None when it is gone (ended cleanly, or cleaned up).

    A record that cannot be parsed counts as gone, unless ``strict``: then its
    :class:`~starburst.exceptions.ProtocolError` (which says, e.g., which
    starburst version wrote it) is raised, as ``attach`` wants.
    """
    body = read_object(place, record_key(session),
                       action=f"reading the record of session {session}")
    if body is None:
        return None
    try:
        return SessionRecord.from_bytes(body)
    except ProtocolError:
        if strict:
            raise
        return None


def session_gone(record: SessionRecord | None, now: float | None = None) -> bool:
    """Whether a session has ended: no record, state ``ended``, or a detached deadline
    passed."""
    now = time.time() if now is None else now
    return record is None or record.state == "ended" or (
        record.detached and 0 < record.deadline < now)


def delete_run_data(place: Place, session: str, *, dry_run: bool = False) -> int:
    """Delete ``<prefix>/sessions/<session>/`` (record included); return the object count."""
    s3 = client("s3", region=place.region)
    count = 0
    with translate_errors(f"deleting the run data of session {session}"):
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=place.bucket, Prefix=place.key(session_prefix(session)))
        for page in pages:
            keys: Any = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            count += len(keys)
            if keys and not dry_run:
                s3.delete_objects(Bucket=place.bucket, Delete={"Objects": keys})
    return count


def run_data_sessions(place: Place) -> set[str]:
    """Sessions that have objects under ``<prefix>/sessions/``."""
    s3 = client("s3", region=place.region)
    with translate_errors("listing starburst run data"):
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=place.bucket, Prefix=place.key(SESSIONS), Delimiter="/")
        return {p["Prefix"].rstrip("/").rsplit("/", 1)[-1]
                for page in pages for p in page.get("CommonPrefixes", [])}


def session_logs(place: Place, session: str, *, worker: str | None = None,
                 start_ms: int | None = None) -> list[dict[str, Any]]:
    """Log events of the session's workers, oldest first: ``{worker, time, message}``.

    ``worker`` is an ECS task's id for Fargate workers and the job name
    (``<session>-w<n>``) for GPU workers; ``worker=`` selects one by that
    id, a prefix of it, its ARN, or (GPU workers) its Batch job id.
    """
    streams: list[tuple[str, list[str], str]] = []  # (worker, names it answers to, stream)
    for task in session_tasks(place, session):
        task_id = task["taskArn"].rsplit("/", 1)[-1]
        streams.append((task_id, [task_id], f"{provision.LOG_STREAM_PREFIX}/"
                                            f"{provision.CONTAINER_NAME}/{task_id}"))
    for job in session_jobs(place, session):
        name = job.get("jobName", "")
        streams.append((name, [name, job.get("jobId", "")], job_log_stream(job)))
    if worker:
        streams = [s for s in streams if any(
            i and (i == worker or i.startswith(worker) or worker.endswith(i)) for i in s[1])]
    logs = client("logs", region=place.region)
    events: list[dict[str, Any]] = []
    with translate_errors(f"reading the logs of session {session} from {place.log_group}"):
        for name, _, stream in streams:
            kwargs: dict[str, Any] = {"logGroupName": place.log_group,
                                      "logStreamName": stream, "startFromHead": True}
            if start_ms is not None:
                kwargs["startTime"] = start_ms
            token = None
            while True:
                try:
                    if token:
                        kwargs["nextToken"] = token
                    page = logs.get_log_events(**kwargs)
                except ClientError as exc:
                    if error_code(exc) == "ResourceNotFoundException":
                        break
                    raise
                events.extend({"worker": name, "time": e.get("timestamp", 0),
                               "message": e.get("message", "")} for e in page["events"])
                # The end of a stream is the page whose token repeats: GetLogEvents
                # may return empty pages before it.
                following = page.get("nextForwardToken")
                if not following or following == token:
                    break
                token = following
    return sorted(events, key=lambda e: (e["time"], e["worker"]))
