"""One conformance suite for every Store, Queue and Transport implementation.

Each test runs against the local implementations (directory store, SQLite
queue) and the AWS ones (S3, SQS, against the emulated AWS), so the cloud
path keeps exactly the semantics the local default is tested with.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from starburst.transport import Queue, Store, Transport
from starburst.transport.aws import AwsTransport, create_session_queues
from starburst.transport.local import DirStore, LocalTransport, SqliteQueue
from starburst.transport.s3 import S3Store
from starburst.transport.sqs import SqsQueue


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path) -> Store:
    if request.param == "local":
        return DirStore(tmp_path / "store")
    aws = request.getfixturevalue("aws")
    return S3Store(aws.shared.bucket, f"conformance-{uuid.uuid4().hex[:8]}")


@pytest.fixture(params=["local", "sqs"])
def queue(request: pytest.FixtureRequest, tmp_path) -> Queue:
    if request.param == "local":
        return SqliteQueue(tmp_path / "queue.sqlite", "q")
    aws = request.getfixturevalue("aws")
    urls = create_session_queues(f"conf-{uuid.uuid4().hex[:8]}", region=aws.region,
                                 max_receives=100)
    return SqsQueue(urls.tasks)


@pytest.fixture(params=["local", "aws"])
def transport(request: pytest.FixtureRequest, tmp_path) -> Iterator[Transport]:
    if request.param == "local":
        made: Transport = LocalTransport(tmp_path / "session", max_receives=2)
    else:
        aws = request.getfixturevalue("aws")
        session = f"conf-{uuid.uuid4().hex[:8]}"
        urls = create_session_queues(session, region=aws.region, max_receives=2)
        made = AwsTransport(bucket=aws.shared.bucket, prefix=f"conformance-{session}",
                            queues=urls, region=aws.region)
    yield made
    made.destroy()
    made.close()


# -- Store ----------------------------------------------------------------------


def test_store_put_get_round_trips_any_bytes(store):
    values = {"a": b"", "b/c": bytes(range(256)) * 4, "d/e/f": b"x" * 300_000}
    for key, value in values.items():
        store.put(key, value)
    for key, value in values.items():
        assert store.get(key) == value


def test_store_put_takes_a_large_frame_as_a_mapped_view(store, monkeypatch):
    """A large frame is a memoryview over a mapping (serialization._concatenate).

    The threshold (32 MiB) is lowered so the test moves 3 MiB, not 32.
    """
    np = pytest.importorskip("numpy")
    from starburst.wire import serialization
    from starburst.wire.serialization import dumps, loads
    monkeypatch.setattr(serialization, "_MAP_THRESHOLD", 2 << 20)
    array = np.arange(3 * 2**20 // 8, dtype=np.float64)  # 3 MiB, out of band
    frame = dumps(array, codec="none")
    assert isinstance(frame, memoryview)
    store.put("big/frame", frame)
    got = store.get("big/frame")
    assert got == frame.tobytes()
    assert np.array_equal(loads(got), array)


def test_store_put_replaces(store):
    store.put("k", b"one")
    store.put("k", b"two")
    assert store.get("k") == b"two"


def test_store_get_of_a_missing_key_raises_key_error(store):
    with pytest.raises(KeyError):
        store.get("missing/key")


def test_store_exists(store):
    assert not store.exists("e")
    store.put("e", b"1")
    assert store.exists("e")
    assert not store.exists("e2")


def test_store_put_if_absent_first_writer_wins(store):
    assert store.put_if_absent("commit", b"first") is True
    assert store.put_if_absent("commit", b"second") is False
    assert store.get("commit") == b"first"
    store.put("plain", b"x")
    assert store.put_if_absent("plain", b"y") is False
    assert store.get("plain") == b"x"


def test_store_delete_prefix_removes_only_that_prefix(store):
    for key in ("s/1/a", "s/1/b/c", "s/10/a", "s/2/a", "s/2/b"):
        store.put(key, b"v")
    assert store.delete_prefix("s/1/") == 2
    assert not store.exists("s/1/a")
    assert not store.exists("s/1/b/c")
    assert store.exists("s/10/a")
    assert store.delete_prefix("s/2/a") == 1  # a single key, as the client deletes payloads
    assert store.exists("s/2/b")
    assert store.delete_prefix("nothing/") == 0


def test_store_delete_prefix_acts_on_whole_segments(store):
    """Issue #17, defect 1: deleting payload 1 took payloads 10..19 and 100.. with it."""
    keys = ["p/1", "p/10", "p/100", "p/19/x", "p/1/x", "p/1/y/z", "p/1x", "p/1.zip", "p/2/x"]
    for key in keys:
        store.put(key, key.encode())
    assert store.delete_prefix("p/1") == 3  # p/1, p/1/x, p/1/y/z
    assert [k for k in keys if store.exists(k)] == [
        "p/10", "p/100", "p/19/x", "p/1x", "p/1.zip", "p/2/x"]
    assert store.get("p/10") == b"p/10"


def test_store_delete_prefix_with_a_slash_keeps_the_key_itself(store):
    for key in ("a/1", "a/1/x", "a/1/y/z", "a/10"):
        store.put(key, b"v")
    assert store.delete_prefix("a/1/") == 2
    assert store.list_prefix("a") == ["a/1", "a/10"]
    assert store.delete_prefix("") == 2
    assert store.list_prefix("") == []


def test_store_list_prefix_acts_on_whole_segments(store):
    for key in ("s/1", "s/10", "s/1/b", "s/1/a/c", "s/2", "t/1"):
        store.put(key, b"")
    assert store.list_prefix("s/1") == ["s/1", "s/1/a/c", "s/1/b"]
    assert store.list_prefix("s/1/") == ["s/1/a/c", "s/1/b"]
    assert store.list_prefix("s") == ["s/1", "s/1/a/c", "s/1/b", "s/10", "s/2"]
    assert store.list_prefix("") == ["s/1", "s/1/a/c", "s/1/b", "s/10", "s/2", "t/1"]
    assert store.list_prefix("nothing") == []


def test_store_a_key_can_also_be_the_parent_of_other_keys(store):
    """The same on every store: ``a/1`` and ``a/1/x`` both hold their own bytes."""
    store.put("a/1/x", b"child")
    store.put("a/1", b"parent")
    assert store.put_if_absent("a", b"grandparent") is True
    assert (store.get("a"), store.get("a/1"), store.get("a/1/x")) == (
        b"grandparent", b"parent", b"child")
    assert store.list_prefix("a") == ["a", "a/1", "a/1/x"]
    store.delete("a/1")
    assert not store.exists("a/1")
    assert store.get("a/1/x") == b"child"
    assert store.list_prefix("a/1") == ["a/1/x"]


def test_store_delete_removes_one_key_and_ignores_a_missing_one(store):
    store.put("d/1", b"x")
    store.put("d/10", b"y")
    store.delete("d/1")
    store.delete("d/1")  # twice: no error
    store.delete("never/was")
    assert not store.exists("d/1")
    assert store.get("d/10") == b"y"


@pytest.mark.parametrize(("key", "why"), [
    ("", "empty"), ("a//b", "empty segment"), ("a/", "empty segment"),
    ("a/./b", "'.'"), ("x\x00y", "control character"), ("tab\there", "control character"),
    ("\ud800", "UTF-8"), ("s" * 128, "longer than 127 bytes"),
    ("/".join(["k" * 100] * 8), "longer than 768 bytes"),
])
def test_store_refuses_invalid_keys_the_same_everywhere(store, key, why):
    for call in (lambda: store.put(key, b"x"), lambda: store.get(key),
                 lambda: store.exists(key), lambda: store.put_if_absent(key, b"x"),
                 lambda: store.delete(key)):
        with pytest.raises(ValueError, match="invalid store key") as info:
            call()
        assert why in str(info.value)


def test_store_rejects_keys_that_escape(store):
    for key in ("/abs", "a/../b", ".."):
        with pytest.raises(ValueError, match="invalid store key"):
            store.put(key, b"x")


# -- Queue ----------------------------------------------------------------------


def test_queue_send_receive_delete(queue):
    bodies = [b"", b"\x00\xff" * 10, bytes(range(256)), b"x" * 100_000]
    queue.send(bodies)
    got = []
    deadline = time.monotonic() + 10
    while len(got) < len(bodies) and time.monotonic() < deadline:
        got += queue.receive(max_messages=queue.max_batch, wait_seconds=1, visibility=30)
    assert sorted(m.body for m in got) == sorted(bodies)
    assert all(m.receives == 1 for m in got)
    queue.delete([m.receipt for m in got])
    assert queue.receive(max_messages=10, wait_seconds=1, visibility=0) == []


def test_queue_send_of_nothing_is_a_no_op(queue):
    queue.send([])
    assert queue.receive(wait_seconds=0, visibility=1) == []


def test_queue_receive_returns_at_most_max_messages(queue):
    queue.send([str(i).encode() for i in range(25)])
    first = queue.receive(max_messages=3, wait_seconds=1, visibility=30)
    assert 1 <= len(first) <= 3
    seen = [m.body for m in first]
    deadline = time.monotonic() + 10
    while len(seen) < 25 and time.monotonic() < deadline:
        batch = queue.receive(max_messages=queue.max_batch, wait_seconds=1, visibility=30)
        assert len(batch) <= queue.max_batch
        seen += [m.body for m in batch]
    assert sorted(seen, key=int) == [str(i).encode() for i in range(25)]  # each once


def test_queue_lease_hides_then_lapses(queue):
    queue.send([b"m"])
    [msg] = queue.receive(wait_seconds=1, visibility=1)
    assert queue.receive(wait_seconds=0, visibility=1) == []
    time.sleep(1.2)
    again = queue.receive(wait_seconds=2, visibility=30)
    assert [m.body for m in again] == [b"m"]
    assert again[0].receives == 2
    assert again[0].receipt != msg.receipt


def test_queue_set_visibility_zero_releases_and_extension_holds(queue):
    queue.send([b"a", b"b"])
    got = []
    while len(got) < 2:
        got += queue.receive(max_messages=2, wait_seconds=1, visibility=1)
    by_body = {m.body: m for m in got}
    queue.set_visibility(by_body[b"a"].receipt, 0)  # release
    queue.set_visibility(by_body[b"b"].receipt, 30)  # heartbeat
    time.sleep(1.2)
    back = queue.receive(max_messages=10, wait_seconds=1, visibility=30)
    assert [m.body for m in back] == [b"a"]


def test_queue_stale_receipts_are_ignored(queue):
    queue.send([b"m"])
    [msg] = queue.receive(wait_seconds=1, visibility=30)
    queue.delete([msg.receipt])
    queue.delete([msg.receipt])  # twice: no error
    queue.set_visibility(msg.receipt, 0)  # of a deleted message: no error
    assert queue.receive(wait_seconds=0, visibility=1) == []


def test_queue_long_poll_returns_when_a_message_arrives(queue):
    timer = threading.Timer(0.5, queue.send, args=([b"late"],))
    start = time.monotonic()
    timer.start()
    try:
        got = queue.receive(wait_seconds=5, visibility=30)
    finally:
        timer.join()
    assert [m.body for m in got] == [b"late"]
    assert time.monotonic() - start < 4


# -- Transport ----------------------------------------------------------------------


def test_transport_dead_letters_after_max_receives(transport):
    transport.tasks.send([b"poison"])
    for attempt in (1, 2):
        [msg] = transport.tasks.receive(wait_seconds=2, visibility=30)
        assert msg.receives == attempt
        transport.tasks.set_visibility(msg.receipt, 0)
    assert transport.tasks.receive(wait_seconds=1, visibility=30) == []
    dead = transport.dead.receive(wait_seconds=2, visibility=30)
    assert [m.body for m in dead] == [b"poison"]


def test_transport_spec_reopens_the_same_session(transport):
    from starburst.transport import open_transport

    again = open_transport(transport.spec)
    try:
        transport.store.put("k", b"v")
        transport.results.send([b"notice"])
        assert again.store.get("k") == b"v"
        assert [m.body for m in again.results.receive(wait_seconds=2)] == [b"notice"]
        assert again.inline_limit == transport.inline_limit
    finally:
        again.close()
