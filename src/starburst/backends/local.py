"""The local backend: workers are processes on this machine.

They run ``python -m starburst.worker`` with the current interpreter:
the same entrypoint and protocol a Fargate task runs. Their output is
read through pipes and handed to the client line by line, so it shows
live and labelled without tearing the progress bar. Workers start in
their own session so a Ctrl-C in the terminal reaches only the client,
which then stops them.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING

from ..exceptions import BackendError, ConfigurationError
from ..scheduler import LaunchPacing
from ..session import SessionRecord, record_key
from ..transport import open_transport
from ..transport.local import LocalTransport
from .base import ComputeBackend, OutputCallback, Session, WorkerExit, WorkerSpec

if TYPE_CHECKING:
    from ..options import ExecutorOptions

__all__ = ["LocalBackend"]

# How long stop() waits after SIGTERM (workers release their chunk and
# exit within a poll) before it sends SIGKILL.
_TERM_GRACE = 5.0
_ids = itertools.count(1)


def _session_dir(session: str) -> str:
    """Where a local session keeps its store and queues."""
    root = os.environ.get("STARBURST_LOCAL_DIR") or tempfile.gettempdir()
    return os.path.join(root, f"starburst-{session}")


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

    @classmethod
    def open_session(cls, *, session: str, options: ExecutorOptions,
                     on_output: OutputCallback | None = None) -> Session:
        if options.extra:
            raise ConfigurationError(
                f"the local backend takes no option(s) {', '.join(sorted(options.extra))}; "
                "they apply to backend='fargate'")
        directory = _session_dir(session)
        transport = LocalTransport(directory, max_receives=options.settings.max_receives)
        spec = WorkerSpec(env={"STARBURST_TRANSPORT": transport.spec,
                               "STARBURST_SESSION": session},
                          cpu=options.cpu, memory_mib=options.memory_mib)
        return Session(backend=cls(on_output), transport=transport, spec=spec,
                       pacing=LaunchPacing.unlimited(),
                       workers=options.default_local_workers())

    @classmethod
    def attach_session(cls, *, session: str, options: ExecutorOptions,
                       on_output: OutputCallback | None = None,
                       ) -> tuple[Session, SessionRecord]:
        directory = _session_dir(session)
        if not os.path.isfile(os.path.join(directory, "store", record_key(session))):
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
        spec = WorkerSpec(env={"STARBURST_TRANSPORT": transport.spec,
                               "STARBURST_SESSION": session},
                          cpu=options.cpu, memory_mib=options.memory_mib)
        return Session(backend=cls(on_output), transport=transport, spec=spec,
                       pacing=LaunchPacing.unlimited(), workers=record.workers), record

    def launch(self, count: int, spec: WorkerSpec) -> list[str]:
        ids: list[str] = []
        for _ in range(count):
            worker = f"local-{os.getpid()}-{next(_ids)}"
            env = {**os.environ, **spec.env, "STARBURST_WORKER_ID": worker,
                   "STARBURST_PARENT_PID": str(os.getpid()), "PYTHONUNBUFFERED": "1",
                   "PYTHONPATH": _client_path()}
            detached = spec.env.get("STARBURST_DETACHED") == "1"
            log_file = None
            if detached:
                # It outlives this client: its output goes to a file, not a pipe.
                log_dir = os.path.join(spec.env["STARBURST_TRANSPORT"].partition(":")[2]
                                       .partition("?")[0], "logs")
                os.makedirs(log_dir, exist_ok=True)
                log_file = open(os.path.join(log_dir, f"{worker}.log"), "ab")  # noqa: SIM115
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "starburst.worker"], env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file or subprocess.PIPE,
                    stderr=log_file or subprocess.PIPE,
                    start_new_session=True)
            except OSError as exc:
                if ids:
                    break
                raise BackendError(f"cannot start a local worker process: {exc}") from exc
            finally:
                if log_file is not None:
                    log_file.close()
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
        return exits

    def stop(self, workers: Sequence[str] | None = None) -> None:
        with self._lock:
            targets = [(w, p) for w, p in self._procs.items()
                       if (workers is None and w not in self._keep)
                       or (workers is not None and w in workers)]
        for _, proc in targets:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + _TERM_GRACE
        for _, proc in targets:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def keep_for_debugging(self, worker: str) -> str | None:
        with self._lock:
            proc = self._procs.get(worker)
            if proc is None or proc.poll() is not None:
                return None
            self._keep.add(worker)
        return f"py-spy dump --pid {proc.pid}"

    def pids(self) -> dict[str, int]:
        """Process id of each live worker (for status and fault-injection tests)."""
        with self._lock:
            return {w: p.pid for w, p in self._procs.items() if p.poll() is None}

    def detach(self) -> None:
        """Leave the workers running; a daemon thread reaps each one when it exits.

        Without it the ``Popen`` handles would be dropped with this object while
        their processes still run: a zombie each, and a ResourceWarning.
        """
        with self._lock:
            procs = list(self._procs.values())
            self._procs.clear()
        if procs:
            threading.Thread(target=_reap, args=(procs,), name="starburst-reaper",
                             daemon=True).start()

    def close(self) -> None:
        self.stop()
        self.poll()


def _reap(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.wait()
