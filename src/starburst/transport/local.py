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
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..exceptions import TransportError
from ..private_files import make_dirs, make_private_dir, open_private
from ..settings import SQS_MAX_VISIBILITY
from .base import Message, Queue, Store, Transport, check_key, split_prefix
from .doorbell import Doorbell, ring

__all__ = ["DirStore", "LocalTransport", "SqliteQueue", "key_path"]

# SQLite waits this long for a competing writer before raising "locked";
# generous because a laptop may be busy running every worker at once.
_BUSY_TIMEOUT_MS = 30_000
# A writer waiting for the write lock retries this often, doubling: SQLite's
# own busy handler first sleeps 1 ms, then 2, 5, 10, 15 ms..., so a lock held
# 20 ms would be taken at 33 ms. A queue transaction holds it ~0.1 ms: start
# at 50 us, and stop doubling at 2 ms so a lock held long is taken soon after.
_LOCK_RETRY_MIN = 0.00005
_LOCK_RETRY_MAX = 0.002
# Long-poll backoff where no doorbell can be made: start fast so a warm
# worker sees work within a millisecond, back off so an idle one costs ~nothing.
_POLL_MIN = 0.0005
_POLL_MAX = 0.005
# With a doorbell, every send and release rings it: a receiver still looks
# at the queue this often only for what nobody rings for (a lease that
# lapsed, whose visibility timeout is seconds long), so 0.1 s costs nothing
# in latency and lets idle receivers sleep instead of polling SQLite.
_BELL_POLL = 0.1


#: On disk, a key's last segment is a file named ``<segment>%`` and every
#: other segment a directory named ``<segment>``, each ``%`` doubled: a name
#: ends in an odd number of ``%`` exactly when it is a key's file. So ``a/1``
#: (file ``a/1%``) and ``a/1/x`` (directory ``a/1``, file ``x%``) coexist, as
#: they do on S3.
_LEAF = "%"
#: Temporary files: a single ``%`` inside a name is neither a key's file nor
#: a key's directory, so no key can ever collide with one being written.
_TMP_PREFIX = ".tmp%"


def _dir_name(segment: str) -> str:
    return segment.replace("%", "%%")


def _decode(name: str) -> tuple[str, bool] | None:
    """(segment, is a key's file) of an on-disk name; None for a name no key maps to."""
    trailing = len(name) - len(name.rstrip("%"))
    leaf = trailing % 2 == 1
    base = name[:-1] if leaf else name
    segment = base.replace("%%", "%")
    if not segment or "%" in base.replace("%%", ""):
        return None  # a temporary file, or a name not written by DirStore
    return segment, leaf


def key_path(root: str | os.PathLike[str], key: str) -> Path:
    """The file that holds ``key`` in a :class:`DirStore` at ``root``.

    Raises:
        ValueError: ``key`` is not a valid store key.
    """
    *parents, last = check_key(key).split("/")
    return Path(root).joinpath(*map(_dir_name, parents), _dir_name(last) + _LEAF)


class DirStore(Store):
    """A :class:`Store` in a directory; ``put`` is atomic (write + rename).

    Keys are encoded on disk (see :data:`_LEAF`) so that a key may also be
    the parent of other keys, as on S3: a file cannot also be a directory.
    """

    def __init__(self, root: str | os.PathLike[str], *,
                 within: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root)
        try:
            # 0700, as every directory below it; never ``within`` (the session
            # directory), which a worker opens only while it exists.
            make_dirs(self.root, within=within)
        except OSError as exc:
            raise self._failed("create", self.root, exc) from exc

    def _path(self, key: str) -> Path:
        return key_path(self.root, key)

    def _dir(self, path: str) -> Path:
        """The directory that holds the keys below ``path`` (the root for ``""``)."""
        return self.root.joinpath(*map(_dir_name, path.split("/"))) if path else self.root

    def _write_temp(self, path: Path, data: bytes | memoryview) -> str:
        try:
            make_dirs(path.parent, within=self.root)
            # mkstemp makes the file 0600 whatever the umask; put_if_absent's
            # link and put's rename keep that mode.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TMP_PREFIX)
        except OSError as exc:
            raise self._failed("write", path, exc) from exc
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        except OSError as exc:
            os.unlink(tmp)
            raise self._failed("write", path, exc) from exc
        return tmp

    @staticmethod
    def _failed(what: str, path: Path, exc: OSError) -> TransportError:
        return TransportError(
            f"cannot {what} {path}: {exc}. Free disk space or point the local store "
            "elsewhere (STARBURST_LOCAL_DIR).")

    def put(self, key: str, data: bytes | memoryview) -> None:
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
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None
        except OSError as exc:
            raise TransportError(f"cannot read {path} (store key {key!r}): {exc}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def _walk(self, directory: Path, path: str) -> Iterator[tuple[str, Path]]:
        """(key, file) of every key below ``directory``, whose keys start ``path/``."""
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            decoded = _decode(entry.name)
            if decoded is None:
                continue
            segment, leaf = decoded
            key = f"{path}/{segment}" if path else segment
            try:
                if leaf and entry.is_file(follow_symlinks=False):
                    yield key, Path(entry.path)
                elif not leaf and entry.is_dir(follow_symlinks=False):
                    yield from self._walk(Path(entry.path), key)
            except OSError:  # removed while we looked
                continue

    def _under(self, prefix: str) -> Iterator[tuple[str, Path]]:
        path, itself = split_prefix(prefix)
        if itself:
            file = self._path(path)
            if file.is_file():
                yield path, file
        yield from self._walk(self._dir(path), path)

    def list_prefix(self, prefix: str) -> list[str]:
        return sorted(key for key, _ in self._under(prefix))

    def delete_prefix(self, prefix: str) -> int:
        count = 0
        for _, file in list(self._under(prefix)):
            try:
                file.unlink()
            except FileNotFoundError:
                continue
            count += 1
        path, _ = split_prefix(prefix)
        directory = self._dir(path)
        if path:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            for entry in list(os.scandir(self.root)):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
        return count


def _as_bytes(body: object) -> bytes:
    """A row's body as bytes, whatever SQLite type another writer gave it.

    starburst writes BLOBs; a number (SQLite is dynamically typed) would make
    ``bytes(n)`` allocate ``n`` zero bytes, so it is handed over as its text
    for the protocol parser to reject.
    """
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    return str(body).encode()


class SqliteQueue(Queue):
    """A :class:`Queue` in one table of a SQLite database in WAL mode.

    Connections are per thread (sqlite3 objects are not shareable) and
    every lease is taken inside ``BEGIN IMMEDIATE`` so two processes never
    receive the same visible message. A waiting receiver sleeps on a
    :class:`~starburst.transport.doorbell.Doorbell` that ``send`` (and a
    release) rings, so it wakes at once instead of at its next poll.
    """

    #: Bodies above the transport's inline limit (1 MiB) go to the store, so
    #: 16 MiB leaves room for any message starburst sends while keeping one
    #: insert short: it holds the write lock every other worker's lease waits on.
    max_body = 16 << 20
    #: Most messages one receive leases (one transaction, one lock hold).
    max_batch = 100
    #: Seconds a message may stay invisible since its receive, as on SQS (12
    #: hours), so both transports behave alike; ``STARBURST_QUEUE_MAX_VISIBILITY``
    #: scales it down for tests.
    max_visibility = SQS_MAX_VISIBILITY

    def __init__(self, path: str | os.PathLike[str], name: str, *, max_receives: int = 0,
                 dead: SqliteQueue | None = None) -> None:
        self.path = str(path)
        self.name = name
        self.max_receives = max_receives
        self.dead = dead
        limit = os.environ.get("STARBURST_QUEUE_MAX_VISIBILITY", "")
        try:
            self.max_visibility = float(limit) if limit else SQS_MAX_VISIBILITY
        except ValueError:
            raise TransportError(f"STARBURST_QUEUE_MAX_VISIBILITY={limit!r} is not a number "
                                 "of seconds") from None
        self._local = threading.local()
        #: Where this queue's receivers keep their doorbells (one per thread).
        self.bells = Path(self.path).parent / "bells" / name
        self._bells: weakref.WeakSet[Doorbell] = weakref.WeakSet()
        self._bells_lock = threading.Lock()
        # Made 0600 before SQLite opens it: SQLite would make it 0644 (less the
        # umask), and it gives the -wal and -shm files the database file's mode.
        # Only when this call creates it (O_EXCL): closing a descriptor of a file
        # drops every POSIX lock this process holds on it, those of SQLite's own
        # connections included (a connection that lost its lock may then delete
        # the -wal another process still uses: "disk I/O error").
        try:
            os.close(open_private(self.path, os.O_RDWR | os.O_EXCL))
        except FileExistsError:
            pass
        except OSError as exc:
            raise TransportError(f"cannot create the local queue {self.path}: {exc}") from exc
        with self._conn() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                " queue TEXT NOT NULL, body BLOB NOT NULL, visible_at REAL NOT NULL,"
                " receipt TEXT, receives INTEGER NOT NULL DEFAULT 0,"
                " leased_at REAL NOT NULL DEFAULT 0)"
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
            # TEXT values come back as bytes: a row another program wrote with
            # text that is not UTF-8 must reach the protocol parser, not crash here.
            conn.text_factory = bytes
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on any error), errors translated."""
        conn = self._conn()
        try:
            self._begin(conn)
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise TransportError(f"local queue {self.name}: {what} failed: {exc}") from exc

    @staticmethod
    def _begin(conn: sqlite3.Connection) -> None:
        """``BEGIN IMMEDIATE``, waiting for the write lock in short steps of our own.

        The connection's busy timeout is off while this waits (and back on
        for every other statement), so the wait is ours, not SQLite's.

        Raises:
            sqlite3.OperationalError: still locked after ``_BUSY_TIMEOUT_MS``.
        """
        deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
        delay = _LOCK_RETRY_MIN
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() >= deadline:
                        raise
                time.sleep(delay)
                delay = min(delay * 2, _LOCK_RETRY_MAX)
        finally:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")

    def _bell(self) -> Doorbell | None:
        """This thread's doorbell, made on its first wait; None where none can be made."""
        bell: Doorbell | None = getattr(self._local, "bell", None)
        if bell is not None and bell.pid == os.getpid() and not bell.closed:
            return bell
        if getattr(self._local, "no_bell", False):
            return None
        if bell is not None:
            bell.close()  # inherited through fork, or closed by close()
        try:
            bell = Doorbell(self.bells)
        except OSError:
            self._local.no_bell = True  # poll, as before doorbells
            return None
        self._local.bell = bell
        with self._bells_lock:
            self._bells.add(bell)
        return bell

    def close(self) -> None:
        """Close the doorbells this queue made in this process (their files go too)."""
        with self._bells_lock:
            bells = list(self._bells)
            self._bells.clear()
        for bell in bells:
            bell.close()

    def _run(self, what: str, sql: str, rows: Sequence[tuple[object, ...]]) -> None:
        with self._transaction(what) as conn:
            conn.executemany(sql, rows)

    def send(self, bodies: Sequence[bytes]) -> None:
        if not bodies:
            return
        for body in bodies:
            if len(body) > self.max_body:
                raise ValueError(
                    f"a message body of {len(body)} bytes exceeds the local queue limit of "
                    f"{self.max_body} bytes; put larger data in the store")
        now = time.time()
        self._run("send", "INSERT INTO messages (queue, body, visible_at) VALUES (?, ?, ?)",
                  [(self.name, body, now) for body in bodies])
        ring(self.bells)

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
                    "UPDATE messages SET visible_at = ?, receipt = ?, receives = ?, leased_at = ?"
                    " WHERE id = ?", (now + visibility, receipt, receives + 1, now, row_id))
                out.append(Message(_as_bytes(body), receipt, receives + 1))
        return out

    def receive(self, *, max_messages: int = 1, wait_seconds: float = 0.0,
                visibility: float = 60.0) -> list[Message]:
        deadline = time.monotonic() + wait_seconds
        bell = self._bell() if wait_seconds > 0 else None
        delay = _POLL_MIN
        while True:
            if bell is not None:
                # Before the look: a ring for a message sent after it stays heard.
                bell.drain()
            got = self._lease(max_messages, visibility)
            left = deadline - time.monotonic()
            if got or left <= 0:
                return got
            if bell is not None and not bell.closed:
                bell.wait(min(_BELL_POLL, left))
            else:  # no doorbell, or the queue was closed under this wait
                bell = None
                time.sleep(min(delay, left))
                delay = min(delay * 2, _POLL_MAX)

    def delete(self, receipts: Sequence[str]) -> None:
        if receipts:
            self._run("delete", "DELETE FROM messages WHERE receipt = ?",
                      [(r,) for r in receipts])

    def set_visibility(self, receipt: str, seconds: float) -> None:
        with self._transaction("set_visibility") as conn:
            now = time.time()
            if seconds > 0:
                row = conn.execute("SELECT leased_at FROM messages WHERE receipt = ?",
                                   (receipt,)).fetchone()
                if row is not None and now + seconds - float(row[0]) > self.max_visibility:
                    raise TransportError(
                        f"local queue {self.name}: a visibility of {seconds:g} s would keep the "
                        "message invisible past the limit of "
                        f"{self.max_visibility:g} s since its receive (as SQS: Total "
                        "VisibilityTimeout for the message is beyond the limit); hand the "
                        "message back before then")
            conn.execute("UPDATE messages SET visible_at = ? WHERE receipt = ?",
                         (now + seconds, receipt))
        if seconds <= 0:
            ring(self.bells)  # released: visible now

    def count(self) -> int:
        """Messages in this queue, visible or leased (for status and tests)."""
        row = self._conn().execute(
            "SELECT COUNT(*) FROM messages WHERE queue = ?", (self.name,)).fetchone()
        return int(row[0])


class LocalTransport(Transport):
    """Store and queues of one session in ``directory`` (spec ``local:<directory>``).

    The directory and everything in it are the user's alone (directories
    0700, files 0600, whatever the umask). ``create=True`` (the client)
    makes it, or takes one of this user's that nobody else can write into;
    ``create=False`` (a worker, :func:`from_spec`) opens it only while it
    exists, so a worker never makes a session directory again after its
    client removed it.

    Raises:
        TransportError: the directory is another user's, a symbolic link, or
            writable by others; or (``create=False``) it is gone.
    """

    inline_limit = 1 << 20
    store: DirStore
    tasks: SqliteQueue
    results: SqliteQueue
    dead: SqliteQueue

    def __init__(self, directory: str | os.PathLike[str], *, max_receives: int = 0,
                 create: bool = True) -> None:
        self.directory = Path(directory)
        try:
            if create:
                make_private_dir(self.directory)
            elif not self.directory.is_dir():
                raise TransportError(
                    f"the local session directory {self.directory} is gone: its session "
                    "ended (or was cleaned up)")
        except OSError as exc:
            raise TransportError(
                f"cannot use {self.directory} as a local session directory: {exc}. Remove "
                "it, or point STARBURST_LOCAL_DIR at a directory of your own") from exc
        db = self.directory / "queue.sqlite"
        self.store = DirStore(self.directory / "store", within=self.directory)
        self.dead = SqliteQueue(db, "dead")
        self.tasks = SqliteQueue(db, "tasks", max_receives=max_receives, dead=self.dead)
        self.results = SqliteQueue(db, "results")

    @property
    def spec(self) -> str:
        return f"local:{self.directory}?max_receives={self.tasks.max_receives}"

    def destroy(self) -> None:
        self.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def close(self) -> None:
        for queue in (self.tasks, self.results, self.dead):
            queue.close()


def from_spec(spec: str) -> LocalTransport:
    """Open the local transport named by ``local:<directory>[?max_receives=N]``."""
    rest = spec.partition(":")[2]
    directory, _, query = rest.partition("?")
    params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
    return LocalTransport(directory, max_receives=int(params.get("max_receives", "0")),
                          create=False)
