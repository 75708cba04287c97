"""The local transport: a directory store and a SQLite (WAL) queue.

Both live in one session directory, so worker processes on this machine
open them from the spec ``local:<directory>``. The queue gives the same
lease semantics as SQS (visibility timeout, receipts, a receive limit
that moves messages to a dead-letter queue), so the local default runs
exactly the protocol the cloud runs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..exceptions import TransportError
from .base import Message, Queue, Store, Transport

__all__ = ["DirStore", "LocalTransport", "SqliteQueue"]

# SQLite waits this long for a competing writer before raising "locked";
# generous because a laptop may be busy running every worker at once.
_BUSY_TIMEOUT_MS = 30_000
# Long-poll backoff: start fast so a warm worker sees work within a
# millisecond, back off so an idle one costs ~nothing.
_POLL_MIN = 0.0005
_POLL_MAX = 0.005


class DirStore(Store):
    """A :class:`Store` in a directory; ``put`` is atomic (write + rename)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"invalid store key {key!r}")
        return self.root / key

    def _write_temp(self, path: Path, data: bytes) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        except OSError as exc:
            os.unlink(tmp)
            raise TransportError(
                f"cannot write {path}: {exc}. Free disk space or point the local store "
                "elsewhere (STARBURST_LOCAL_DIR)."
            ) from exc
        return tmp

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        os.replace(self._write_temp(path, data), path)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        tmp = self._write_temp(path, data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None
        except OSError as exc:
            raise TransportError(f"cannot read {self._path(key)}: {exc}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def delete_prefix(self, prefix: str) -> int:
        base = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        if base.is_dir():
            count = sum(1 for p in base.rglob("*") if p.is_file())
            shutil.rmtree(base, ignore_errors=True)
            return count
        count = 0
        parent = base.parent
        if parent.is_dir():
            for path in parent.iterdir():
                if path.name.startswith(base.name):
                    if path.is_dir():
                        count += sum(1 for p in path.rglob("*") if p.is_file())
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)
                        count += 1
        return count


class SqliteQueue(Queue):
    """A :class:`Queue` in one table of a SQLite database in WAL mode.

    Connections are per thread (sqlite3 objects are not shareable) and
    every lease is taken inside ``BEGIN IMMEDIATE`` so two processes never
    receive the same visible message.
    """

    max_body = 256 << 20
    max_batch = 100

    def __init__(self, path: str | os.PathLike[str], name: str, *, max_receives: int = 0,
                 dead: SqliteQueue | None = None) -> None:
        self.path = str(path)
        self.name = name
        self.max_receives = max_receives
        self.dead = dead
        self._local = threading.local()
        with self._conn() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                " queue TEXT NOT NULL, body BLOB NOT NULL, visible_at REAL NOT NULL,"
                " receipt TEXT, receives INTEGER NOT NULL DEFAULT 0)"
            )
            conn.execute(
                "CREATE INDEX IF NOT EXISTS by_queue ON messages (queue, visible_at, id)"
            )
            conn.execute("CREATE INDEX IF NOT EXISTS by_receipt ON messages (receipt)")

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_MS / 1000,
                                       isolation_level=None, check_same_thread=False)
            except sqlite3.Error as exc:
                raise TransportError(f"cannot open the local queue {self.path}: {exc}") from exc
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on any error), errors translated."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise TransportError(f"local queue {self.name}: {what} failed: {exc}") from exc

    def _run(self, what: str, sql: str, rows: Sequence[tuple[object, ...]]) -> None:
        with self._transaction(what) as conn:
            conn.executemany(sql, rows)

    def send(self, bodies: Sequence[bytes]) -> None:
        if not bodies:
            return
        now = time.time()
        self._run("send", "INSERT INTO messages (queue, body, visible_at) VALUES (?, ?, ?)",
                  [(self.name, body, now) for body in bodies])

    def _lease(self, max_messages: int, visibility: float) -> list[Message]:
        conn = self._conn()
        now = time.time()
        # A read without the write lock first: an empty poll (the common
        # case for an idle worker) then never blocks the other processes.
        try:
            if conn.execute(
                    "SELECT 1 FROM messages WHERE queue = ? AND visible_at <= ? LIMIT 1",
                    (self.name, now)).fetchone() is None:
                return []
        except sqlite3.Error as exc:
            raise TransportError(f"local queue {self.name}: receive failed: {exc}") from exc
        out: list[Message] = []
        with self._transaction("receive") as conn:
            rows = conn.execute(
                # visible_at first, so the (queue, visible_at, id) index serves
                # the ORDER BY and no temporary sort holds the write lock.
                "SELECT id, body, receives FROM messages WHERE queue = ? AND visible_at <= ?"
                " ORDER BY visible_at, id LIMIT ?",
                (self.name, now, max_messages),
            ).fetchall()
            for row_id, body, receives in rows:
                if self.max_receives and receives >= self.max_receives and self.dead:
                    conn.execute(
                        "UPDATE messages SET queue = ?, receives = 0, receipt = NULL"
                        " WHERE id = ?", (self.dead.name, row_id))
                    continue
                receipt = uuid.uuid4().hex
                conn.execute(
                    "UPDATE messages SET visible_at = ?, receipt = ?, receives = ?"
                    " WHERE id = ?", (now + visibility, receipt, receives + 1, row_id))
                out.append(Message(bytes(body), receipt, receives + 1))
        return out

    def receive(self, *, max_messages: int = 1, wait_seconds: float = 0.0,
                visibility: float = 60.0) -> list[Message]:
        deadline = time.monotonic() + wait_seconds
        delay = _POLL_MIN
        while True:
            got = self._lease(max_messages, visibility)
            if got or time.monotonic() >= deadline:
                return got
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, _POLL_MAX)

    def delete(self, receipts: Sequence[str]) -> None:
        if receipts:
            self._run("delete", "DELETE FROM messages WHERE receipt = ?",
                      [(r,) for r in receipts])

    def set_visibility(self, receipt: str, seconds: float) -> None:
        self._run("set_visibility", "UPDATE messages SET visible_at = ? WHERE receipt = ?",
                  [(time.time() + seconds, receipt)])

    def count(self) -> int:
        """Messages in this queue, visible or leased (for status and tests)."""
        row = self._conn().execute(
            "SELECT COUNT(*) FROM messages WHERE queue = ?", (self.name,)).fetchone()
        return int(row[0])


class LocalTransport(Transport):
    """Store and queues of one session in ``directory`` (spec ``local:<directory>``)."""

    inline_limit = 1 << 20
    store: DirStore
    tasks: SqliteQueue
    results: SqliteQueue
    dead: SqliteQueue

    def __init__(self, directory: str | os.PathLike[str], *, max_receives: int = 0) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        db = self.directory / "queue.sqlite"
        self.store = DirStore(self.directory / "store")
        self.dead = SqliteQueue(db, "dead")
        self.tasks = SqliteQueue(db, "tasks", max_receives=max_receives, dead=self.dead)
        self.results = SqliteQueue(db, "results")

    @property
    def spec(self) -> str:
        return f"local:{self.directory}?max_receives={self.tasks.max_receives}"

    def destroy(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def from_spec(spec: str) -> LocalTransport:
    """Open the local transport named by ``local:<directory>[?max_receives=N]``."""
    rest = spec.partition(":")[2]
    directory, _, query = rest.partition("?")
    params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
    return LocalTransport(directory, max_receives=int(params.get("max_receives", "0")))
