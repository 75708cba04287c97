"""Queue messages between client and workers.

Two kinds travel, both framed the same way so one strict parser serves
both (and can be fuzzed): a small JSON header, then optional raw bytes
(an inline payload or result)::

    b"SBM" | version:u8 | header_len:u32 | header (JSON, utf-8) | body | tag (32 bytes)

The tag is an HMAC-SHA256 of everything before it under the session key
(:mod:`.auth`): :func:`decode` checks it, in constant time, before it reads
the header, so a message not made with the key is refused unread.

* :class:`TaskMessage` (client -> tasks queue): one chunk of tasks; or
  (worker -> tasks queue) the rest of a chunk its worker handed back before
  SQS's 12-hour lease limit, naming the stored outcomes of the tasks that ran.
* :class:`Notice` (worker -> results queue): ``start`` when a worker
  leases a chunk (with the lease receipt, so the client can count the
  attempt and redeliver at once if the worker dies), ``done`` with the
  result (inline or a store key), ``release`` when a worker hands a chunk
  back on SIGTERM (not an attempt) or, near ``max_lease``, hands its rest
  back under a new message (``key``: the outcomes so far), ``bad`` when a message could not be
  parsed and was moved aside, ``progress`` (rate-limited: at most one a
  second per worker) with how many tasks of the running chunk finished,
  ``info={"done": n}``, so progress counts tasks, not chunks.

Headers are JSON, never pickle: parsing a message runs no code. The
payload a message points to is verified against the checksum its tagged
header carries before it is unpickled, so a stored payload is as authentic
as the message that names it.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any, Literal

from ..exceptions import ProtocolError, VersionMismatchError
from .auth import sign, verify

__all__ = ["HANDED_BACK", "PROTOCOL_VERSION", "Notice", "TaskMessage", "decode", "encode"]

#: 2: every message ends with its HMAC tag (issue 14).
PROTOCOL_VERSION = 2
_MAGIC = b"SBM"
_HEAD = struct.Struct("<3sBI")
# A header is a few hundred bytes; anything near this is corrupt or hostile.
_MAX_HEADER = 64 * 1024

#: ``info`` entry (true) of a ``start`` notice whose message is the rest of a
#: chunk handed back near ``max_lease``: the attempt of the worker that handed
#: it back carries over, even when its ``release`` has not arrived yet.
HANDED_BACK = "handed_back"

NoticeKind = Literal["start", "done", "release", "bad", "progress"]
_NOTICE_KINDS = ("start", "done", "release", "bad", "progress")


@dataclass(frozen=True, slots=True)
class TaskMessage:
    """One chunk of tasks to run.

    Attributes:
        session: session id.
        chunk: chunk id, unique in the session.
        n: number of tasks in the chunk.
        checksum: of the payload frame (:func:`starburst.wire.serialization.frame_checksum`:
            BLAKE2b of every byte, or of its structure on the local transport).
        key: store key of the payload, or "" when it rides in ``body``.
        timeout: per-task timeout in seconds, or None.
        capture: whether the worker returns what each task printed.
        cancellable: the tasks are futures the user may cancel while queued;
            the worker checks for a cancel marker before running them.
        body: the inline payload frame.
        done_key: set on the rest of a chunk handed back near ``max_lease``
            (sent by its worker, same chunk id and payload): store key of the
            result frame of all ``n`` tasks, those not yet run ``unrun``; the
            next worker runs only those, so no task runs twice.
        done_checksum: of that frame.
    """

    session: str
    chunk: int
    n: int
    checksum: str
    key: str = ""
    timeout: float | None = None
    capture: bool = False
    cancellable: bool = False
    body: bytes = b""
    done_key: str = ""
    done_checksum: str = ""


@dataclass(frozen=True, slots=True)
class Notice:
    """A worker's report about a chunk.

    Attributes:
        kind: ``start``, ``done``, ``release``, ``bad`` or ``progress``.
        session: session id.
        chunk: chunk id (-1 for ``bad`` when unknown).
        worker: worker id (local process or ECS task ARN).
        attempt: attempt token (unique per lease), names the result key.
        receipt: lease receipt of the task message (``start`` only).
        key: store key of the result, or "" when it rides in ``body``; on a
            ``release`` that handed the rest of the chunk back under a new
            message, the key of the outcomes so far (the new message's
            :attr:`TaskMessage.done_key`).
        checksum: of the result frame (``done``, such a ``release``), as for a
            task message.
        info: free-form details (durations, error text of ``bad``, why tasks came
            back ``unrun``: see :data:`starburst.worker.loop.UNRUN_STOPPED`;
            :data:`HANDED_BACK` on the ``start`` of a handed-back rest).
        body: inline result frame.
    """

    kind: NoticeKind
    session: str
    chunk: int
    worker: str
    attempt: str = ""
    receipt: str = ""
    key: str = ""
    checksum: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    body: bytes = b""


def _frame(header: dict[str, Any], body: bytes, key: bytes) -> bytes:
    raw = json.dumps(header, separators=(",", ":")).encode()
    return sign(key, _HEAD.pack(_MAGIC, PROTOCOL_VERSION, len(raw)) + raw + body)


def encode(msg: TaskMessage | Notice, key: bytes) -> bytes:
    """Encode a message into queue-body bytes, tagged with the session ``key``."""
    if isinstance(msg, TaskMessage):
        header: dict[str, Any] = {
            "t": "task", "s": msg.session, "c": msg.chunk, "n": msg.n, "h": msg.checksum,
            "k": msg.key, "to": msg.timeout, "cap": msg.capture, "x": msg.cancellable,
        }
        if msg.done_key or msg.done_checksum:  # a handed-back rest: others keep their size
            header["dk"], header["dh"] = msg.done_key, msg.done_checksum
    else:
        header = {
            "t": msg.kind, "s": msg.session, "c": msg.chunk, "w": msg.worker,
            "a": msg.attempt, "r": msg.receipt, "k": msg.key, "h": msg.checksum,
            "i": msg.info,
        }
    return _frame(header, msg.body, key)


def _get(header: dict[str, Any], name: str, types: type | tuple[type, ...]) -> Any:
    if name not in header:
        raise ProtocolError(f"message header lacks field {name!r}")
    value = header[name]
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise ProtocolError(f"message field {name!r} has type bool")
    if not isinstance(value, types):
        raise ProtocolError(f"message field {name!r} has type {type(value).__name__}")
    return value


def decode(data: bytes, key: bytes) -> TaskMessage | Notice:
    """Check queue-body bytes' tag under the session ``key``, then parse them strictly.

    Raises:
        AuthenticationError: the tag does not match (a :class:`ProtocolError`).
        ProtocolError: the bytes are not a well-formed starburst message.
        VersionMismatchError: the message comes from another protocol version.
    """
    if len(data) < _HEAD.size:
        raise ProtocolError(f"message truncated ({len(data)} bytes)")
    magic, version, hlen = _HEAD.unpack_from(data)
    if magic != _MAGIC:
        raise ProtocolError("not a starburst message (bad magic)")
    if version != PROTOCOL_VERSION:
        raise VersionMismatchError(
            f"message protocol version {version}, this starburst speaks {PROTOCOL_VERSION}: "
            "client and worker run different starburst versions; use the same version on both"
        )
    view = verify(key, data)
    if hlen > _MAX_HEADER or _HEAD.size + hlen > len(view):
        raise ProtocolError(f"message header length {hlen} exceeds the message")
    try:
        header = json.loads(bytes(view[_HEAD.size : _HEAD.size + hlen]))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError(f"message header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise ProtocolError("message header is not an object")
    body = bytes(view[_HEAD.size + hlen :])
    kind = _get(header, "t", str)
    if kind == "task":
        timeout = header.get("to")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
        ):
            raise ProtocolError("message field 'to' must be a positive number or null")
        n = _get(header, "n", int)
        if n < 1:
            raise ProtocolError("message field 'n' must be >= 1")
        return TaskMessage(
            session=_get(header, "s", str), chunk=_get(header, "c", int), n=n,
            checksum=_get(header, "h", str), key=_get(header, "k", str),
            timeout=None if timeout is None else float(timeout),
            capture=_get(header, "cap", bool),
            cancellable=_get(header, "x", bool) if "x" in header else False, body=body,
            done_key=_get(header, "dk", str) if "dk" in header else "",
            done_checksum=_get(header, "dh", str) if "dh" in header else "",
        )
    if kind not in _NOTICE_KINDS:
        raise ProtocolError(f"unknown message kind {kind!r}")
    return Notice(
        kind=kind, session=_get(header, "s", str), chunk=_get(header, "c", int),
        worker=_get(header, "w", str), attempt=_get(header, "a", str),
        receipt=_get(header, "r", str), key=_get(header, "k", str),
        checksum=_get(header, "h", str), info=_get(header, "i", dict), body=body,
    )
