"""A small local record of the environment images ensured on this machine.

``starburst env show`` compares the current snapshot with the one of the
last image built (or found up to date) for the platform, and ``starburst
env prune`` orders tags by when they were seen here when the registry
itself cannot say. Layout, under the envsync cache root
(``platformdirs.user_cache_dir("starburst")`` or ``STARBURST_CACHE_DIR``)::

    <cache>/env/last-<platform>.json   the last image: tag, digest, snapshot
    <cache>/env/history.json           [{tag, digest, repository, recorded_at}], newest last

Writes are atomic (temporary file, rename). A record that cannot be read
counts as absent: it is a convenience, never an input of the image.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .cache import default_cache_dir
from .snapshot import Snapshot

__all__ = ["BuildRecord", "SnapshotDiff", "diff_snapshot", "history", "last_build",
           "record_build"]

#: Entries kept in history.json.
HISTORY_LIMIT = 500


@dataclass(frozen=True, slots=True)
class BuildRecord:
    """One image ensured on this machine.

    Attributes:
        tag, env_hash, digest, reference, repository: the image.
        platform, python: its target.
        built: whether that call built and pushed it (False: it was already there).
        bytes_uploaded: bytes sent by that call.
        recorded_at: epoch seconds.
        distributions: name -> version of the snapshot's index distributions.
        local: name -> version of the snapshot's local distributions (code archive).
    """

    tag: str
    env_hash: str
    digest: str
    reference: str
    repository: str
    platform: str
    python: str
    built: bool
    bytes_uploaded: int
    recorded_at: float
    distributions: dict[str, str] = field(default_factory=dict)
    local: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BuildRecord:
        return cls(tag=str(data["tag"]), env_hash=str(data["env_hash"]),
                   digest=str(data["digest"]), reference=str(data["reference"]),
                   repository=str(data["repository"]), platform=str(data["platform"]),
                   python=str(data["python"]), built=bool(data["built"]),
                   bytes_uploaded=int(data["bytes_uploaded"]),
                   recorded_at=float(data["recorded_at"]),
                   distributions={str(k): str(v) for k, v in
                                  dict(data.get("distributions") or {}).items()},
                   local={str(k): str(v) for k, v in dict(data.get("local") or {}).items()})


@dataclass(frozen=True, slots=True)
class SnapshotDiff:
    """What changed between a recorded snapshot and the current one.

    Attributes:
        added: name -> version, in the current snapshot only.
        removed: name -> version, in the recorded snapshot only.
        changed: name -> (recorded version, current version).
        target: ``"<old> -> <new>"`` when the Python version or platform changed.
    """

    added: dict[str, str] = field(default_factory=dict)
    removed: dict[str, str] = field(default_factory=dict)
    changed: dict[str, tuple[str, str]] = field(default_factory=dict)
    target: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.target)


def _dir(cache_dir: Path | None) -> Path:
    return (cache_dir or default_cache_dir()) / "env"


def _write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def record_build(*, snapshot: Snapshot, tag: str, env_hash: str, digest: str,
                 reference: str, repository: str, built: bool, bytes_uploaded: int,
                 cache_dir: Path | None = None, clock: float | None = None) -> BuildRecord:
    """Record the image ensured for ``snapshot`` as the last one of its platform."""
    record = BuildRecord(
        tag=tag, env_hash=env_hash, digest=digest, reference=reference,
        repository=repository, platform=snapshot.target.arch,
        python=snapshot.target.python, built=built, bytes_uploaded=bytes_uploaded,
        recorded_at=time.time() if clock is None else clock,
        distributions={d.name: d.version for d in snapshot.distributions},
        local={d.name: d.version for d in snapshot.local})
    root = _dir(cache_dir)
    _write(root / f"last-{record.platform}.json", record.to_json())
    entries = [e for e in history(cache_dir)
               if not (e.get("tag") == tag and e.get("repository") == repository)]
    entries.append({"tag": tag, "digest": digest, "repository": repository,
                    "platform": record.platform, "recorded_at": record.recorded_at})
    _write(root / "history.json", entries[-HISTORY_LIMIT:])
    return record


def last_build(platform: str, cache_dir: Path | None = None) -> BuildRecord | None:
    """The last image recorded for ``platform``, or None."""
    data = _read(_dir(cache_dir) / f"last-{platform}.json")
    if not isinstance(data, dict):
        return None
    try:
        return BuildRecord.from_json(data)
    except (KeyError, TypeError, ValueError):
        return None


def history(cache_dir: Path | None = None) -> list[dict[str, Any]]:
    """Every recorded ``{tag, digest, repository, platform, recorded_at}``, oldest first."""
    data = _read(_dir(cache_dir) / "history.json")
    if not isinstance(data, list):
        return []
    return [e for e in data if isinstance(e, dict)]


def diff_snapshot(record: BuildRecord, snapshot: Snapshot) -> SnapshotDiff:
    """What changed from the recorded snapshot to ``snapshot`` (local code included)."""
    old = {**record.distributions, **record.local}
    new = {d.name: d.version for d in snapshot.distributions}
    new.update({d.name: d.version for d in snapshot.local})
    target = None
    if (record.python, record.platform) != (snapshot.target.python, snapshot.target.arch):
        target = (f"Python {record.python} {record.platform} -> "
                  f"Python {snapshot.target.python} {snapshot.target.arch}")
    return SnapshotDiff(
        added={n: v for n, v in sorted(new.items()) if n not in old},
        removed={n: v for n, v in sorted(old.items()) if n not in new},
        changed={n: (old[n], v) for n, v in sorted(new.items()) if n in old and old[n] != v},
        target=target)
