"""What starburst has in an account, found by its tags and names: workers, queues, objects.

ECS tasks are found by their ``starburst:session`` tag, GPU workers (AWS
Batch jobs in the ``starburst-gpu-*`` job queues) by the same tag or,
failing it, by their job name ``<session>-w<n>``, and queues by their
``starburst-<session>-`` names. A :class:`Place` says where a
configuration puts them. The Fargate and Batch backends adopt a session's
workers through these; the operations commands (:mod:`starburst.admin`)
list and clean them up. Nothing here reads a session record: that is
:mod:`starburst.admin.ops` (this layer never imports the session).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from . import consistency, provision
from .batch import ACTIVE_JOB_STATES, GPU_PREFIX
from .clients import client
from .config import AwsConfig, load_config
from .errors import error_code, translate_errors

if TYPE_CHECKING:
    from mypy_boto3_batch.type_defs import JobDetailTypeDef
    from mypy_boto3_ecs.type_defs import TaskTypeDef

__all__ = ["ACTIVE_JOB_STATES", "Place", "gpu_queues", "job_active", "job_log_stream",
           "job_number", "job_session", "queue_age", "queue_sessions", "read_object",
           "session_jobs", "session_tasks", "tagged_jobs", "tagged_sessions", "task_active"]

log = logging.getLogger("starburst")

_QUEUE = re.compile(r"^starburst-(?P<session>.+)-(tasks|results|dead)$")
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


def read_object(place: Place, rest: str, *, action: str) -> bytes | None:
    """The body of ``<prefix>/<rest>`` in the place's bucket, or None when there is none.

    ``action`` starts the message of any other error (with the identifiers).
    """
    s3 = client("s3", region=place.region)
    with translate_errors(action):
        try:
            body = s3.get_object(Bucket=place.bucket, Key=place.key(rest))["Body"]
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise
        return body.read()


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
