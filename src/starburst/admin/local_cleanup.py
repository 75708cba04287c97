"""Clean up local sessions' leftovers: their worker processes and session directories.

A local session removes its directory on every way out but two: a
detached session (its workers and data wait for ``attach``) and a client
killed by a signal it cannot catch (its data waits for ``attach`` too).
This module is what ``starburst cleanup --local`` runs, the local twin of
:mod:`starburst.admin.cleanup`: a session's directory goes with its
workers once the session has ended, by the same rule as on AWS
(:func:`starburst.admin.ops.session_gone`: no record, state ``ended``, or a
detached session's deadline passed), and a session that is not detached
goes once its client is gone (no heartbeat for ``min_age`` seconds) and
none of its workers runs. Only this user's directories named
``starburst-<session id>`` are looked at.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from ..backends.local import local_root, session_dir, session_workers, stop_workers
from ..exceptions import ProtocolError
from ..session import SessionRecord
from ..transport.local import key_path
from ..wire.keys import client_heartbeat_key, record_key

__all__ = ["LocalSession", "clean_local_orphans", "clean_local_session", "local_sessions"]

#: What :func:`starburst.executor.new_session_id` names a session: other
#: ``starburst-*`` entries of the temp dir (the code cache, the emulator's
#: homes) are not sessions and are never touched.
_SESSION_ID = re.compile(r"^sb-\d{8}-\d{6}-[0-9a-f]{6}$")
_PREFIX = "starburst-"


@dataclass(frozen=True)
class LocalSession:
    """A local session directory as cleanup sees it.

    Attributes:
        session: the session id.
        directory: its directory.
        record: its record, None when missing or unreadable.
        heartbeat: epoch seconds of the client's last heartbeat (else the
            directory's modification time).
        workers: (pid, lock file) of its workers still running.
    """

    session: str
    directory: Path
    record: SessionRecord | None
    heartbeat: float
    workers: list[tuple[int, str]]

    def gone(self, *, now: float, min_age: float) -> bool:
        """Whether the session has ended and its directory may go."""
        record = self.record
        if record is None:  # a session that is starting has its directory first
            return now - self.heartbeat >= min_age and not self.workers
        if record.state == "ended" or (record.detached and 0 < record.deadline < now):
            return True
        # Not detached, its client dead (no beat), its workers gone with it:
        # nobody will attach to it.
        return not record.detached and not self.workers and now - self.heartbeat >= min_age


def _read(directory: Path, key: str) -> bytes | None:
    try:
        return key_path(directory / "store", key).read_bytes()
    except OSError:
        return None


def _inspect(session: str, directory: Path) -> LocalSession:
    record: SessionRecord | None = None
    data = _read(directory, record_key(session))
    if data is not None:
        try:
            record = SessionRecord.from_bytes(data)
        except ProtocolError:
            record = None
    beat = _read(directory, client_heartbeat_key(session))
    try:
        heartbeat = float(beat) if beat is not None else directory.stat().st_mtime
    except (ValueError, OSError):
        heartbeat = 0.0
    return LocalSession(session, directory, record, heartbeat, session_workers(str(directory)))


def _ours(directory: Path) -> bool:
    """A real directory (not a link) of this user."""
    try:
        info = directory.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and (not hasattr(os, "geteuid")
                                           or info.st_uid == os.geteuid())


def local_sessions() -> list[LocalSession]:
    """This user's local session directories (in ``STARBURST_LOCAL_DIR``, else the temp dir)."""
    try:
        names = sorted(os.listdir(local_root()))
    except OSError:
        return []
    out: list[LocalSession] = []
    for name in names:
        session = name[len(_PREFIX):]
        directory = Path(local_root(), name)
        if name.startswith(_PREFIX) and _SESSION_ID.match(session) and _ours(directory):
            out.append(_inspect(session, directory))
    return out


def _clean(found: LocalSession, *, dry_run: bool) -> list[str]:
    done: list[str] = []
    if found.workers:
        done.append(f"stop {len(found.workers)} local worker process(es) of session "
                    f"{found.session}")
        if not dry_run:
            stop_workers(found.workers)
    done.append(f"delete {found.directory} (session {found.session})")
    if not dry_run:
        shutil.rmtree(found.directory, ignore_errors=True)
    return done


def clean_local_session(session: str, *, dry_run: bool = False) -> list[str]:
    """Stop the local session's running workers and delete its directory; say what went."""
    directory = Path(session_dir(session))
    if not _ours(directory):
        return []
    return _clean(_inspect(session, directory), dry_run=dry_run)


def clean_local_orphans(*, min_age: float = 600.0, dry_run: bool = False,
                        now: float | None = None) -> list[str]:
    """Clean every local session that has ended (see :meth:`LocalSession.gone`)."""
    now = time.time() if now is None else now
    done: list[str] = []
    for found in local_sessions():
        if found.gone(now=now, min_age=min_age):
            done.extend(_clean(found, dry_run=dry_run))
    return done
