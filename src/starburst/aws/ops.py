"""What the operations commands read: sessions, their tasks, queues, logs and cost.

Sessions are found in the store: ``<prefix>/sessions/*/record.json`` in
the configured bucket, listed with boto3 (the Store interface has no
listing). Tasks are found by their ``starburst:session`` tag, queues by
their ``starburst-<session>-`` names.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ..exceptions import ProtocolError
from ..session import SessionRecord
from . import provision
from .clients import client, resolve_region
from .config import AwsConfig, load_config
from .errors import error_code, translate_errors

if TYPE_CHECKING:
    from mypy_boto3_ecs.type_defs import TaskTypeDef

__all__ = ["Place", "delete_run_data", "list_records", "parse_since", "queue_sessions",
           "read_record", "session_gone", "session_logs", "session_tasks", "tagged_sessions"]

_QUEUE = re.compile(r"^starburst-(?P<session>.+)-(tasks|results|dead)$")
_SINCE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Place:
    """Where sessions live: region, bucket and prefix, cluster, log group."""

    region: str
    bucket: str
    prefix: str
    cluster: str
    log_group: str

    @classmethod
    def from_config(cls, region: str | None = None,
                    config: AwsConfig | None = None) -> Place:
        config = config or load_config({"region": region})
        name = resolve_region(region or config.region_given, config.region)
        bucket = config.bucket or provision.default_bucket(name)
        return cls(name, bucket, config.prefix.strip("/"), config.cluster, config.log_group)

    def key(self, rest: str) -> str:
        return f"{self.prefix}/{rest}" if self.prefix else rest


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
    with translate_errors(f"listing sessions in s3://{place.bucket}/{place.key('sessions/')}"):
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=place.bucket, Prefix=place.key("sessions/"))
        keys = [o["Key"] for page in pages for o in page.get("Contents", [])
                if o["Key"].endswith("/record.json")]
        for key in keys:
            try:
                body = s3.get_object(Bucket=place.bucket, Key=key)["Body"].read()
                out.append(SessionRecord.from_bytes(body))
            except (ProtocolError, ClientError):
                continue
    return sorted(out, key=lambda r: r.created, reverse=True)


def read_record(place: Place, session: str) -> SessionRecord | None:
    """The session's record, or None when it is gone (ended cleanly, or cleaned up)."""
    s3 = client("s3", region=place.region)
    with translate_errors(f"reading the record of session {session}"):
        try:
            body = s3.get_object(Bucket=place.bucket,
                                 Key=place.key(f"sessions/{session}/record.json"))["Body"]
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise
        try:
            return SessionRecord.from_bytes(body.read())
        except ProtocolError:
            return None


def session_gone(record: SessionRecord | None, now: float | None = None) -> bool:
    """Whether a session has ended: no record, state ``ended``, or a detached deadline
    passed."""
    now = time.time() if now is None else now
    return record is None or record.state == "ended" or (
        record.detached and 0 < record.deadline < now)


def _describe(place: Place, arns: list[str]) -> list[TaskTypeDef]:
    ecs = client("ecs", region=place.region)
    tasks: list[TaskTypeDef] = []
    for start in range(0, len(arns), 100):
        tasks.extend(ecs.describe_tasks(cluster=place.cluster, tasks=arns[start:start + 100],
                                        include=["TAGS"]).get("tasks", []))
    return tasks


def _tag(task: TaskTypeDef) -> str | None:
    return next((t.get("value") for t in task.get("tags", [])
                 if t.get("key") == provision.SESSION_TAG), None)


def tagged_sessions(place: Place) -> dict[str, list[TaskTypeDef]]:
    """Tasks in the cluster (running and recently stopped) by their session tag."""
    ecs = client("ecs", region=place.region)
    out: dict[str, list[TaskTypeDef]] = {}
    with translate_errors(f"listing the tasks of ECS cluster {place.cluster}"):
        try:
            arns: list[str] = []
            for status in ("RUNNING", "STOPPED"):
                pages = ecs.get_paginator("list_tasks").paginate(
                    cluster=place.cluster, desiredStatus=status)
                arns.extend(a for page in pages for a in page.get("taskArns", []))
        except ClientError as exc:
            if error_code(exc) == "ClusterNotFoundException":
                return out
            raise
        for task in _describe(place, sorted(set(arns))):
            session = _tag(task)
            if session:
                out.setdefault(session, []).append(task)
    return out


def session_tasks(place: Place, session: str) -> list[TaskTypeDef]:
    """The session's ECS tasks that ECS still knows (stopped ones for about an hour)."""
    return tagged_sessions(place).get(session, [])


def queue_sessions(place: Place) -> dict[str, list[str]]:
    """starburst queue URLs by session."""
    sqs = client("sqs", region=place.region)
    out: dict[str, list[str]] = {}
    with translate_errors("listing starburst SQS queues"):
        pages = sqs.get_paginator("list_queues").paginate(QueueNamePrefix="starburst-")
        for page in pages:
            for url in page.get("QueueUrls", []):
                match = _QUEUE.match(url.rsplit("/", 1)[-1])
                if match:
                    out.setdefault(match.group("session"), []).append(url)
    return out


def queue_age(place: Place, url: str) -> float:
    """Seconds since the queue was created."""
    sqs = client("sqs", region=place.region)
    with translate_errors(f"SQS GetQueueAttributes {url}"):
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["CreatedTimestamp"])
    return time.time() - float(attrs["Attributes"].get("CreatedTimestamp", "0"))


def delete_run_data(place: Place, session: str, *, dry_run: bool = False) -> int:
    """Delete ``<prefix>/sessions/<session>/`` (record included); return the object count."""
    s3 = client("s3", region=place.region)
    count = 0
    with translate_errors(f"deleting the run data of session {session}"):
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=place.bucket, Prefix=place.key(f"sessions/{session}/"))
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
            Bucket=place.bucket, Prefix=place.key("sessions/"), Delimiter="/")
        return {p["Prefix"].rstrip("/").rsplit("/", 1)[-1]
                for page in pages for p in page.get("CommonPrefixes", [])}


def session_logs(place: Place, session: str, *, worker: str | None = None,
                 start_ms: int | None = None) -> list[dict[str, Any]]:
    """Log events of the session's workers, oldest first: ``{worker, time, message}``."""
    logs = client("logs", region=place.region)
    ids = [t["taskArn"].rsplit("/", 1)[-1] for t in session_tasks(place, session)]
    if worker:
        ids = [i for i in ids if i == worker or i.startswith(worker)
               or worker.endswith(i)]
    events: list[dict[str, Any]] = []
    with translate_errors(f"reading the logs of session {session} from {place.log_group}"):
        for task_id in ids:
            stream = f"{provision.LOG_STREAM_PREFIX}/{provision.CONTAINER_NAME}/{task_id}"
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
                events.extend({"worker": task_id, "time": e.get("timestamp", 0),
                               "message": e.get("message", "")} for e in page["events"])
                if not page["events"] or page.get("nextForwardToken") == token:
                    break
                token = page.get("nextForwardToken")
    return sorted(events, key=lambda e: (e["time"], e["worker"]))
