"""The session record: what a new client needs to take a session over.

Kept in the session's store, so ``starburst.attach(session_id)`` works for
a detached session and for one whose client crashed, while its data
exists:

* ``sessions/<s>/record.json``: backend, transport spec, options, state;
  rewritten when the state changes (running, submitted, ended).
* ``sessions/<s>/chunks/<k>``: manifest ``k`` (0, 1, 2...), written after
  each batch of chunks is sent: ``[[chunk id, [task ids]], ...]``. Attach
  reads manifests until one is missing, so no listing is needed.
* ``sessions/<s>/results/<chunk>/commit``: the winning ``done`` notice of
  each chunk (written by the worker with a conditional put), so results
  survive a client that consumed their notices and died.

Parsing is strict JSON (it runs no code) and every field is type-checked.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .exceptions import ProtocolError
from .transport.base import Store
from .wire.keys import chunk_manifest_key

__all__ = ["KEY_OPTION", "RECORD_VERSION", "WORKER_OPTION", "SessionRecord", "key_ref_of",
           "load_manifests", "write_manifest"]

RECORD_VERSION = 1
#: Key in a record's ``options`` holding how its workers were started
#: (image, cpu, memory_mib, arch, env): what a cloud backend needs to launch
#: replacement workers after ``attach``. Never credentials.
WORKER_OPTION = "_worker"
#: Key in a record's ``options`` naming where the session key is kept (a local
#: file's path, or a Secrets Manager secret's ARN): never the key itself.
KEY_OPTION = "_key"


def key_ref_of(record: SessionRecord) -> str:
    """Where ``record``'s session keeps its key ("" when the record does not say)."""
    ref = record.options.get(KEY_OPTION)
    return ref if isinstance(ref, str) else ""


@dataclass
class SessionRecord:
    """A session, as a new client needs it.

    Attributes:
        session: session id.
        backend: backend name.
        transport: transport spec (no credentials).
        created: epoch seconds.
        detached: whether workers outlive the client.
        deadline: epoch seconds after which detached workers stop.
        workers: most workers at once.
        max_attempts: attempts per chunk.
        state: ``running``, ``submitted`` (client detached) or ``ended``.
        options: backend options (``region``...) for re-opening the backend.
    """

    session: str
    backend: str
    transport: str
    created: float = field(default_factory=time.time)
    detached: bool = False
    deadline: float = 0.0
    workers: int = 1
    max_attempts: int = 3
    state: str = "running"
    options: dict[str, Any] = field(default_factory=dict)
    version: int = RECORD_VERSION

    def to_bytes(self) -> bytes:
        """JSON bytes of the record."""
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> SessionRecord:
        """Parse a record strictly.

        Raises:
            ProtocolError: not a well-formed record of this version.
        """
        try:
            raw = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise ProtocolError(f"session record is not JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise ProtocolError("session record is not an object")
        if raw.get("version") != RECORD_VERSION:
            raise ProtocolError(
                f"session record version {raw.get('version')!r}; this starburst reads "
                f"{RECORD_VERSION}: attach with the starburst version that started it")
        types: dict[str, tuple[type, ...]] = {
            "session": (str,), "backend": (str,), "transport": (str,),
            "created": (int, float), "detached": (bool,), "deadline": (int, float),
            "workers": (int,), "max_attempts": (int,), "state": (str,), "options": (dict,),
        }
        for name, allowed in types.items():
            value = raw.get(name)
            if not isinstance(value, allowed) or (
                    isinstance(value, bool) and bool not in allowed):
                raise ProtocolError(f"session record field {name!r} is missing or malformed")
        if raw["state"] not in ("running", "submitted", "ended"):
            raise ProtocolError(f"session record state {raw['state']!r} is unknown")
        return cls(**{name: raw[name] for name in (*types, "version")})


def write_manifest(store: Store, session: str, index: int,
                   chunks: list[tuple[int, list[int]]]) -> None:
    """Write chunk manifest ``index``: which tasks each chunk holds."""
    store.put(chunk_manifest_key(session, index),
              json.dumps([[cid, tids] for cid, tids in chunks]).encode())


def load_manifests(store: Store, session: str) -> dict[int, list[int]]:
    """Every chunk of a session and its task ids, from the manifests."""
    chunks: dict[int, list[int]] = {}
    index = 0
    while True:
        try:
            data = store.get(chunk_manifest_key(session, index))
        except KeyError:
            return chunks
        try:
            entries = json.loads(data)
            for cid, tids in entries:
                if not isinstance(cid, int) or not all(isinstance(t, int) for t in tids):
                    raise TypeError("ids must be integers")
                chunks[cid] = list(tids)
        except (ValueError, TypeError) as exc:
            raise ProtocolError(
                f"chunk manifest {chunk_manifest_key(session, index)} is malformed: {exc}"
            ) from exc
        index += 1
