"""A :class:`~starburst.transport.base.Queue` on Amazon SQS.

SQS message bodies are text, so bodies travel base64-encoded: a body of
``n`` bytes costs ``4 * ceil(n / 3)`` characters. Queues are created with
``MaximumMessageSize`` set explicitly to the 1 MiB maximum (see
:mod:`starburst.aws.provision`), hence :attr:`SqsQueue.max_body`.

* ``send`` packs up to 10 messages per SendMessageBatch, by bytes, so a
  batch stays under the 1 MiB total that SQS allows per request.
* ``receive`` long-polls (at most 20 s, the SQS limit) and reports
  ``ApproximateReceiveCount``.
* ``delete`` uses DeleteMessageBatch; receipts SQS no longer knows are
  ignored, as the Queue contract says.
* ``set_visibility`` is ChangeMessageVisibility: the heartbeat, or a
  release with 0. SQS refuses to keep a message invisible past 12 hours
  since its receive; that refusal is a :class:`TransportError` naming
  ``max_lease`` (workers never ask for it: they hand the chunk back first).
"""

from __future__ import annotations

import base64
import binascii
import math
import random
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from ..aws.clients import client as make_client
from ..aws.errors import error_code, translate_errors
from ..exceptions import TransportError
from .base import Message, Queue

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

__all__ = ["MAX_BATCH_BYTES", "MAX_MESSAGE_BYTES", "SqsQueue", "encoded_size", "pack"]

#: SQS's largest message and largest batch request (both 1 MiB since 2025).
MAX_MESSAGE_BYTES = 1 << 20
MAX_BATCH_BYTES = 1 << 20
#: SQS takes at most 10 entries per batch call and returns at most 10 per receive.
_BATCH = 10
#: The longest long poll SQS allows.
_MAX_WAIT = 20
#: A lease can be at most 12 hours (SQS's visibility limit).
_MAX_VISIBILITY = 43_200
#: Entries the service failed on its side (SenderFault false) are retried
#: this many times with backoff before the send is reported as failed.
_SEND_RETRIES = 5
#: SQS refuses empty bodies; an empty message travels as this, which is
#: not valid base64 and so cannot be mistaken for an encoded body.
_EMPTY = "-"
#: Codes that mean "this receipt no longer leases anything": the message was
#: deleted, or its lease lapsed and someone else holds it now.
_STALE_RECEIPT = frozenset({"ReceiptHandleIsInvalid", "MessageNotInflight",
                            "AWS.SimpleQueueService.MessageNotInflight",
                            "InvalidReceiptHandle"})


def encoded_size(n: int) -> int:
    """Characters a body of ``n`` bytes takes once base64-encoded."""
    return 4 * math.ceil(n / 3)


def _stale(code: str, message: str) -> bool:
    return code in _STALE_RECEIPT or (
        code in ("InvalidParameterValue", "InvalidParameterValueException")
        and "receipt" in message.lower())


def pack(sizes: Sequence[int], *, limit: int = MAX_BATCH_BYTES,
         per_batch: int = _BATCH) -> Iterator[list[int]]:
    """Group message indices into batches of at most ``per_batch`` and ``limit`` bytes.

    ``sizes`` are the encoded lengths. Greedy and order-preserving: a batch
    closes when the next message would not fit. A single message is never
    larger than ``limit`` (``send`` checks), so every batch holds at least one.
    """
    batch: list[int] = []
    size = 0
    for index, n in enumerate(sizes):
        if batch and (len(batch) == per_batch or size + n > limit):
            yield batch
            batch, size = [], 0
        batch.append(index)
        size += n
    if batch:
        yield batch


class SqsQueue(Queue):
    """One SQS queue, named by its URL."""

    #: The largest raw body whose base64 form fits a 1 MiB message.
    max_body = MAX_MESSAGE_BYTES // 4 * 3
    max_batch = _BATCH

    def __init__(self, url: str, *, region: str | None = None,
                 client: SQSClient | None = None) -> None:
        self.url = url
        self.client = client or make_client("sqs", region=region)

    def _action(self, what: str) -> str:
        return f"SQS {what} on {self.url}"

    def send(self, bodies: Sequence[bytes]) -> None:
        if not bodies:
            return
        encoded: list[str] = []
        for body in bodies:
            if len(body) > self.max_body:
                raise ValueError(
                    f"a message body of {len(body)} bytes exceeds the SQS limit of "
                    f"{self.max_body} bytes; put larger data in the store")
            encoded.append(base64.b64encode(body).decode("ascii") if body else _EMPTY)
        for batch in pack([len(e) for e in encoded]):
            self._send_batch([(str(i), encoded[i]) for i in batch])

    def _send_batch(self, entries: list[tuple[str, str]]) -> None:
        pending = entries
        for attempt in range(_SEND_RETRIES + 1):
            request: list[SendMessageBatchRequestEntryTypeDef] = [
                {"Id": entry_id, "MessageBody": body} for entry_id, body in pending]
            with translate_errors(self._action("SendMessageBatch"), kind=TransportError):
                response = self.client.send_message_batch(QueueUrl=self.url, Entries=request)
            failed = response.get("Failed", [])
            if not failed:
                return
            fatal = [f for f in failed if f.get("SenderFault")]
            if fatal or attempt == _SEND_RETRIES:
                first = (fatal or failed)[0]
                raise TransportError(
                    f"{self._action('SendMessageBatch')} failed for {len(failed)} message(s): "
                    f"{first.get('Code')}: {first.get('Message', '')}")
            retry = {f["Id"] for f in failed}
            pending = [entry for entry in pending if entry[0] in retry]
            time.sleep(min(2.0, 0.05 * 2 ** attempt) * random.uniform(0.5, 1.0))

    def receive(self, *, max_messages: int = 1, wait_seconds: float = 0.0,
                visibility: float = 60.0) -> list[Message]:
        # Long polls last whole seconds: round a wait up, so that a caller
        # asking for 0.25 s still long-polls instead of sampling (a short
        # poll may miss messages that exist).
        wait = min(_MAX_WAIT, math.ceil(max(0.0, wait_seconds)))
        with translate_errors(self._action("ReceiveMessage"), kind=TransportError):
            response = self.client.receive_message(
                QueueUrl=self.url, MaxNumberOfMessages=max(1, min(_BATCH, max_messages)),
                WaitTimeSeconds=wait,
                VisibilityTimeout=min(_MAX_VISIBILITY, math.ceil(max(0.0, visibility))),
                MessageSystemAttributeNames=["ApproximateReceiveCount"])
        out: list[Message] = []
        for raw in response.get("Messages", []):
            text = raw.get("Body", "")
            try:
                body = b"" if text == _EMPTY else base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                # Not ours: hand it over as is, so the protocol parser
                # rejects it and the worker moves it aside.
                body = text.encode()
            receives = int(raw.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
            out.append(Message(body, raw["ReceiptHandle"], receives))
        return out

    def delete(self, receipts: Sequence[str]) -> None:
        for start in range(0, len(receipts), _BATCH):
            chunk = receipts[start:start + _BATCH]
            with translate_errors(self._action("DeleteMessageBatch"), kind=TransportError):
                response = self.client.delete_message_batch(
                    QueueUrl=self.url,
                    Entries=[{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(chunk)])
            for failure in response.get("Failed", []):
                if not _stale(failure.get("Code", ""), failure.get("Message", "")):
                    raise TransportError(
                        f"{self._action('DeleteMessageBatch')} failed: "
                        f"{failure.get('Code')}: {failure.get('Message', '')}")

    def set_visibility(self, receipt: str, seconds: float) -> None:
        with translate_errors(self._action("ChangeMessageVisibility"), kind=TransportError):
            try:
                self.client.change_message_visibility(
                    QueueUrl=self.url, ReceiptHandle=receipt,
                    VisibilityTimeout=min(_MAX_VISIBILITY, math.ceil(max(0.0, seconds))))
            except ClientError as exc:
                message = str(exc.response.get("Error", {}).get("Message", ""))
                if "Total VisibilityTimeout" in message:
                    raise TransportError(
                        f"{self._action('ChangeMessageVisibility')} refused: {message}. SQS "
                        "keeps a message invisible for at most 12 hours since its receive; "
                        "workers hand a chunk back before Settings.max_lease, so keep "
                        "max_lease below that limit") from exc
                if not _stale(error_code(exc), message):
                    raise

    def approximate_count(self) -> int:
        """Messages in the queue, visible or leased (approximate, for status and tests)."""
        with translate_errors(self._action("GetQueueAttributes"), kind=TransportError):
            attrs = self.client.get_queue_attributes(
                QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages",
                                                   "ApproximateNumberOfMessagesNotVisible"]
            )["Attributes"]
        return int(attrs.get("ApproximateNumberOfMessages", "0")) + int(
            attrs.get("ApproximateNumberOfMessagesNotVisible", "0"))
