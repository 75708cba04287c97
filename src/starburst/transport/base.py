"""The transport: how bytes (Store) and task messages (Queue) travel.

A compute backend never carries task data and the transport never starts
machines. Scheduling, retries and waves live above these classes, once;
each implementation only moves bytes.

* :class:`Store`: a key -> bytes map (a local directory, or S3) for
  payloads, shared objects, results too large to ride in a message, and
  the session record. ``put_if_absent`` is the primitive that makes the
  first committed result win.
* :class:`Queue`: an at-least-once queue with leases (SQLite or SQS). A
  received message is invisible for ``visibility`` seconds; the holder
  extends it while working, deletes it when done, or sets it to 0 to
  release it. A message received ``max_receives`` times moves to the
  dead-letter queue (a backstop: starburst counts attempts itself).
* :class:`Transport`: a store plus the session's task, result and dead
  letter queues, rebuilt on a worker from its :attr:`Transport.spec`.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["MAX_KEY_BYTES", "MAX_SEGMENT_BYTES", "Message", "Queue", "Store", "Transport",
           "check_key", "split_prefix"]


@dataclass(frozen=True, slots=True)
class Message:
    """A received queue message.

    Attributes:
        body: the bytes sent.
        receipt: handle that deletes the message or changes its visibility.
        receives: how many times it has been received (informational only).
    """

    body: bytes
    receipt: str
    receives: int


#: The longest key, in UTF-8 bytes. S3 allows 1,024 for the whole object key;
#: this leaves 255 bytes for an S3 store's own prefix (S3Store checks it).
MAX_KEY_BYTES = 768
#: The longest segment, in UTF-8 bytes: a directory store doubles each ``%``
#: and adds one (see DirStore), and 2 * 127 + 1 = 255 is the longest file
#: name common filesystems (ext4, APFS, XFS, NTFS) allow.
MAX_SEGMENT_BYTES = 127


def _key_error(key: str, why: str) -> ValueError:
    return ValueError(
        f"invalid store key {key!r}: {why}. A store key is a path of '/'-separated "
        f"segments: each non-empty, not '.' or '..', without control characters, at most "
        f"{MAX_SEGMENT_BYTES} UTF-8 bytes, the whole at most {MAX_KEY_BYTES}")


def check_key(key: str) -> str:
    """Return ``key`` if it is a valid store key; else raise a ``ValueError`` saying why.

    The rules are the contract of every :class:`Store`, checked here once
    so a key that one store takes is never refused by another.
    """
    if not key:
        raise _key_error(key, "it is empty")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise _key_error(key, "it is not valid UTF-8 (a lone surrogate)") from None
    if size > MAX_KEY_BYTES:
        raise _key_error(key, f"it is {size} bytes, longer than {MAX_KEY_BYTES} bytes")
    for number, segment in enumerate(key.split("/"), 1):
        if not segment:
            raise _key_error(key, f"segment {number} is an empty segment")
        if segment in (".", ".."):
            raise _key_error(key, f"segment {number} is {segment!r}")
        if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in segment):
            raise _key_error(key, f"segment {number} holds a control character")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise _key_error(key, f"segment {number} is longer than {MAX_SEGMENT_BYTES} bytes")
    return key


def split_prefix(prefix: str) -> tuple[str, bool]:
    """Split a prefix into (key path, whether the path itself is included).

    ``""`` is everything: ``("", False)``. ``"a/1"`` is ``a/1`` and what lies
    below it: ``("a/1", True)``. ``"a/1/"`` is only what lies below ``a/1``:
    ``("a/1", False)``.

    Raises:
        ValueError: the path is not a valid key (see :func:`check_key`).
    """
    if not prefix:
        return "", False
    if prefix.endswith("/"):
        return check_key(prefix[:-1]), False
    return check_key(prefix), True


class Store(abc.ABC):
    """A key -> bytes store whose keys are paths.

    A key is ``/``-separated segments (:func:`check_key` says which keys are
    valid; every method refuses an invalid one with ``ValueError``). Prefix
    operations act on whole segments: the prefix ``a/1`` means the key
    ``a/1`` and every key below ``a/1/``, never ``a/10``; with a trailing
    slash, ``a/1/`` means only the keys below it; ``""`` means every key. A
    key may also be the parent of other keys: ``a/1`` and ``a/1/x`` each
    hold their own bytes, on every store.
    """

    @abc.abstractmethod
    def put(self, key: str, data: bytes | memoryview) -> None:
        """Write ``data`` at ``key``, replacing what was there, atomically.

        ``data`` may be any contiguous bytes view: a large frame arrives as
        a mapped one (:func:`starburst.wire.serialization.dumps`).
        """

    @abc.abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Write ``data`` at ``key`` only if nothing is there; return whether it did."""

    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """Return the bytes at ``key``.

        Raises:
            KeyError: nothing is stored at ``key``.
        """

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Return whether something is stored at ``key``."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Delete ``key`` only (not the keys below it); a missing key is no error."""

    @abc.abstractmethod
    def list_prefix(self, prefix: str) -> list[str]:
        """Return the keys under ``prefix`` (whole segments, see above), sorted."""

    @abc.abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete the keys under ``prefix`` (whole segments, see above); return how many went."""


class Queue(abc.ABC):
    """One at-least-once message queue with leases."""

    #: Largest body that may be sent, in bytes (SQS: 1 MiB after encoding).
    max_body: int = 1 << 20
    #: Most messages one ``receive`` returns (SQS: 10).
    max_batch: int = 10

    @abc.abstractmethod
    def send(self, bodies: Sequence[bytes]) -> None:
        """Send messages (in as few requests as the service allows)."""

    @abc.abstractmethod
    def receive(
        self, *, max_messages: int = 1, wait_seconds: float = 0.0, visibility: float = 60.0
    ) -> list[Message]:
        """Lease up to ``max_messages``, waiting up to ``wait_seconds`` for one to arrive."""

    @abc.abstractmethod
    def delete(self, receipts: Sequence[str]) -> None:
        """Delete leased messages (acknowledge). Unknown receipts are ignored."""

    @abc.abstractmethod
    def set_visibility(self, receipt: str, seconds: float) -> None:
        """Extend a lease (heartbeat) or, with 0, release the message at once.

        Raises:
            TransportError: the extension would keep the message invisible past
                the queue's limit since its receive (SQS: 12 hours; the local
                queue applies the same). Workers never ask for that
                (``Settings.max_lease``): they hand the chunk back first.
        """


class Transport(abc.ABC):
    """A store and the three queues of one session."""

    store: Store
    tasks: Queue
    results: Queue
    dead: Queue
    #: Largest encoded payload/result that rides inside a queue message;
    #: above it the bytes go to the store and the message carries the key.
    inline_limit: int = 64 * 1024

    @property
    @abc.abstractmethod
    def spec(self) -> str:
        """A string from which :func:`starburst.transport.open_transport` rebuilds this."""

    @abc.abstractmethod
    def destroy(self) -> None:
        """Delete the session's queues (the store's data is removed by prefix)."""

    def close(self) -> None:  # noqa: B027 - optional hook, most transports hold nothing
        """Release client resources (connections); the queues stay."""
