"""SqsQueue beyond the conformance suite: batch packing, size limits, attributes; the
session's queues the AWS transport creates and deletes."""

from __future__ import annotations

import itertools
import json
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starburst.aws.clients import client
from starburst.exceptions import ConfigurationError
from starburst.transport.aws import create_session_queues, delete_session_queues, queue_names
from starburst.transport.sqs import MAX_BATCH_BYTES, SqsQueue, encoded_size, pack


def _queue(aws, max_receives: int = 100) -> SqsQueue:
    urls = create_session_queues(f"t-{uuid.uuid4().hex[:8]}", region=aws.region,
                                 max_receives=max_receives)
    return SqsQueue(urls.tasks)


def _drain(queue: SqsQueue, n: int) -> list[bytes]:
    got: list[bytes] = []
    for _ in range(20):
        batch = queue.receive(max_messages=10, wait_seconds=1, visibility=60)
        got += [m.body for m in batch]
        if len(got) >= n:
            break
    return got


@settings(deadline=None, max_examples=200)
@given(st.lists(st.integers(min_value=1, max_value=MAX_BATCH_BYTES), max_size=60))
def test_pack_keeps_order_and_every_batch_within_limits(sizes):
    batches = list(pack(sizes))
    assert [i for batch in batches for i in batch] == list(range(len(sizes)))
    for batch in batches:
        assert 1 <= len(batch) <= 10
        assert sum(sizes[i] for i in batch) <= MAX_BATCH_BYTES


@settings(deadline=None, max_examples=100)
@given(st.lists(st.integers(min_value=1, max_value=MAX_BATCH_BYTES), min_size=2, max_size=40))
def test_pack_closes_a_batch_only_when_the_next_message_does_not_fit(sizes):
    batches = list(pack(sizes))
    for batch, following in itertools.pairwise(batches):
        total = sum(sizes[i] for i in batch)
        assert len(batch) == 10 or total + sizes[following[0]] > MAX_BATCH_BYTES


def _record(queue: SqsQueue, operation: str) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    queue.client.meta.events.register(
        f"provide-client-params.sqs.{operation}", lambda params, **_: calls.append(params))
    return calls


def test_send_packs_batches_under_one_mebibyte(aws):
    queue = _queue(aws)
    calls = _record(queue, "SendMessageBatch")
    bodies = [bytes([i]) * 300_000 for i in range(6)]  # 400,000 characters each, encoded
    queue.send(bodies)
    entries = [c["Entries"] for c in calls]
    assert [len(e) for e in entries] == [2, 2, 2]
    for batch in entries:
        assert sum(len(e["MessageBody"]) for e in batch) <= MAX_BATCH_BYTES
    assert sorted(_drain(queue, 6)) == sorted(bodies)


def test_send_uses_ten_entries_per_call_for_small_messages(aws):
    queue = _queue(aws)
    calls = _record(queue, "SendMessageBatch")
    queue.send([str(i).encode() for i in range(23)])
    assert [len(c["Entries"]) for c in calls] == [10, 10, 3]
    assert sorted(_drain(queue, 23), key=int) == [str(i).encode() for i in range(23)]


def test_the_largest_body_fits_and_one_byte_more_is_refused(aws):
    queue = _queue(aws)
    assert encoded_size(queue.max_body) == 1 << 20
    queue.send([b"\x07" * queue.max_body])
    assert _drain(queue, 1) == [b"\x07" * queue.max_body]
    with pytest.raises(ValueError, match="exceeds the SQS limit"):
        queue.send([b"x" * (queue.max_body + 1)])


def test_queues_are_created_with_explicit_size_and_redrive(aws):
    urls = create_session_queues("sb-attrs", region=aws.region, max_receives=7)
    client = SqsQueue(urls.tasks).client
    attrs = client.get_queue_attributes(QueueUrl=urls.tasks, AttributeNames=["All"])["Attributes"]
    assert attrs["MaximumMessageSize"] == str(1 << 20)
    redrive = json.loads(attrs["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == 7
    assert redrive["deadLetterTargetArn"].endswith(":starburst-sb-attrs-dead")
    for url in (urls.tasks, urls.results, urls.dead):
        assert client.list_queue_tags(QueueUrl=url)["Tags"] == {"starburst:session": "sb-attrs"}
        size = client.get_queue_attributes(QueueUrl=url, AttributeNames=["MaximumMessageSize"])
        assert size["Attributes"]["MaximumMessageSize"] == str(1 << 20)


def test_a_foreign_message_is_handed_over_undecoded(aws):
    queue = _queue(aws)
    queue.client.send_message(QueueUrl=queue.url, MessageBody="not base64 at all!")
    assert _drain(queue, 1) == [b"not base64 at all!"]


def test_approximate_count_sees_visible_and_leased_messages(aws):
    queue = _queue(aws)
    queue.send([b"a", b"b", b"c"])
    queue.receive(max_messages=1, wait_seconds=1, visibility=60)
    assert queue.approximate_count() == 3


def test_session_queues_are_created_and_deleted_by_session(aws):
    urls = create_session_queues("sb-q-1", region=aws.region, max_receives=10)
    create_session_queues("sb-q-10", region=aws.region, max_receives=10)
    assert urls.tasks.endswith("/starburst-sb-q-1-tasks")
    assert delete_session_queues("sb-q-1", region=aws.region) == 3
    assert delete_session_queues("sb-q-1", region=aws.region) == 0
    left = client("sqs").list_queues(QueueNamePrefix="starburst-sb-q-1")["QueueUrls"]
    assert sorted(u.rsplit("/", 1)[1] for u in left) == [
        "starburst-sb-q-10-dead", "starburst-sb-q-10-results", "starburst-sb-q-10-tasks"]


def test_session_ids_that_cannot_name_queues_are_refused():
    with pytest.raises(ConfigurationError, match=r"cannot name SQS queues"):
        queue_names("has space")
    with pytest.raises(ConfigurationError, match=r"cannot name SQS queues"):
        queue_names("x" * 63)
