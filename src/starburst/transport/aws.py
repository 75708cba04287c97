"""The AWS transport: an S3 store under a prefix and the session's SQS queues.

Spec (what a worker receives as ``STARBURST_TRANSPORT``)::

    aws:s3://<bucket>/<prefix>?region=<region>&tasks=<url>&results=<url>&dead=<url>

with the queue URLs percent-encoded. It names where things are, never
who may touch them: a worker takes its credentials from the standard
chain (the ECS task role), not from the spec.

A session's three queues (``starburst-<session>-tasks``, ``-results``,
``-dead``) are this transport's own: :func:`create_session_queues` makes
them when a session opens, tagged with its id, :func:`delete_session_queues`
removes whatever is left of them, and :meth:`AwsTransport.destroy` deletes
them at a clean end.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from ..aws.clients import client as make_client
from ..aws.clients import resolve_region
from ..aws.errors import error_code, translate_errors
from ..exceptions import ConfigurationError, TransportError
from .base import Transport
from .s3 import DEFAULT_MULTIPART_THRESHOLD, S3Store
from .sqs import MAX_MESSAGE_BYTES, SqsQueue

if TYPE_CHECKING:
    from mypy_boto3_sqs.literals import QueueAttributeNameType

__all__ = ["INLINE_LIMIT", "AwsTransport", "QueueUrls", "create_session_queues",
           "delete_session_queues", "from_spec", "parse_spec", "queue_names"]

# SQS bills each started 64 KiB of a message as one request. Up to two
# units (128 KiB once base64-encoded) an inline payload is still cheaper
# and faster than an S3 round trip; beyond, the store wins. The raw limit
# is that size before base64 (3/4), less room for the message header.
_INLINE_ENCODED = 128 * 1024
_HEADER_ALLOWANCE = 2 * 1024
INLINE_LIMIT = _INLINE_ENCODED * 3 // 4 - _HEADER_ALLOWANCE
#: What SQS answers for a queue that is gone (the JSON and the query protocol).
_NOT_FOUND_QUEUE = ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")


@dataclass(frozen=True, slots=True)
class QueueUrls:
    """The three queues of a session."""

    tasks: str
    results: str
    dead: str


def queue_names(session: str) -> QueueUrls:
    """The queue *names* of a session (``starburst-<session>-tasks`` ...)."""
    base = f"starburst-{session}"
    if len(base) + len("-results") > 80 or not base.replace("-", "").replace("_", "").isalnum():
        raise ConfigurationError(
            f"session id {session!r} cannot name SQS queues (letters, digits, - and _; "
            "at most 62 characters)")
    return QueueUrls(f"{base}-tasks", f"{base}-results", f"{base}-dead")


def create_session_queues(session: str, *, region: str, max_receives: int) -> QueueUrls:
    """Create the session's task, result and dead-letter queues; return their URLs.

    The task queue redrives to the dead-letter queue after ``max_receives``
    receives: a backstop far above ``max_attempts`` (releases and lease
    renewals count as receives too).
    """
    # Imported here, not above: a worker opens this transport but never creates
    # queues, so it need not import provisioning.
    from ..aws.provision import SESSION_TAG
    from ..aws.retention import QUEUE_RETENTION_S

    names = queue_names(session)
    sqs = make_client("sqs", region=region)
    tags = {SESSION_TAG: session}
    common: dict[QueueAttributeNameType, str] = {
              "MaximumMessageSize": str(MAX_MESSAGE_BYTES),
              "MessageRetentionPeriod": str(QUEUE_RETENTION_S)}
    with translate_errors(f"SQS queues of session {session}"):
        dead = sqs.create_queue(QueueName=names.dead, Attributes=common,
                                tags=tags)["QueueUrl"]
        dead_arn = sqs.get_queue_attributes(
            QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = json.dumps({"deadLetterTargetArn": dead_arn,
                              "maxReceiveCount": str(max_receives)})
        tasks = sqs.create_queue(QueueName=names.tasks, tags=tags,
                                 Attributes={**common, "RedrivePolicy": redrive})["QueueUrl"]
        results = sqs.create_queue(QueueName=names.results, Attributes=common,
                                   tags=tags)["QueueUrl"]
    return QueueUrls(tasks, results, dead)


def delete_session_queues(session: str, *, region: str) -> int:
    """Delete whatever queues of ``session`` still exist; return how many went."""
    sqs = make_client("sqs", region=region)
    deleted = 0
    with translate_errors(f"deleting the SQS queues of session {session}"):
        names = queue_names(session)
        for name in (names.tasks, names.results, names.dead):
            try:
                url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
                sqs.delete_queue(QueueUrl=url)
            except ClientError as exc:
                if error_code(exc) not in _NOT_FOUND_QUEUE:
                    raise
            else:
                deleted += 1
    return deleted


class AwsTransport(Transport):
    """S3 store and SQS queues of one session."""

    inline_limit = INLINE_LIMIT

    def __init__(self, *, bucket: str, prefix: str, queues: QueueUrls,
                 region: str | None = None,
                 multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD) -> None:
        self.region = resolve_region(region)
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.queues = queues
        self._s3 = make_client("s3", region=self.region)
        self._sqs = make_client("sqs", region=self.region)
        self.store = S3Store(bucket, self.prefix, client=self._s3,
                             multipart_threshold=multipart_threshold)
        self.tasks = SqsQueue(queues.tasks, client=self._sqs)
        self.results = SqsQueue(queues.results, client=self._sqs)
        self.dead = SqsQueue(queues.dead, client=self._sqs)

    @property
    def spec(self) -> str:
        query = urllib.parse.urlencode({
            "region": self.region, "tasks": self.queues.tasks,
            "results": self.queues.results, "dead": self.queues.dead})
        return f"aws:s3://{self.bucket}/{self.prefix}?{query}"

    def destroy(self) -> None:
        for url in (self.queues.tasks, self.queues.results, self.queues.dead):
            with translate_errors(f"SQS DeleteQueue {url}", kind=TransportError):
                try:
                    self._sqs.delete_queue(QueueUrl=url)
                except ClientError as exc:
                    if error_code(exc) not in _NOT_FOUND_QUEUE:
                        raise

    def close(self) -> None:
        self._s3.close()
        self._sqs.close()


def parse_spec(spec: str) -> tuple[str, str, str, QueueUrls]:
    """Split an ``aws:`` spec into (bucket, prefix, region, queue URLs).

    Raises:
        ConfigurationError: the spec is not a complete ``aws:s3://`` spec.
    """
    scheme, _, rest = spec.partition(":")
    parts = urllib.parse.urlsplit(rest)
    if scheme != "aws" or parts.scheme != "s3" or not parts.netloc:
        raise ConfigurationError(
            f"transport spec {spec!r} is not of the form "
            "aws:s3://<bucket>/<prefix>?region=...&tasks=...&results=...&dead=...")
    query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    missing = [k for k in ("region", "tasks", "results", "dead") if not query.get(k)]
    if missing:
        raise ConfigurationError(f"transport spec {spec!r} lacks {', '.join(missing)}")
    queues = QueueUrls(query["tasks"], query["results"], query["dead"])
    return parts.netloc, parts.path.strip("/"), query["region"], queues


def from_spec(spec: str) -> AwsTransport:
    """Open the AWS transport a spec names (on a worker, or on ``attach``)."""
    bucket, prefix, region, queues = parse_spec(spec)
    return AwsTransport(bucket=bucket, prefix=prefix, queues=queues, region=region)
