"""Doorbells: wake a local queue's waiting receivers when a message is sent.

A :class:`~starburst.transport.local.SqliteQueue` receiver would otherwise
poll SQLite, and each poll interval is latency a small task pays twice
(task queue to the worker, result queue back to the client)::

    sender: INSERT ... COMMIT -> ring(bells/<queue>/)  one byte into every FIFO
    receiver: drain its FIFO -> SELECT (lease) -> empty? poll(FIFO, timeout)

Each waiting receiver (one per process and thread) owns a FIFO in the
queue's bell directory, opened read-write so it always has a writer and
never reads EOF. A sender writes one byte to every FIFO it finds (without
blocking: a full FIFO already holds a wake-up), so every receiver wakes
and the queue's own lease decides who gets the message. A receiver drains
its FIFO *before* it looks at the queue, so a ring for a message sent
after that look stays buffered and ends the wait at once: no wake-up is
lost. A FIFO without a reader (its process died) refuses the writer's open
(``ENXIO``) and is removed. Where FIFOs cannot be made (no ``os.mkfifo``,
a read-only or foreign filesystem), the queue falls back to polling.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import threading
import uuid
import weakref
from pathlib import Path

from ..private_files import make_dirs

__all__ = ["Doorbell", "ring"]

# Names a sender skips: a FIFO is made under a temporary name and renamed
# into place once opened, so a sender never finds one without its reader.
_HIDDEN = "."
# Bytes read per drain: a FIFO holds 64 KiB at most on Linux (16 KiB on
# macOS), so one read empties it in the common case; drain() loops anyway.
_DRAIN_BYTES = 1 << 16


def ring(directory: Path) -> None:
    """Wake every receiver waiting on the queue whose bells are in ``directory``.

    Best effort, never raises: a receiver that misses a ring still finds the
    message at its next check of the queue.
    """
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return  # no receiver ever waited here
    for entry in entries:
        if entry.name.startswith(_HIDDEN):
            continue
        try:
            fd = os.open(entry.path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no reader: its process is gone
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
            continue
        try:
            os.write(fd, b"\0")
        except OSError:
            pass  # full (EAGAIN): a wake-up is already waiting; or the reader just left
        finally:
            os.close(fd)


def _release(fd: int, path: str, pid: int) -> None:
    """Close a bell's FIFO and remove its file (only in the process that made it)."""
    if os.getpid() != pid:
        # A forked child holds a copy of the descriptor; the file is the parent's.
        with contextlib.suppress(OSError):
            os.close(fd)
        return
    with contextlib.suppress(OSError):
        os.unlink(path)
    with contextlib.suppress(OSError):
        os.close(fd)
    # Leave no empty bell directory behind (another receiver's FIFO keeps it).
    parent = os.path.dirname(path)
    for directory in (parent, os.path.dirname(parent)):
        try:
            os.rmdir(directory)
        except OSError:
            break


class Doorbell:
    """One receiver's FIFO in a queue's bell directory.

    Args:
        directory: the queue's bell directory (created if missing).

    Raises:
        OSError: the FIFO cannot be made or opened here (the caller polls).
    """

    def __init__(self, directory: Path) -> None:
        if not hasattr(os, "mkfifo") or not hasattr(select, "poll"):
            raise OSError(errno.ENOSYS, "FIFOs or poll() are not available on this platform")
        # 0700 (the FIFO itself is 0600), never the session directory itself:
        # one removed under this receiver stays removed.
        make_dirs(directory, within=directory.parent.parent)
        name = f"{os.getpid()}-{threading.get_native_id()}-{uuid.uuid4().hex[:8]}"
        temporary = directory / f"{_HIDDEN}{name}"
        self.path = str(directory / name)
        self.pid = os.getpid()
        os.mkfifo(temporary, 0o600)
        try:
            # Read-write: the FIFO always has a writer (itself), so it never
            # reads EOF, and opening it does not wait for a sender.
            self.fd = os.open(temporary, os.O_RDWR | os.O_NONBLOCK)
        except OSError:
            os.unlink(temporary)
            raise
        try:
            os.rename(temporary, self.path)
        except OSError:
            os.close(self.fd)
            os.unlink(temporary)
            raise
        self._poller = select.poll()
        self._poller.register(self.fd, select.POLLIN)
        # Held while the descriptor is in use, so close() from another thread
        # (the transport's) never closes it under a wait, whose next read could
        # then hit another file given the same number.
        self._lock = threading.Lock()
        # Also on garbage collection (the thread that owned it ended) and at exit.
        self._finalizer = weakref.finalize(self, _release, self.fd, self.path, self.pid)

    def drain(self) -> None:
        """Forget the rings heard so far (called before each look at the queue)."""
        with self._lock:
            while not self.closed:
                try:
                    if len(os.read(self.fd, _DRAIN_BYTES)) < _DRAIN_BYTES:
                        return
                except BlockingIOError:
                    return

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a ring; True if one came (False once closed)."""
        with self._lock:
            if self.closed:
                return False
            return bool(self._poller.poll(max(0.0, timeout) * 1000.0))

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran (or the bell was collected)."""
        return not self._finalizer.alive

    def close(self) -> None:
        """Close the FIFO and remove its file; idempotent.

        From another thread, waits for the owner's current wait to end (at
        most its timeout, a fraction of a second).
        """
        with self._lock:
            self._finalizer()
