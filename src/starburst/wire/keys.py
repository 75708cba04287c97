"""Every store key of a session, in one place.

A session's objects all live below ``sessions/<session>/``: the client,
the workers, the backends and ``starburst cleanup``/``status`` build
their keys here, so a key is spelled once. Keys are paths (see
:class:`starburst.transport.base.Store`): ``payloads/1`` and
``payloads/10`` are distinct segments, and a prefix deletion of one never
takes the other.
"""

from __future__ import annotations

__all__ = ["SESSIONS", "cancel_key", "chunk_manifest_key", "client_heartbeat_key", "code_key",
           "handed_key", "payload_key", "record_key", "result_commit_key", "result_key",
           "session_prefix", "shared_key"]

#: The prefix of every session's keys: what ``starburst status`` lists.
SESSIONS = "sessions/"


def session_prefix(session: str) -> str:
    """The prefix of every key of ``session`` (with its trailing slash)."""
    return f"{SESSIONS}{session}/"


def record_key(session: str) -> str:
    """Store key of a session's record."""
    return f"{session_prefix(session)}record.json"


def chunk_manifest_key(session: str, index: int) -> str:
    """Store key of a session's chunk manifest number ``index``."""
    return f"{session_prefix(session)}chunks/{index}"


def payload_key(session: str, chunk: int) -> str:
    """Store key of a chunk's payload, when it is too large to travel inline."""
    return f"{session_prefix(session)}payloads/{chunk}"


def shared_key(session: str, digest: str) -> str:
    """Store key of a shared object (function, large argument) of a session."""
    return f"{session_prefix(session)}objects/{digest}"


def result_key(session: str, chunk: int, attempt: str) -> str:
    """Store key of one attempt's result body."""
    return f"{session_prefix(session)}results/{chunk}/{attempt}"


def handed_key(session: str, chunk: int, attempt: str) -> str:
    """Store key of the outcomes so far of a chunk its worker handed back near
    ``max_lease`` (the rest runs under a new message naming it)."""
    return f"{session_prefix(session)}results/{chunk}/handed/{attempt}"


def result_commit_key(session: str, chunk: int) -> str:
    """Store key whose conditional creation commits a chunk's winning attempt."""
    return f"{session_prefix(session)}results/{chunk}/commit"


def cancel_key(session: str, chunk: int) -> str:
    """Store key whose presence says the user cancelled a queued chunk."""
    return f"{session_prefix(session)}cancelled/{chunk}"


def client_heartbeat_key(session: str) -> str:
    """Store key the client refreshes while it is alive."""
    return f"{session_prefix(session)}heartbeat"


def code_key(session: str, digest: str) -> str:
    """Store key of a session's code archive."""
    return f"{session_prefix(session)}code/{digest}.zip"
