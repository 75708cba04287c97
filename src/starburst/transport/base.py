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

__all__ = ["Message", "Queue", "Store", "Transport"]


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


class Store(abc.ABC):
    """A flat key -> bytes store. Keys are ``/``-separated paths."""

    @abc.abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key``, replacing what was there, atomically."""

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
    def delete_prefix(self, prefix: str) -> int:
        """Delete every key starting with ``prefix``; return how many went."""


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
        """Extend a lease (heartbeat) or, with 0, release the message at once."""


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
