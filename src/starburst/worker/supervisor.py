"""The worker's supervisor: lease, heartbeat and timeouts, outside the task's process.

``python -m starburst.worker`` runs this on every backend. It runs no task
code: it starts one long-lived task process (:mod:`.child`, the worker
loop that pulls, runs and reports) and keeps what must not depend on the
task's interpreter::

    supervisor (this)                         task process (child)
      lease extensions, every heartbeat  <--  "lease" / "free" (one way)
      client heartbeat + parent watch         pulls a chunk, runs its tasks,
      task_timeout clock                 <--  "begin" / "one" (timed chunks)
      progress notices (rate-limited)    <--  "progress"
      SIGTERM: forwarded                 -->  stops, reports, hands back

Because they are separate processes, a task that holds the GIL in C code,
blocks signals or hangs cannot starve the heartbeat (the lease never
lapses under a running task) nor escape its timeout: past ``task_timeout +
timeout_grace`` (the child's own alarm comes first for ordinary Python
code) the supervisor kills the child, and a fresh one finishes the chunk
from the outcomes the old one reported (:class:`~.loop.Resume`); the same
happens when a child retires after ``max_tasks_per_child`` tasks. A child
that dies on its own (``os._exit``, a segfault, the OOM killer) takes the
supervisor down the same way, so the crash is reported as before.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from types import FrameType
from typing import Any

from ..exceptions import BackendError
from ..settings import Settings
from ..transport import Transport
from ..wire import messages as protocol
from ..wire.auth import KEY_ENV, key_text
from .loop import (
    PROGRESS_EVERY,
    STOP_MARGIN,
    Resume,
    _say,
    client_heartbeat_stale,
    lease_extension,
)

__all__ = ["PROGRESS_PERIOD", "Supervisor", "TaskChild", "die_like"]

# ``-c``, not ``-m starburst.worker.child``: the package imports that module
# already, and runpy warns about running a module found in sys.modules.
# The task process starts with the supervisor's import path (``STARBURST_SYS_PATH``,
# JSON): what a launcher added to it in process (the emulated ECS runner adds an
# image's site-packages with site.addsitedir) is not in the environment.
_ENTRY = ("import json, os, sys; p = os.environ.pop('STARBURST_SYS_PATH', ''); "
          "sys.path[:] = json.loads(p) if p else sys.path; "
          "from starburst.worker.child import main; sys.exit(main())")
# How often the supervisor reads what its child told it while a timed task
# runs (or a stop is under way): the resolution of task_timeout's
# enforcement from outside.
_TIMED_WAIT = 0.05
# Otherwise. It reads in batches, never woken per message: a child serving
# hundreds of small chunks a second must not pay a context switch per chunk
# on a busy machine. At ~100 bytes a message, a pipe's 64 KiB hold far more
# than this many seconds of them, so the child never blocks on a write.
_IDLE_WAIT = 0.1
# How long a task process gets to act on SIGTERM (report what finished and
# hand the rest back) before it is killed: a task holding the GIL never runs
# its handler.
_STOP_WAIT = 3.0
#: Least seconds between two ``progress`` notices of one worker: per-task
#: progress at one small message a second per busy worker, never one per
#: task (the child reports to the supervisor at the same pace).
PROGRESS_PERIOD = PROGRESS_EVERY


class TaskChild:
    """One task process and the two pipe ends the supervisor keeps."""

    def __init__(self, env: dict[str, str]) -> None:
        down_r, down_w = os.pipe()  # supervisor -> child
        up_r, up_w = os.pipe()  # child -> supervisor
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _ENTRY, str(down_r), str(up_w)],
                stdin=subprocess.DEVNULL, pass_fds=(down_r, up_w), env=env)
        except OSError:
            for fd in (down_r, down_w, up_r, up_w):
                os.close(fd)
            raise
        os.close(down_r)
        os.close(up_w)
        self._out = Connection(down_w, readable=False)
        self._in = Connection(up_r, writable=False)
        #: Set when the supervisor killed it on purpose (a timeout, a stuck stop).
        self.killed = False

    def send(self, message: Any) -> None:
        """Hand the child a request (a :class:`~.loop.Resume`)."""
        self._out.send(message)

    def receive(self, timeout: float) -> tuple[Any, ...] | None:
        """The child's next message, or None after ``timeout`` seconds.

        Raises:
            EOFError: the child exited (or closed its pipe).
        """
        if not self._in.poll(timeout):
            return None
        try:
            got = self._in.recv()
        except OSError as exc:
            raise EOFError(str(exc)) from exc
        if not isinstance(got, tuple):
            raise EOFError(f"the task process sent {type(got).__name__}, not a message")
        return got

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the child, if it still runs."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL the child and reap it."""
        self.killed = True
        self.signal(signal.SIGKILL)
        self.close()

    def close(self) -> int:
        """Close the pipes and reap the child; its return code (< 0: a signal)."""
        for conn in (self._out, self._in):
            with contextlib.suppress(OSError):
                conn.close()
        return self.proc.wait()


class _Chunk:
    """What the supervisor knows of the chunk its child holds."""

    def __init__(self, receipt: str, chunk: int, attempt: str, body: bytes,
                 received: float = 0.0) -> None:
        self.receipt, self.chunk, self.attempt, self.body = receipt, chunk, attempt, body
        #: When the child received the message (monotonic, one clock for both).
        self.received = received
        self.frames: list[bytes] = []  # one-task frames of finished tasks
        self.timed_out: list[int] = []
        self.current: tuple[int, float] | None = None
        self.timeout: float | None = None
        self.done = 0

    def resume(self, *, stop: bool = False) -> Resume:
        return Resume(self.body, self.receipt, self.attempt, list(self.frames),
                      list(self.timed_out), stop=stop, received=self.received)


class Supervisor:
    """Runs a worker: one task process at a time, watched from outside."""

    def __init__(self, transport: Transport, *, session: str, key: bytes,
                 worker_id: str | None = None, settings: Settings | None = None,
                 detached: bool = False) -> None:
        self.transport = transport
        self.session = session
        self.key = key
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.settings = settings or Settings()
        self.detached = detached
        self._lock = threading.Lock()
        self._chunk: _Chunk | None = None
        self._child: TaskChild | None = None
        self._stopping = False
        self._stop_at = 0.0
        parent = os.environ.get("STARBURST_PARENT_PID")
        self._parent = int(parent) if parent and parent.isdigit() else None
        watch = os.environ.get("STARBURST_PARENT_FD", "")
        self._parent_fd = int(watch) if watch.isdigit() else None
        stop_timeout = os.environ.get("STARBURST_STOP_TIMEOUT", "")
        try:
            drain = max(0.0, float(stop_timeout) - STOP_MARGIN) if stop_timeout else 0.0
        except ValueError:
            drain = 0.0
        #: How long a stopping child may take before it is killed (its drain window
        #: on Fargate Spot, then the time to report).
        self.stop_wait = drain + _STOP_WAIT

    def _log(self, text: str) -> None:
        _say(f"[starburst worker {self.worker_id}] {text}")

    def _env(self) -> dict[str, str]:
        env = {**os.environ, "STARBURST_WORKER_ID": self.worker_id,
               "STARBURST_SYS_PATH": json.dumps(sys.path), KEY_ENV: key_text(self.key)}
        env.pop("STARBURST_PARENT_FD", None)  # the supervisor watches the client
        if self.detached:
            env["STARBURST_DETACHED"] = "1"
        return env

    def _spawn(self, resume: Resume | None = None) -> TaskChild:
        try:
            child = TaskChild(self._env())
        except OSError as exc:
            raise BackendError(f"cannot start the worker's task process: {exc}") from exc
        if resume is not None:
            child.send(resume)
        self._child = child
        return child

    # -- signals ------------------------------------------------------------
    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        if self._stopping:
            return  # forwarded once; the child's drain ends on its own clock
        self._stopping = True
        self._stop_at = time.monotonic()
        child = self._child
        if child is not None:
            child.signal(signal.SIGTERM)  # it stops, reports what finished, exits

    # -- main loop ----------------------------------------------------------
    def run(self) -> int:
        """Serve until the task process ends its service; return the exit code."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_term)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        threading.Thread(target=self._heartbeat, name="starburst-heartbeat",
                         daemon=True).start()
        if self._parent_fd is not None and not self.detached:
            threading.Thread(target=self._watch_parent, args=(self._parent_fd,),
                             name="starburst-parent-watch", daemon=True).start()
        child = self._spawn()
        resume: Resume | None = None
        try:
            while True:
                if resume is not None:
                    child, resume = self._spawn(resume), None
                resume, code = self._watch(child)
                if resume is None and code is not None:
                    return code
                if resume is None:
                    if self._stopping:
                        return 0  # no fresh child for a worker that is leaving
                    child = self._spawn()  # retired after max_tasks_per_child
        finally:
            if self._child is not None:
                self._child.close()

    def _watch(self, child: TaskChild) -> tuple[Resume | None, int | None]:
        """Follow one child until it exits; what comes next.

        Returns ``(resume, None)`` to finish a chunk in a fresh child,
        ``(None, None)`` for a fresh child after a retirement, ``(None, code)``
        to exit with the child's code.
        """
        retired = False
        pending = False
        while True:
            with self._lock:
                chunk = self._chunk
            timed = chunk is not None and chunk.current is not None and chunk.timeout is not None
            if not pending:
                time.sleep(_TIMED_WAIT if timed or self._stopping else _IDLE_WAIT)
            try:
                got = child.receive(0)
                pending = got is not None
            except EOFError:
                code = child.close()
                self._child = None
                with self._lock:
                    chunk = self._chunk
                if retired and chunk is not None:
                    return chunk.resume(), None
                if retired:
                    return None, None
                if chunk is None and code < 0 and self._stopping:
                    return None, 0  # SIGTERM reached it before its handler was set
                if chunk is not None and code != 0:
                    self._log(f"the task process ended ({_describe(code)}) while running "
                              f"chunk {chunk.chunk}; the worker ends the same way")
                    die_like(code)
                return None, code
            now = time.monotonic()
            if got is None:
                if chunk is None:
                    continue
                if (timed and chunk.current is not None and chunk.timeout is not None
                        and now - chunk.current[1] > chunk.timeout
                        + self.settings.timeout_grace):
                    tid = chunk.current[0]
                    self._log(f"task {tid} ran past task_timeout={chunk.timeout:g}s and "
                              "ignored its alarm: killing its process; the rest of the "
                              "chunk goes on in a fresh one")
                    child.kill()
                    self._child = None
                    chunk.timed_out.append(tid)
                    chunk.current = None
                    return chunk.resume(stop=self._stopping), None
                if self._stopping and now - self._stop_at > self.stop_wait:
                    self._log("the task process did not stop on SIGTERM: killing it; "
                              "what finished is reported, the rest handed back")
                    child.kill()
                    self._child = None
                    return chunk.resume(stop=True), None
                continue
            kind = got[0]
            if kind == "lease":
                new = _Chunk(str(got[1]), int(got[2]), str(got[3]), b"", float(got[5]))
                new.timeout = None if got[4] is None else float(got[4])
                with self._lock:
                    self._chunk = new
            elif chunk is None:
                if kind == "exit" and got[1] == "retire":
                    retired = True
            elif kind == "body":
                chunk.body = bytes(got[1])
            elif kind == "begin":
                chunk.current = (int(got[1]), float(got[2]))
            elif kind == "one":
                chunk.frames.append(bytes(got[2]))
                chunk.current = None
                chunk.done = len(chunk.frames) + len(chunk.timed_out)
            elif kind == "progress":
                chunk.done = max(chunk.done, len(chunk.frames) + len(chunk.timed_out),
                                 int(got[1]))
            elif kind == "free":
                with self._lock:
                    self._chunk = None
            elif kind == "exit" and got[1] == "retire":
                retired = True

    # -- outside watches --------------------------------------------------------
    def _watch_parent(self, fd: int) -> None:
        """Block on the parent-watch pipe; at EOF (the client died) stop everything."""
        wait_for_eof(fd)
        self._log("the client process is gone, exiting")
        _leave_with_group()

    def _client_gone(self) -> bool:
        return client_heartbeat_stale(self.transport.store, self.session,
                                      self.settings.client_stale)

    def _heartbeat(self) -> None:
        """Extend the running chunk's lease, watch the client, report progress."""
        period = min(self.settings.heartbeat, 1.0)
        last_extend = last_check = last_told = time.monotonic()
        told: tuple[int, int] = (-1, 0)
        while True:
            time.sleep(period)
            now = time.monotonic()
            if (not self.detached and self._parent is not None
                    and os.getppid() != self._parent):
                self._log("the client process is gone, exiting")
                _leave_with_group()
            with self._lock:
                chunk = self._chunk
            if chunk is None:
                last_extend = now
                continue
            if not self.detached and now - last_check >= self.settings.client_heartbeat:
                last_check = now
                try:
                    gone = self._client_gone()
                except Exception as exc:
                    self._log(f"client heartbeat check failed: {exc}")
                    gone = False
                if gone:
                    self._log("client heartbeat is stale while a chunk runs: exiting")
                    _leave_with_group()
            if now - last_extend >= self.settings.heartbeat:
                last_extend = now
                # Never past max_lease (SQS refuses it); the child hands the
                # chunk back before then.
                extend = lease_extension(self.settings, chunk.received, now)
                try:
                    if extend > 0:
                        self.transport.tasks.set_visibility(chunk.receipt, extend)
                except Exception as exc:
                    self._log(f"lease extension failed: {exc}")
            if (chunk.done and (chunk.chunk, chunk.done) != told
                    and now - last_told >= PROGRESS_PERIOD):
                last_told = now
                told = (chunk.chunk, chunk.done)
                try:
                    self.transport.results.send([protocol.encode(protocol.Notice(
                        kind="progress", session=self.session, chunk=chunk.chunk,
                        worker=self.worker_id, attempt=chunk.attempt,
                        info={"done": chunk.done}), self.key)])
                except Exception as exc:  # best effort: the result is what counts
                    self._log(f"progress notice failed: {exc}")


def _leave_with_group() -> None:
    """Exit now, taking along every process the tasks started.

    A local worker leads its own process group (the backend starts it in a
    new session), so the group holds exactly it and its tasks' processes:
    SIGKILL to the group stops them all. Elsewhere (a container's init, a
    test running the worker in its own process) only this process exits.
    """
    if os.getpgid(0) == os.getpid():
        os.killpg(0, signal.SIGKILL)
    os._exit(0)


def wait_for_eof(fd: int) -> None:
    """Block until the pipe ``fd`` reaches end-of-file (its writer, the client, is gone)."""
    while True:
        try:
            if not os.read(fd, 1):
                return
        except InterruptedError:
            continue
        except OSError:
            return


def _describe(code: int) -> str:
    """``exit code 3`` or ``signal SIGSEGV``: how a process ended, in words."""
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"signal {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"


def die_like(code: int) -> None:
    """End this process the way the task process ended: same signal, same code.

    A task that calls ``os._exit(3)``, segfaults or is OOM-killed took its
    worker down before the supervisor existed; the client's crash reports
    (exit code, signal, no OOM claim without the container's word) rest on
    that, and the unacknowledged chunk is redelivered as before.
    """
    if code < 0:
        sig = -code
        with contextlib.suppress(OSError, ValueError):
            signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
        os.kill(os.getpid(), sig)
    os._exit(code if code > 0 else 1)
