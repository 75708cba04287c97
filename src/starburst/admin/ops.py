"""What the operations commands read: sessions, their tasks, queues, logs and cost.

Sessions are found in the store: ``<prefix>/sessions/*/record.json`` in
the configured bucket, listed with boto3 (the Store interface has no
listing). ECS tasks are found by their ``starburst:session`` tag, GPU
workers (AWS Batch jobs in the ``starburst-gpu-*`` job queues) by the same
tag or, failing it, by their job name ``<session>-w<n>``, and queues by
their ``starburst-<session>-`` names.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ..aws import consistency, provision
from ..aws.batch import ACTIVE_JOB_STATES, GPU_PREFIX
from ..aws.clients import client
from ..aws.config import AwsConfig, load_config
from ..aws.errors import error_code, translate_errors
from ..exceptions import ProtocolError
from ..session import SessionRecord
from ..wire.keys import SESSIONS, record_key, session_prefix

if TYPE_CHECKING:
    from mypy_boto3_batch.type_defs import JobDetailTypeDef
    from mypy_boto3_ecs.type_defs import TaskTypeDef

__all__ = ["ACTIVE_JOB_STATES", "Place", "delete_run_data", "gpu_queues", "job_active",
           "job_log_stream", "job_number", "job_session", "list_records", "parse_since",
           "queue_sessions", "read_record", "session_gone", "session_jobs", "session_logs",
           "session_tasks", "tagged_jobs", "tagged_sessions", "task_active"]

log = logging.getLogger("starburst")

_QUEUE = re.compile(r"^starburst-(?P<session>.+)-(tasks|results|dead)$")
_SINCE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
#: A GPU worker's job name: ``<session>-w<n>`` (backends/batch.py names them so).
_JOB_NAME = re.compile(r"^(?P<session>.+)-w(?P<n>\d+)$")
_JOB_STATES = (*ACTIVE_JOB_STATES, "SUCCEEDED", "FAILED")
#: The awslogs stream prefix of starburst's job definitions (aws/batch.py): a job's
#: output is in ``starburst-gpu/default/<job id>`` of the session's log group.
_JOB_STREAM_PREFIX = f"{provision.LOG_STREAM_PREFIX}-gpu"
#: What AWS answers when the caller may not list Batch jobs.
_DENIED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation")


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
        name = config.resolved_region(region)
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
    s3 = client("s3", region=place.region)
    with translate_errors(f"reading the record of session {session}"):
        try:
            body = s3.get_object(Bucket=place.bucket,
                                 Key=place.key(record_key(session)))["Body"]
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise
        try:
            return SessionRecord.from_bytes(body.read())
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


def _describe(place: Place, arns: list[str]) -> list[TaskTypeDef]:
    return consistency.describe_tasks(client("ecs", region=place.region), place.cluster,
                                      arns, tags=True)


def task_active(task: TaskTypeDef) -> bool:
    """Whether an ECS task may still run (and bill): neither stopped nor told to stop."""
    return task.get("lastStatus") != "STOPPED" and task.get("desiredStatus") != "STOPPED"


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


def gpu_queues(place: Place) -> list[str]:
    """Names of starburst's GPU job queues (``starburst-gpu-*``) in the region.

    An identity that may not describe Batch queues has never run GPU workers
    (running them needs that permission), so it gets an empty list and a
    warning that GPU workers were not looked for.
    """
    batch = client("batch", region=place.region)
    with translate_errors("listing starburst's AWS Batch job queues"):
        try:
            pages = batch.get_paginator("describe_job_queues").paginate()
            return sorted(q["jobQueueName"] for page in pages for q in page.get("jobQueues", [])
                          if q["jobQueueName"].startswith(GPU_PREFIX))
        except ClientError as exc:
            code = error_code(exc)
            if code not in _DENIED:
                raise
    log.warning("starburst: GPU workers (AWS Batch jobs) were not looked for: this identity "
                "may not call batch:DescribeJobQueues (%s); grant the policy `starburst setup "
                "--print-policy --gpu nvidia-t4` prints to include them", code)
    return []


def job_session(job: JobDetailTypeDef) -> str | None:
    """The session of a GPU worker's job: its ``starburst:session`` tag, else its name."""
    tagged = (job.get("tags") or {}).get(provision.SESSION_TAG)
    if tagged:
        return tagged
    match = _JOB_NAME.match(job.get("jobName", ""))
    return match.group("session") if match else None


def job_number(job: JobDetailTypeDef) -> int:
    """The ``n`` of a job named ``<session>-w<n>`` (0 for any other name)."""
    match = _JOB_NAME.match(job.get("jobName", ""))
    return int(match.group("n")) if match else 0


def job_active(job: JobDetailTypeDef) -> bool:
    """Whether a Batch job may still start or run (and bill)."""
    return job.get("status") in ACTIVE_JOB_STATES


def tagged_jobs(place: Place, session: str | None = None) -> dict[str, list[JobDetailTypeDef]]:
    """GPU workers' Batch jobs in starburst's job queues (queued, running and those Batch
    still remembers finished), by session; only ``session``'s when given.

    ListJobs by job name (``<session>-w*``) when a session is given, else by
    state; then DescribeJobs for tags, times, exit codes and log streams.
    """
    batch = client("batch", region=place.region)
    ids: list[str] = []
    out: dict[str, list[JobDetailTypeDef]] = {}
    queues = gpu_queues(place)
    with translate_errors("listing the AWS Batch jobs of starburst's GPU job queues"):
        paginator = batch.get_paginator("list_jobs")
        for queue in queues:
            if session is not None:
                # With a filter ListJobs returns jobs in every state.
                calls: list[dict[str, Any]] = [{"filters": [
                    {"name": "JOB_NAME", "values": [f"{session}-w*"]}]}]
            else:
                calls = [{"jobStatus": status} for status in _JOB_STATES]
            for kwargs in calls:
                for page in paginator.paginate(jobQueue=queue, **kwargs):
                    ids.extend(j["jobId"] for j in page.get("jobSummaryList", []))
        ids = sorted(set(ids))
        for job in consistency.describe_jobs(batch, ids):
            owner = job_session(job)
            if owner and (session is None or owner == session):
                out.setdefault(owner, []).append(job)
    for jobs in out.values():
        jobs.sort(key=job_number)
    return out


def session_jobs(place: Place, session: str) -> list[JobDetailTypeDef]:
    """The session's GPU workers' Batch jobs that Batch still knows, in launch order."""
    return tagged_jobs(place, session).get(session, [])


def job_log_stream(job: JobDetailTypeDef) -> str:
    """The log stream of a Batch job's output (the stream Batch reports, else where the
    job definition's awslogs prefix puts it)."""
    container: Any = job.get("container") or {}
    return str(container.get("logStreamName")
               or f"{_JOB_STREAM_PREFIX}/default/{job.get('jobId', '')}")


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
