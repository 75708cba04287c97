"""The local backend: workers are processes on this machine.

They run ``python -m starburst.worker`` with the current interpreter:
the same entrypoint and protocol a Fargate task runs. Their output is
read through pipes and handed to the client line by line, so it shows
live and labelled without tearing the progress bar. Workers start in
their own session so a Ctrl-C in the terminal reaches only the client,
which then stops them.

Each worker holds an ``flock`` on ``workers/<id>.lock`` in the session
directory for as long as it lives (the client opens and locks the file and
passes the descriptor to the worker, so no worker code is involved and the
kernel drops the lock when the process dies, even by SIGKILL). That is how
``starburst.attach`` finds the previous client's workers still running and
adopts them: a pid alone could have been reused by another process.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING

from ..exceptions import BackendError, ConfigurationError
from ..private_files import check_private_dir, make_dirs, open_private
from ..scheduling.events import WorkerExit
from ..scheduling.pacing import LaunchPacing
from ..session import SessionRecord
from ..transport import open_transport
from ..transport.local import LocalTransport, key_path
from ..wire.auth import KEY_ENV, key_from_text, key_text, new_key
from ..wire.keys import record_key
from .base import ComputeBackend, OutputCallback, Session, WorkerSpec
from .option_names import unknown_options_error

if TYPE_CHECKING:
    from ..options import ExecutorOptions

__all__ = ["LocalBackend", "local_root", "session_dir", "session_workers", "stop_workers"]

log = logging.getLogger(__name__)

# How long stop() waits after SIGTERM (workers release their chunk and
# exit within a poll) before it sends SIGKILL.
_TERM_GRACE = 5.0
_ids = itertools.count(1)


def local_root() -> str:
    """Where local sessions keep their directories: ``STARBURST_LOCAL_DIR``, else the temp dir."""
    return os.environ.get("STARBURST_LOCAL_DIR") or tempfile.gettempdir()


def session_dir(session: str) -> str:
    """Where a local session keeps its store and queues."""
    return os.path.join(local_root(), f"starburst-{session}")


def session_workers(directory: str) -> list[tuple[int, str]]:
    """(pid, lock file) of the session's workers still running (their lock is held)."""
    lock_dir = os.path.join(directory, "workers")
    try:
        names = sorted(n for n in os.listdir(lock_dir) if n.endswith(".lock"))
    except (FileNotFoundError, NotADirectoryError):
        return []
    out: list[tuple[int, str]] = []
    for name in names:
        path = os.path.join(lock_dir, name)
        pid = _read_pid(path)
        if pid is not None and _lock_held(path):
            out.append((pid, path))
    return out


def stop_workers(workers: Sequence[tuple[int, str]], *, grace: float = _TERM_GRACE) -> None:
    """Stop workers found by :func:`session_workers`: SIGTERM, then SIGKILL after ``grace``.

    A worker is signalled only while its lock is held, so a reused pid is never hit.
    """
    for pid, path in workers:
        if _lock_held(path):
            _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for pid, path in workers:
        while _lock_held(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _lock_held(path):
            _signal_group(pid, signal.SIGKILL)


#: The session key's file in a local session directory (0600): what lets
#: ``attach`` from another process of the same user read the session's messages.
KEY_FILE = "key"


def _write_key(directory: str, key: bytes) -> None:
    """Write the session key where only this user can read it (created 0600, never
    readable in between, whatever the umask)."""
    fd = os.open(os.path.join(directory, KEY_FILE),
                 os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key_text(key))


def _read_key(directory: str, session: str) -> bytes:
    """The session key from its file, which must be this user's own and private (0600):
    a key another user could have written would let them forge the session's results."""
    try:
        fd = os.open(os.path.join(directory, KEY_FILE), os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, encoding="ascii") as src:
            info = os.fstat(src.fileno())
            if info.st_uid != os.geteuid() or info.st_mode & 0o077:
                raise ConfigurationError(
                    f"the key file of local session {session} in {directory} is not yours "
                    f"alone (uid {info.st_uid}, mode {oct(info.st_mode & 0o777)}); refusing "
                    "to attach")
            return key_from_text(src.read())
    except FileNotFoundError:
        raise ConfigurationError(
            f"local session {session} has no key file in {directory}: it was started by a "
            "starburst older than 0.x (messages were not authenticated then) or its "
            "directory was altered; it cannot be attached to") from None


def _transport_dir(spec: WorkerSpec) -> str:
    """The session directory of a local transport spec (``local:<dir>?...``)."""
    return spec.env["STARBURST_TRANSPORT"].partition(":")[2].partition("?")[0]


def _lock_worker(path: str) -> int:
    """Create and lock a worker's lock file; the descriptor goes to the worker."""
    fd = open_private(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise
    return fd


def _lock_held(path: str) -> bool:
    """Whether the worker that owns the lock file at ``path`` still runs."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases the lock if this call took it
    return False


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal a worker's process group (it leads its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _client_path() -> str:
    """The client's import path, so workers import what the client can.

    Functions of importable modules travel by reference (module and name),
    so a module the client found through a runtime ``sys.path`` entry must
    be findable by the worker too.
    """
    entries = [os.path.abspath(p or os.curdir) for p in sys.path]
    extra = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join(dict.fromkeys([*entries, *filter(None, extra.split(os.pathsep))]))


class LocalBackend(ComputeBackend):
    """Worker processes on this machine."""

    name = "local"
    live_output = True

    def __init__(self, on_output: OutputCallback | None = None) -> None:
        self._on_output = on_output
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._started: dict[str, float] = {}
        self._pumps: dict[str, list[threading.Thread]] = {}
        self._keep: set[str] = set()
        self._lock = threading.Lock()
        # The previous client's workers found running at attach: id -> (pid, lock file).
        self._adopted: dict[str, tuple[int, str]] = {}
        self._exits_at_attach: list[WorkerExit] = []
        # Whatever path drops this backend, a worker still running is reaped when
        # it exits instead of left a zombie (and a ResourceWarning). Not at exit:
        # the interpreter's end reaps nothing and must not start threads.
        weakref.finalize(self, _reap_running, self._procs).atexit = False
        # The parent watch: every attached worker holds the read end of this
        # pipe and only this process holds the write end, so when the client
        # dies, by any signal, the workers read EOF and stop (with their tasks'
        # processes) within a moment. Non-inheritable: no other child keeps
        # the write end open. Made on first launch.
        self._watch: tuple[int, int] | None = None
        self._watch_closer: weakref.finalize[[tuple[int, int]], LocalBackend] | None = None

    @classmethod
    def open_session(cls, *, session: str, options: ExecutorOptions,
                     on_output: OutputCallback | None = None) -> Session:
        if options.extra:
            raise unknown_options_error(cls.name, options.extra)
        directory = session_dir(session)
        transport = LocalTransport(directory, max_receives=options.settings.max_receives)
        try:
            key = new_key()
            _write_key(directory, key)
            spec = WorkerSpec(env={"STARBURST_TRANSPORT": transport.spec,
                                   "STARBURST_SESSION": session},
                              cpu=options.cpu, memory_mib=options.memory_mib, key=key)
            return Session(backend=cls(on_output), transport=transport, spec=spec,
                           pacing=LaunchPacing.unlimited(),
                           workers=options.default_local_workers(), key=key,
                           key_ref=os.path.join(directory, KEY_FILE))
        except BaseException:
            transport.destroy()  # the client never got it: nothing else would remove it
            raise

    @classmethod
    def attach_session(cls, *, session: str, options: ExecutorOptions,
                       on_output: OutputCallback | None = None,
                       ) -> tuple[Session, SessionRecord]:
        directory = session_dir(session)
        try:
            check_private_dir(directory)  # not a directory another user made in its place
        except FileNotFoundError:
            pass  # said below
        except PermissionError as exc:
            raise ConfigurationError(f"cannot attach to local session {session}: {exc}") from exc
        if not key_path(os.path.join(directory, "store"), record_key(session)).is_file():
            raise ConfigurationError(
                f"no local session {session} in {os.path.dirname(directory)}: it ended (its "
                "data is deleted when it ends) or ran with another STARBURST_LOCAL_DIR")
        transport = open_transport(f"local:{directory}?max_receives="
                                   f"{options.settings.max_receives}")
        try:
            record = SessionRecord.from_bytes(transport.store.get(record_key(session)))
        except KeyError:
            raise ConfigurationError(f"session {session} has no record to attach to") from None
        transport = open_transport(record.transport)
        key = _read_key(directory, session)
        spec = WorkerSpec(env={"STARBURST_TRANSPORT": transport.spec,
                               "STARBURST_SESSION": session},
                          cpu=options.cpu, memory_mib=options.memory_mib, key=key)
        backend = cls(on_output)
        backend._adopt(os.path.join(_transport_dir(spec), "workers"))
        return Session(backend=backend, transport=transport, spec=spec,
                       pacing=LaunchPacing.unlimited(), workers=record.workers,
                       key=key, key_ref=os.path.join(directory, KEY_FILE)), record

    def _adopt(self, directory: str) -> None:
        """Take over the session's workers whose lock is still held; note the others."""
        try:
            names = sorted(n for n in os.listdir(directory) if n.endswith(".lock"))
        except FileNotFoundError:
            return
        for name in names:
            path = os.path.join(directory, name)
            worker = name[:-len(".lock")]
            pid = _read_pid(path)
            if pid is not None and _lock_held(path):
                self._adopted[worker] = (pid, path)
            else:
                self._exits_at_attach.append(WorkerExit(
                    worker, reason="it ended before this client attached"))

    def adopted(self) -> tuple[list[str], list[WorkerExit]]:
        return list(self._adopted), list(self._exits_at_attach)

    def launch(self, count: int, spec: WorkerSpec) -> list[str]:
        ids: list[str] = []
        directory = _transport_dir(spec)
        for _ in range(count):
            worker = f"local-{os.getpid()}-{next(_ids)}"
            env = {**os.environ, **spec.env, "STARBURST_WORKER_ID": worker,
                   "STARBURST_PARENT_PID": str(os.getpid()), "PYTHONUNBUFFERED": "1",
                   "PYTHONPATH": _client_path(), KEY_ENV: key_text(spec.key)}
            detached = spec.env.get("STARBURST_DETACHED") == "1"
            passed = () if detached else (self._watch_fd(),)
            if passed:
                env["STARBURST_PARENT_FD"] = str(passed[0])
            log_file = None
            lock_fd = None
            try:
                if detached:
                    # It outlives this client: its output goes to a file, not a pipe.
                    log_dir = os.path.join(directory, "logs")
                    make_dirs(log_dir, within=directory)
                    log_file = os.fdopen(open_private(os.path.join(log_dir, f"{worker}.log"),
                                                      os.O_WRONLY | os.O_APPEND), "ab")
                lock_dir = os.path.join(directory, "workers")
                make_dirs(lock_dir, within=directory)
                lock_fd = _lock_worker(os.path.join(lock_dir, f"{worker}.lock"))
                proc = subprocess.Popen(
                    [sys.executable, "-m", "starburst.worker"], env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file or subprocess.PIPE,
                    stderr=log_file or subprocess.PIPE,
                    start_new_session=True, pass_fds=(lock_fd, *passed))
                try:
                    _record_pid(lock_fd, proc.pid)
                except OSError as exc:
                    # The worker runs: it is kept and tracked all the same (its
                    # handle is never dropped); only an attach cannot adopt it.
                    log.warning("starburst: cannot record the pid of worker %s (%s): a "
                                "later attach will not adopt it", worker, exc)
            except OSError as exc:
                if ids:
                    break
                raise BackendError(f"cannot start a local worker process: {exc}") from exc
            finally:
                if log_file is not None:
                    log_file.close()
                if lock_fd is not None:
                    os.close(lock_fd)  # the worker's copy keeps the lock while it lives
            pumps = [threading.Thread(target=self._pump, args=(worker, name, stream),
                                      name=f"starburst-out-{worker}", daemon=True)
                     for name, stream in (("stdout", proc.stdout), ("stderr", proc.stderr))
                     if stream is not None]
            for pump in pumps:
                pump.start()
            with self._lock:
                self._procs[worker] = proc
                self._started[worker] = time.time()
                self._pumps[worker] = pumps
            ids.append(worker)
        return ids

    def _watch_fd(self) -> int:
        """The read end of the parent-watch pipe (made on first use)."""
        with self._lock:
            if self._watch is None:
                self._watch = os.pipe()
                self._watch_closer = weakref.finalize(self, _close_fds, self._watch)
            return self._watch[0]

    def _pump(self, worker: str, name: str, stream: IO[bytes] | None) -> None:
        if stream is None:
            return
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            if self._on_output is not None:
                self._on_output(worker, name, line)
            else:
                target = sys.stdout if name == "stdout" else sys.stderr
                print(line, file=target)
        stream.close()

    def poll(self) -> list[WorkerExit]:
        exits: list[WorkerExit] = []
        with self._lock:
            items = list(self._procs.items())
        for worker, proc in items:
            code = proc.poll()
            if code is None:
                continue
            for pump in self._pumps.pop(worker, []):
                pump.join(timeout=1.0)  # deliver the last lines before the exit
            with self._lock:
                self._procs.pop(worker, None)
                started = self._started.pop(worker, None)
            sig = None
            if code < 0:
                try:
                    sig = signal.Signals(-code).name
                except ValueError:
                    sig = f"signal {-code}"
            exits.append(WorkerExit(worker, exit_code=code if code >= 0 else 128 - code,
                                    signal=sig, started_at=started, stopped_at=time.time()))
        with self._lock:
            adopted = list(self._adopted.items())
        for worker, (_pid, path) in adopted:
            if not _lock_held(path):
                with self._lock:
                    self._adopted.pop(worker, None)
                exits.append(WorkerExit(
                    worker, reason="a worker of the previous client (its exit status is not "
                                   "known to this one)", stopped_at=time.time()))
        return exits

    def stop(self, workers: Sequence[str] | None = None) -> None:
        def chosen(worker: str) -> bool:
            return worker not in self._keep if workers is None else worker in workers

        with self._lock:
            targets = [(w, p) for w, p in self._procs.items() if chosen(w)]
            adopted = [entry for w, entry in self._adopted.items() if chosen(w)]
        for _, proc in targets:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + _TERM_GRACE
        try:
            for pid, path in adopted:
                if _lock_held(path):  # still that worker: its pid was not reused
                    _signal_group(pid, signal.SIGTERM)
        finally:
            for _, proc in targets:
                try:
                    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                # Whatever its tasks started (subprocesses, multiprocessing
                # pools) is in the worker's process group: stop it too. The
                # group id stays taken while a member lives, so this reaches
                # only those leftovers.
                _signal_group(proc.pid, signal.SIGKILL)
        for pid, path in adopted:
            while _lock_held(path) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _lock_held(path):
                _signal_group(pid, signal.SIGKILL)

    def keep_for_debugging(self, worker: str) -> str | None:
        with self._lock:
            if worker in self._adopted:
                self._keep.add(worker)
                return f"py-spy dump --pid {self._adopted[worker][0]}"
            proc = self._procs.get(worker)
            if proc is None or proc.poll() is not None:
                return None
            self._keep.add(worker)
        return f"py-spy dump --pid {proc.pid}"

    def pids(self) -> dict[str, int]:
        """Process id of each live worker (for status and fault-injection tests)."""
        with self._lock:
            own = {w: p.pid for w, p in self._procs.items() if p.poll() is None}
            adopted = dict(self._adopted)
        return {**own, **{w: pid for w, (pid, path) in adopted.items() if _lock_held(path)}}

    def detach(self) -> None:
        """Leave the workers running; a daemon thread reaps each one when it exits.

        Without it the ``Popen`` handles would be dropped with this object while
        their processes still run: a zombie each, and a ResourceWarning. Also
        the last step of :meth:`close`, for a worker kept for debugging.
        """
        with self._lock:
            _reap_running(self._procs)

    def close(self) -> None:
        self.stop()
        self.poll()
        if not self._keep and self._watch_closer is not None:
            self._watch_closer()  # a worker kept for debugging keeps the pipe open
        # A worker kept for debugging runs on past its client: its handle goes
        # to the reaper like a detached worker's, never dropped while it runs.
        self.detach()


def _reap_running(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    """Hand the worker handles in ``procs`` to a reaper thread and forget them."""
    handles = list(procs.values())
    procs.clear()
    if handles:
        threading.Thread(target=_reap, args=(handles,), name="starburst-reaper",
                         daemon=True).start()


def _close_fds(fds: tuple[int, ...]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _reap(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.wait()


def _record_pid(fd: int, pid: int) -> None:
    """Write a worker's pid into its lock file (what attach reads to signal it)."""
    os.write(fd, str(pid).encode())


def _read_pid(path: str) -> int | None:
    """The pid the client wrote into a worker's lock file, if it is readable."""
    try:
        with open(path, encoding="ascii") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None
