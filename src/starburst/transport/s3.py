"""A :class:`~starburst.transport.base.Store` on Amazon S3.

* Objects at or above ``multipart_threshold`` (100 MB by default) travel
  through boto3's transfer manager: parallel multipart upload, parallel
  ranged download. Smaller ones take one PutObject/GetObject.
* Every object carries the SHA-256 of its bytes in its metadata
  (``x-amz-meta-sha256``), verified on every read, whatever path wrote or
  read it. Uploads also send a CRC32 (``ChecksumAlgorithm``) so S3 rejects
  bytes damaged on the way in.
* ``put_if_absent`` is a conditional PutObject (``If-None-Match: *``): 412
  means someone else's object is there (we lost), 409
  ``ConditionalRequestConflict`` means a concurrent conditional write is
  in flight, retried with backoff.
"""

from __future__ import annotations

import hashlib
import io
import random
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from ..aws.clients import client as make_client
from ..aws.errors import error_code, translate_errors
from ..exceptions import ProtocolError, TransportError
from .base import MAX_KEY_BYTES, Store, check_key, split_prefix

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

__all__ = ["DEFAULT_MULTIPART_THRESHOLD", "DEFAULT_PART_SIZE", "S3Store"]

#: Below 100 MB one request is faster than the transfer manager's setup;
#: above it, parallel parts win (the issue's default).
DEFAULT_MULTIPART_THRESHOLD = 100 * 1000 * 1000
#: 16 MiB parts: few enough requests per GiB (64), large enough to reach
#: full per-connection throughput; s3transfer enlarges parts when an
#: object would need more than S3's 10,000.
DEFAULT_PART_SIZE = 16 << 20
#: Parallel connections per transfer (s3transfer's default).
DEFAULT_CONCURRENCY = 10
#: DeleteObjects takes at most 1,000 keys per call, and ListObjectsV2
#: returns at most 1,000 per page.
_DELETE_BATCH = 1000
_LIST_PAGE = 1000
#: ConditionalRequestConflict (409) clears once the competing write ends;
#: eight tries with capped backoff span several seconds.
_CONFLICT_RETRIES = 8
#: S3's longest object key is 1,024 UTF-8 bytes; a store key may take
#: MAX_KEY_BYTES of it, and the slash after the prefix one more.
_MAX_PREFIX_BYTES = 1024 - MAX_KEY_BYTES - 1
_META_DIGEST = "sha256"
_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})


def _digest(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


class S3Store(Store):
    """Keys of a store live under ``s3://<bucket>/<prefix>/``."""

    def __init__(self, bucket: str, prefix: str = "", *, region: str | None = None,
                 client: S3Client | None = None,
                 multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
                 part_size: int = DEFAULT_PART_SIZE,
                 max_concurrency: int = DEFAULT_CONCURRENCY) -> None:
        if part_size < 5 << 20:
            raise ValueError(f"part_size={part_size} is below S3's 5 MiB minimum part size")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if len(self.prefix.encode("utf-8")) > _MAX_PREFIX_BYTES:
            raise ValueError(
                f"S3 store prefix {self.prefix!r} is longer than {_MAX_PREFIX_BYTES} bytes: "
                f"S3 keys hold at most 1,024 bytes and a store key may take {MAX_KEY_BYTES}; "
                "use a shorter prefix")
        self.client = client or make_client("s3", region=region)
        self.multipart_threshold = multipart_threshold
        self._transfer = TransferConfig(multipart_threshold=multipart_threshold,
                                        multipart_chunksize=part_size,
                                        max_concurrency=max_concurrency, use_threads=True)

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _relative(self, full: str) -> str:
        return full[len(self.prefix) + 1:] if self.prefix else full

    def url(self, key: str) -> str:
        """``s3://`` URL of ``key`` (for messages and logs)."""
        return f"s3://{self.bucket}/{self._key(key)}"

    def put(self, key: str, data: bytes | memoryview) -> None:
        full = self._key(key)
        data = bytes(data)  # botocore takes bytes or a file; this copy is small beside the upload
        meta = {_META_DIGEST: _digest(data)}
        with translate_errors(f"S3 upload to {self.url(key)}", kind=TransportError):
            if len(data) < self.multipart_threshold:
                self.client.put_object(Bucket=self.bucket, Key=full, Body=data, Metadata=meta,
                                       ChecksumAlgorithm="CRC32")
            else:
                self.client.upload_fileobj(
                    io.BytesIO(data), self.bucket, full,
                    ExtraArgs={"Metadata": meta, "ChecksumAlgorithm": "CRC32"},
                    Config=self._transfer)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        full = self._key(key)
        meta = {_META_DIGEST: _digest(data)}
        for attempt in range(_CONFLICT_RETRIES + 1):
            with translate_errors(f"S3 conditional put to {self.url(key)}", kind=TransportError):
                try:
                    self.client.put_object(Bucket=self.bucket, Key=full, Body=data,
                                           Metadata=meta, IfNoneMatch="*",
                                           ChecksumAlgorithm="CRC32")
                except ClientError as exc:
                    code = error_code(exc)
                    if code == "PreconditionFailed":
                        return False
                    if code != "ConditionalRequestConflict" or attempt == _CONFLICT_RETRIES:
                        raise
                else:
                    return True
            # A competing conditional write is in flight: wait for it to end.
            time.sleep(min(1.0, 0.02 * 2 ** attempt) * random.uniform(0.5, 1.0))
        raise AssertionError("unreachable")  # pragma: no cover

    def get(self, key: str) -> bytes:
        full = self._key(key)
        action = f"S3 download of {self.url(key)}"
        with translate_errors(action, kind=TransportError):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=full)
            except ClientError as exc:
                if error_code(exc) in _NOT_FOUND:
                    raise KeyError(key) from None
                raise
            expected = response.get("Metadata", {}).get(_META_DIGEST)
            if response.get("ContentLength", 0) < self.multipart_threshold:
                data = response["Body"].read()
            else:
                # Large: drop this stream and fetch ranges in parallel.
                response["Body"].close()
                buffer = io.BytesIO()
                self.client.download_fileobj(self.bucket, full, buffer, Config=self._transfer)
                data = buffer.getvalue()
        if expected is None:
            raise ProtocolError(
                f"{self.url(key)} has no starburst checksum (x-amz-meta-sha256): it was not "
                "written by starburst; remove it or use another prefix")
        if _digest(data) != expected:
            raise ProtocolError(
                f"{self.url(key)} fails its SHA-256 check ({len(data)} bytes read): the object "
                "is corrupt or was replaced while being read; not using it")
        return data

    def exists(self, key: str) -> bool:
        with translate_errors(f"S3 HeadObject {self.url(key)}", kind=TransportError):
            try:
                self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            except ClientError as exc:
                if error_code(exc) in _NOT_FOUND:
                    return False
                raise
        return True

    def delete(self, key: str) -> None:
        with translate_errors(f"S3 DeleteObject {self.url(key)}", kind=TransportError):
            # S3 answers 204 whether or not the key existed: a missing key is no error.
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def _under(self, prefix: str) -> Iterator[str]:
        """Full S3 keys under ``prefix`` (whole segments): HEAD for the key itself,
        then one listing of what lies below ``<key>/`` (never of ``<key>10``...)."""
        path, itself = split_prefix(prefix)
        if itself and self.exists(path):
            yield self._key(path)
        below = f"{self._key(path)}/" if path else (f"{self.prefix}/" if self.prefix else "")
        with translate_errors(f"S3 ListObjectsV2 of s3://{self.bucket}/{below}",
                              kind=TransportError):
            paginator = self.client.get_paginator("list_objects_v2")
            pages = paginator.paginate(Bucket=self.bucket, Prefix=below,
                                       PaginationConfig={"PageSize": _LIST_PAGE})
            for page in pages:
                for obj in page.get("Contents", []):
                    yield obj["Key"]

    def list_prefix(self, prefix: str) -> list[str]:
        return sorted(self._relative(full) for full in self._under(prefix))

    def delete_prefix(self, prefix: str) -> int:
        deleted = 0
        batch: list[ObjectIdentifierTypeDef] = []
        for full in self._under(prefix):
            batch.append({"Key": full})
            if len(batch) == _DELETE_BATCH:
                deleted += self._delete(batch)
                batch = []
        if batch:
            deleted += self._delete(batch)
        return deleted

    def _delete(self, batch: list[ObjectIdentifierTypeDef]) -> int:
        with translate_errors(f"S3 DeleteObjects in s3://{self.bucket}", kind=TransportError):
            response = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        errors = response.get("Errors", [])
        if errors:
            first = errors[0]
            raise TransportError(
                f"S3 DeleteObjects in s3://{self.bucket} failed for {len(errors)} key(s), e.g. "
                f"{first.get('Key')}: {first.get('Code')}: {first.get('Message', '')}")
        return len(batch)
