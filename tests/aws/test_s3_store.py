"""S3Store beyond the conformance suite: multipart, checksums, conditional puts."""

from __future__ import annotations

import os
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from starburst.exceptions import ProtocolError, TransportError
from starburst.transport import s3 as s3_module
from starburst.transport.s3 import S3Store

MiB = 1 << 20


def _count(store: S3Store, event: str, calls: list[dict[str, Any]]) -> None:
    def record(params: dict[str, Any], **_: Any) -> None:
        calls.append(params)

    store.client.meta.events.register(event, record)


def test_large_objects_use_parallel_multipart_upload_and_ranged_download(aws):
    store = S3Store(aws.shared.bucket, "mp", multipart_threshold=8 * MiB, part_size=5 * MiB)
    parts: list[dict[str, Any]] = []
    ranges: list[dict[str, Any]] = []
    _count(store, "before-call.s3.UploadPart", parts)
    _count(store, "before-call.s3.GetObject", ranges)
    data = os.urandom(12 * MiB)
    store.put("big", data)
    assert len(parts) == 3  # 5 + 5 + 2 MiB
    head = store.client.head_object(Bucket=aws.shared.bucket, Key="mp/big")
    assert head["ETag"].strip('"').endswith("-3")  # a multipart object
    assert store.get("big") == data
    ranged = [p for p in ranges if p.get("headers", {}).get("Range")]
    assert len(ranged) == 3


def test_small_objects_take_one_request(aws):
    store = S3Store(aws.shared.bucket, "small", multipart_threshold=8 * MiB)
    puts: list[dict[str, Any]] = []
    _count(store, "before-call.s3.PutObject", puts)
    store.put("k", b"x" * 1000)
    assert len(puts) == 1


def test_a_corrupt_object_fails_its_checksum_on_read(aws):
    store = S3Store(aws.shared.bucket, "c")
    store.put("k", b"original")
    meta = store.client.head_object(Bucket=aws.shared.bucket, Key="c/k")["Metadata"]
    store.client.put_object(Bucket=aws.shared.bucket, Key="c/k", Body=b"tampered", Metadata=meta)
    with pytest.raises(ProtocolError, match=r"s3://.*/c/k fails its SHA-256 check"):
        store.get("k")


def test_a_large_corrupt_object_fails_its_checksum_on_read(aws):
    store = S3Store(aws.shared.bucket, "c", multipart_threshold=8 * MiB, part_size=5 * MiB)
    store.put("big", os.urandom(9 * MiB))
    meta = store.client.head_object(Bucket=aws.shared.bucket, Key="c/big")["Metadata"]
    store.client.put_object(Bucket=aws.shared.bucket, Key="c/big", Body=os.urandom(9 * MiB),
                            Metadata=meta)
    with pytest.raises(ProtocolError, match="fails its SHA-256 check"):
        store.get("big")


def test_an_object_not_written_by_starburst_is_refused(aws):
    store = S3Store(aws.shared.bucket, "c")
    store.client.put_object(Bucket=aws.shared.bucket, Key="c/foreign", Body=b"?")
    with pytest.raises(ProtocolError, match="no starburst checksum"):
        store.get("foreign")


def _conflict(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
    error = {"Error": {"Code": "ConditionalRequestConflict",
                       "Message": "A conflicting conditional operation is in progress"},
             "ResponseMetadata": {"HTTPStatusCode": 409}}
    return AWSResponse("http://127.0.0.1/", 409, {}, None), error


def test_put_if_absent_retries_a_conditional_conflict(aws):
    store = S3Store(aws.shared.bucket, "pia")
    seen = []

    def conflict_twice(**kw: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        seen.append(1)
        return _conflict() if len(seen) <= 2 else None

    store.client.meta.events.register("before-call.s3.PutObject", conflict_twice)
    assert store.put_if_absent("commit", b"attempt-a") is True
    assert len(seen) == 3
    assert store.put_if_absent("commit", b"attempt-b") is False
    assert store.get("commit") == b"attempt-a"


def test_put_if_absent_gives_up_on_a_conflict_that_never_clears(aws, monkeypatch):
    monkeypatch.setattr(s3_module, "_CONFLICT_RETRIES", 2)
    store = S3Store(aws.shared.bucket, "pia")
    store.client.meta.events.register("before-call.s3.PutObject", _conflict)
    with pytest.raises(TransportError, match="ConditionalRequestConflict"):
        store.put_if_absent("commit", b"x")


def test_delete_prefix_pages_and_batches(aws, monkeypatch):
    monkeypatch.setattr(s3_module, "_DELETE_BATCH", 2)
    monkeypatch.setattr(s3_module, "_LIST_PAGE", 2)
    store = S3Store(aws.shared.bucket, "del")
    deletes: list[dict[str, Any]] = []
    _count(store, "before-call.s3.DeleteObjects", deletes)
    for i in range(5):
        store.put(f"x/{i}", b"v")
    store.put("y/keep", b"v")
    assert store.delete_prefix("x/") == 5
    assert len(deletes) == 3
    assert not any(store.exists(f"x/{i}") for i in range(5))
    assert store.exists("y/keep")


def test_a_missing_bucket_says_to_run_setup(aws):
    store = S3Store("no-such-bucket-here", "p")
    with pytest.raises(TransportError, match="starburst setup") as info:
        store.put("k", b"v")
    assert "NoSuchBucket" in str(info.value.__cause__)


def test_part_size_below_the_s3_minimum_is_refused(aws):
    with pytest.raises(ValueError, match="5 MiB"):
        S3Store(aws.shared.bucket, "p", part_size=1 * MiB)
