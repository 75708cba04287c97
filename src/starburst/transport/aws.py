"""The AWS transport: an S3 store under a prefix and the session's SQS queues.

Spec (what a worker receives as ``STARBURST_TRANSPORT``)::

    aws:s3://<bucket>/<prefix>?region=<region>&tasks=<url>&results=<url>&dead=<url>

with the queue URLs percent-encoded. It names where things are, never
who may touch them: a worker takes its credentials from the standard
chain (the ECS task role), not from the spec.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from botocore.exceptions import ClientError

from ..aws.clients import client as make_client
from ..aws.clients import resolve_region
from ..aws.errors import error_code, translate_errors
from ..exceptions import ConfigurationError, TransportError
from .base import Transport
from .s3 import DEFAULT_MULTIPART_THRESHOLD, S3Store
from .sqs import SqsQueue

__all__ = ["INLINE_LIMIT", "AwsTransport", "QueueUrls", "from_spec", "parse_spec"]

# SQS bills each started 64 KiB of a message as one request. Up to two
# units (128 KiB once base64-encoded) an inline payload is still cheaper
# and faster than an S3 round trip; beyond, the store wins. The raw limit
# is that size before base64 (3/4), less room for the message header.
_INLINE_ENCODED = 128 * 1024
_HEADER_ALLOWANCE = 2 * 1024
INLINE_LIMIT = _INLINE_ENCODED * 3 // 4 - _HEADER_ALLOWANCE


@dataclass(frozen=True, slots=True)
class QueueUrls:
    """The three queues of a session."""

    tasks: str
    results: str
    dead: str


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
                    if error_code(exc) not in ("AWS.SimpleQueueService.NonExistentQueue",
                                               "QueueDoesNotExist"):
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
