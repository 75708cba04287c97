"""The worker loop: pull a chunk, run it, push the result, acknowledge.

One piece of code for every backend: a local process and a Fargate task
run exactly this. Per chunk::

    tasks queue --receive (lease)--> worker --"start" notice--> results queue
    store/inline payload --verify checksum, unpickle--> run tasks
    result --inline, or store (attempt key + conditional commit)--> "done" notice
    delete the task message (ack)

``python -m starburst.worker`` runs this loop as the task process of a
supervisor (:mod:`.supervisor`, given ``link``), its only mode: the
supervisor extends the lease, watches the client and kills a task stuck
past its timeout, from outside this process; the loop tells it what it
holds and runs (see :mod:`.child`), and its own heartbeat thread only ends
Spot drains and lease hand-backs and reports progress. The worker exits
after ``idle_timeout`` without work. On SIGTERM it stops taking work,
releases its chunk (not an attempt) and exits.

When its container says how long ECS waits between SIGTERM and SIGKILL
(``STARBURST_STOP_TIMEOUT``: Fargate Spot workers, 120 s), SIGTERM does not
cut the running task short: the worker lets it run for up to that window
less :data:`STOP_MARGIN`, then reports the tasks that finished and hands the
rest back as ``unrun`` (the client queues them again, not as an attempt).
A task still running at the deadline is interrupted and handed back too;
a chunk with no finished task is released as before. Without that
variable (local workers, On-Demand tasks, which starburst itself stops
when it retires or aborts) SIGTERM interrupts the task at once.

A chunk's lease cannot outlive ``max_lease`` (SQS keeps a message invisible
for at most 12 hours since its receive, and refuses to extend it further):
extensions stop there, and before each task the worker checks that the
longest task of the chunk so far would still end ``heartbeat`` seconds
before it. If not, it hands the rest of the chunk back under a new message
of its own (:meth:`Worker._hand_back`: same chunk, naming the stored
outcomes so far; not an attempt), so no task runs twice and nothing waits
for a client to queue the rest (a detached session has none). A single task
still running at that point cannot be handed back: it is stopped with a
``TaskTimeoutError`` naming the limit (never silently run again elsewhere).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from ..exceptions import (
    InitializerError,
    ProtocolError,
    SerializationError,
    TaskError,
)
from ..settings import Settings
from ..transport import Transport
from ..transport.base import Message
from ..wire import messages as protocol
from ..wire.keys import (
    cancel_key,
    client_heartbeat_key,
    handed_key,
    result_commit_key,
    result_key,
    shared_key,
)
from ..wire.serialization import (
    Codec,
    codec_for,
    dumps,
    dumps_parts,
    frame_checksum,
    loads,
    loads_parts,
    shared_digest_matches,
    verify_checksum,
)
from .runner import ChunkRun, HandBack, LeaseEnd, Outcome, Task, timeout_error

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

__all__ = ["EXIT_STUCK", "UNRUN_LEASE", "UNRUN_STOPPED", "UNRUN_STUCK", "Worker",
           "lease_extension"]

# SQS long polls for at most 20 s; the local queue accepts any wait.
_MAX_WAIT = 20.0
# A queue wait longer than this (an SQS long poll) is cut short by SIGTERM.
_LONG_WAIT = 1.0
# Exit code of a worker that gave up on a task stuck in native code. Only
# workers from before the supervisor did (it now kills such a task's process
# and goes on); the client still tells this exit from a crash.
EXIT_STUCK = 70
#: Why a ``done`` notice hands tasks back ``unrun`` (its info's ``unrun``
#: entry): the worker was stopped (SIGTERM: a Spot interruption or a
#: retirement), or it gave up on a task stuck past its timeout (only workers
#: from before the supervisor did). The client re-queues them either way; an
#: attached client, which cannot, says which.
UNRUN_STOPPED, UNRUN_STUCK = "stopped", "stuck"
#: Why tasks are handed back when the chunk's lease would pass ``max_lease``
#: (in the ``release`` notice of a hand-back: its worker queues them itself).
UNRUN_LEASE = "lease"
#: Seconds of the SIGTERM-to-SIGKILL window kept for reporting and releasing
#: (a store put and two queue calls, with retries) after the running task.
STOP_MARGIN = 15.0
#: How often the heartbeat thread looks at a running task while stopping.
_DRAIN_CHECK = 0.1
#: Least seconds between two ``progress`` notices of a worker: per-task
#: progress without a message per task. (A task process tells its supervisor
#: from its heartbeat thread, once a heartbeat period of at most 1 s.)
PROGRESS_EVERY = 1.0


def lease_extension(settings: Settings, received: float, now: float) -> float:
    """Seconds to extend a lease taken at ``received`` by, at ``now`` (monotonic).

    ``settings.lease``, but never past ``received + settings.max_lease``: SQS
    refuses an extension beyond its 12-hour limit, and a refused one would
    only be logged while the lease lapses under a running task. 0: extend
    no more (the chunk is handed back or reported before then).
    """
    return max(0.0, min(settings.lease, received + settings.max_lease - now))


def hand_by(settings: Settings, received: float) -> float:
    """When a chunk leased at ``received`` must be handed back: ``max_lease``
    after it, less a heartbeat left for reporting and acknowledging (at most
    half of ``max_lease``, so a chunk is never handed back before it starts)."""
    return received + settings.max_lease - min(settings.heartbeat, settings.max_lease / 2)


class _Stop(BaseException):
    """Raised into the running task when SIGTERM asks the worker to leave."""


class _Retire(BaseException):
    """Raised between two tasks when the task process used up ``max_tasks_per_child``."""


@dataclass
class Resume:
    """A chunk a killed (or retired) task process left unfinished, for its successor.

    Attributes:
        body: the task message as received.
        receipt: its lease receipt (the supervisor kept the lease alive).
        attempt: the attempt token (one attempt, whichever process finishes it).
        frames: one-task result frames of the tasks that finished.
        timed_out: ids of tasks killed past their timeout.
        stop: report what finished and hand the rest back (a stop request).
        received: when the message was received (monotonic): its lease ends
            ``max_lease`` after it, whichever process runs the chunk.
    """

    body: bytes
    receipt: str
    attempt: str
    frames: list[bytes]
    timed_out: list[int]
    stop: bool = False
    received: float = 0.0


class Worker:
    """Serves chunks of one session as a supervisor's task process, until idle or stopped.

    ``link`` is the pair of pipes from and to the supervisor (:mod:`.child`
    opens them), which holds the lease and the heartbeat and watches the
    client: this process only pulls, runs and reports.
    """

    def __init__(self, transport: Transport, *, session: str, key: bytes,
                 link: tuple[Connection, Connection], worker_id: str | None = None,
                 settings: Settings | None = None, detached: bool = False) -> None:
        self.transport = transport
        self.session = session
        self.key = key
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.settings = settings or Settings()
        self.detached = detached
        #: Shared frames by digest, for the session; each chunk decodes its own
        #: objects from them (``_decoded``), so an argument a task modifies in
        #: place is never seen by a later chunk (as with ProcessPoolExecutor).
        self._shared: dict[str, bytes] = {}
        self._decoded: dict[str, Any] = {}
        self._stopping = threading.Event()
        self._in_task = False
        self._lock = threading.Lock()
        self._lease: Message | None = None
        self._run: ChunkRun | None = None
        self._chunk = -1
        self.chunks_done = 0
        deadline = os.environ.get("STARBURST_SESSION_DEADLINE", "")
        self.deadline = float(deadline) if deadline.replace(".", "", 1).isdigit() else 0.0
        self._link = link
        self._inits: set[str] = set()
        self._init_error: BaseException | None = None
        #: What a by-value initializer set in its globals: (module name, values).
        self._init_globals: tuple[Any, dict[str, Any]] | None = None
        self.max_tasks: int | None = None
        self.tasks_run = 0
        self._tell_lock = threading.Lock()
        # Debug mode: after the first chunk with a failed task, stay alive this
        # long (for ECS Exec / a debugger), taking no work, then exit.
        keepalive = os.environ.get("STARBURST_DEBUG_KEEPALIVE", "")
        try:
            self.debug_keepalive = max(0.0, float(keepalive)) if keepalive else 0.0
        except ValueError:
            self.debug_keepalive = 0.0
        self._kept_alive = False
        self._keeping_alive = False
        stop_timeout = os.environ.get("STARBURST_STOP_TIMEOUT", "")
        try:
            #: Seconds a running task may go on after SIGTERM (0: interrupt it at once).
            self.drain = max(0.0, float(stop_timeout) - STOP_MARGIN) if stop_timeout else 0.0
        except ValueError:
            self.drain = 0.0
        #: In a queue wait long enough that SIGTERM should cut it short.
        self._long_wait = False
        self._drain_until: float | None = None
        self._drain_done = 0
        self._drain_kicked = False
        #: When the held chunk's message was received (monotonic).
        self._received = 0.0
        self._unrun = UNRUN_STOPPED
        #: The chunk run whose running task was told to stop at max_lease.
        self._lease_kicked: ChunkRun | None = None

    # -- signals --------------------------------------------------------
    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        if self._drain_until is not None and not self._drain_kicked:
            # A task process may get SIGTERM twice, from its supervisor and
            # from a stop that signals the whole process group; during the
            # drain only its own kick (below) ends the running task.
            return
        first = not self._stopping.is_set()
        self._stopping.set()
        # Interrupt a running task, or an idle SQS long poll (up to 20 s that
        # would keep a stopped task billing and its client waiting for the
        # stop). Short local waits end on their own. A message that arrives
        # just as the poll is cut off stays invisible until its lease ends,
        # then goes to another worker: late, never lost.
        if self._long_wait:
            self._long_wait = False
            raise _Stop
        if not self._in_task:
            return
        run = self._run
        if first and self.drain > 0 and run is not None:
            # Let the running task finish; the heartbeat thread signals again
            # once it has (or at the deadline) and the rest is handed back.
            self._drain_done = len(run.outcomes)
            self._drain_until = time.monotonic() + self.drain
            self._log(f"SIGTERM: letting task {run.current} finish (up to {self.drain:g} s), "
                      "then handing back the rest of the chunk")
            return
        raise _Stop

    def _on_lease_end(self, signum: int, frame: FrameType | None) -> None:
        """The heartbeat thread says the running task reached ``max_lease``."""
        if self._in_task and self._run is not None and self._run.current is not None:
            raise LeaseEnd

    def _log(self, text: str) -> None:
        _say(f"[starburst worker {self.worker_id}] {text}")

    # -- main loop ------------------------------------------------------
    def run(self) -> int:
        """Serve until idle or stopped; return the process exit code."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_term)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGUSR1, self._on_lease_end)
        beat = threading.Thread(target=self._heartbeat, name="starburst-heartbeat", daemon=True)
        beat.start()
        self._resume_if_asked()
        self._log(f"serving session {self.session}")
        idle_since = time.monotonic()
        next_client_check = 0.0
        while not self._stopping.is_set():
            now = time.monotonic()
            if not self.detached and now >= next_client_check:
                next_client_check = now + self.settings.client_heartbeat
                if self._client_gone():
                    self._log("client heartbeat is stale: the client is gone, exiting")
                    return 0
            if self.deadline and time.time() > self.deadline:
                self._log("the session reached its session_timeout, exiting")
                return 0
            idle_left = self.settings.idle_timeout - (now - idle_since)
            if idle_left <= 0:
                self._log(f"idle for {self.settings.idle_timeout:g}s, exiting")
                return 0
            wait = min(_MAX_WAIT, idle_left, self.settings.client_heartbeat)
            self._long_wait = wait > _LONG_WAIT
            try:
                got = self.transport.tasks.receive(
                    max_messages=1, wait_seconds=wait, visibility=self.settings.lease)
            except _Stop:
                break
            finally:
                self._long_wait = False
            if got and self._stopping.is_set():
                # Asked to stop while waiting: hand the message straight back.
                self.transport.tasks.set_visibility(got[0].receipt, 0)
                break
            if got:
                self._handle(got[0])
                idle_since = time.monotonic()
                if self.max_tasks is not None and self.tasks_run >= self.max_tasks:
                    self._tell(("exit", "retire"))  # max_tasks_per_child: a fresh one follows
                    return 0
                if self._keeping_alive:
                    self._keep_alive()
                    return 0
        self._log("stopping on request")
        return 0

    def _keep_alive(self) -> None:
        """Debug mode: stay up ``debug_keepalive`` seconds (SIGTERM still ends it)."""
        until = time.monotonic() + self.debug_keepalive
        self._log(f"debug: a task failed; staying alive for {self.debug_keepalive:g} s "
                  f"(pid {os.getpid()}) so it can be inspected; SIGTERM ends it")
        while not self._stopping.is_set():
            left = until - time.monotonic()
            if left <= 0:
                self._log("debug: keep-alive over, exiting")
                return
            time.sleep(min(0.2, left))
        self._log("debug: stopping on request")

    def _client_gone(self) -> bool:
        return client_heartbeat_stale(self.transport.store, self.session,
                                      self.settings.client_stale)

    # -- one chunk ------------------------------------------------------
    def _notify(self, kind: protocol.NoticeKind, chunk: int, **kw: Any) -> None:
        notice = protocol.Notice(kind=kind, session=self.session, chunk=chunk,
                                 worker=self.worker_id, **kw)
        self.transport.results.send([protocol.encode(notice, self.key)])

    def _move_aside(self, msg: Message, error: Exception) -> None:
        self._log(f"malformed task message moved to the dead-letter queue: {error}")
        self.transport.dead.send([msg.body])
        self.transport.tasks.delete([msg.receipt])
        self._notify("bad", -1, info={"error": str(error)[:500]})

    def _handle(self, msg: Message, resume: Resume | None = None) -> None:
        received = resume.received if resume is not None else time.monotonic()
        try:
            task = protocol.decode(msg.body, self.key)
            if not isinstance(task, protocol.TaskMessage):
                raise ProtocolError(f"expected a task message, got {task.kind!r}")
            if task.session != self.session:
                raise ProtocolError(f"message of session {task.session!r}, not {self.session!r}")
        except ProtocolError as exc:
            self._move_aside(msg, exc)
            return
        if resume is None and task.cancellable and self.transport.store.exists(
                cancel_key(self.session, task.chunk)):
            self._log(f"chunk {task.chunk} was cancelled before it started; skipping it")
            self.transport.tasks.delete([msg.receipt])
            return
        attempt = resume.attempt if resume is not None else uuid.uuid4().hex[:16]
        with self._lock:
            self._lease, self._chunk = msg, task.chunk
            self._received = received
            self._unrun = UNRUN_STOPPED
        if resume is None:
            self._tell(("lease", msg.receipt, task.chunk, attempt, task.timeout, received))
            self._notify("start", task.chunk, attempt=attempt, receipt=msg.receipt,
                         info={protocol.HANDED_BACK: True} if task.done_key else {})
        started = time.time()
        try:
            outcomes = self._execute(task, resume)
        except _Stop:
            self._release(task.chunk)
            self._tell(("free", task.chunk))
            return
        if self._unrun == UNRUN_LEASE and any(o[1] == "unrun" for o in outcomes):
            self._hand_back(task, outcomes, attempt, msg)
        else:
            self._report(task, outcomes, attempt, msg, started, self._unrun)
        self._tell(("free", task.chunk))

    def _tell(self, message: tuple[Any, ...]) -> None:
        """Tell the supervisor; one way, it never answers."""
        with self._tell_lock:  # the main and the heartbeat thread both tell
            self._link[1].send(message)

    def _resume_if_asked(self) -> None:
        """As a fresh task process: finish the chunk the last one left, if asked to;
        then watch the supervisor (this process ends with it)."""
        inbox = self._link[0]
        resume = inbox.recv() if inbox.poll(0) else None
        threading.Thread(target=self._watch_supervisor, args=(inbox,),
                         name="starburst-supervisor-watch", daemon=True).start()
        if isinstance(resume, Resume):
            if resume.stop:
                self._stopping.set()  # finish that chunk's report, then leave
            self._handle(Message(body=resume.body, receipt=resume.receipt, receives=0), resume)

    def _watch_supervisor(self, inbox: Connection) -> None:
        """Exit when the supervisor is gone (EOF on its pipe): without it nobody
        keeps the lease, so the chunk goes to another worker anyway."""
        with contextlib.suppress(EOFError, OSError):
            while True:
                inbox.recv_bytes()
        os._exit(0)

    def _load_chunk(self, task: protocol.TaskMessage) -> \
            tuple[list[Any], Any, Any, list[Outcome]] | list[Outcome]:
        """The tasks, seed and log level of a chunk and the outcomes of those that ran
        before it was handed back, or outcomes failing them all."""
        try:
            handed = self._handed_outcomes(task) if task.done_key else []
            body = task.body if not task.key else self._payload(task)
            if not verify_checksum(body, task.checksum, self.transport.spec):
                raise ProtocolError(
                    f"payload of chunk {task.chunk} fails its checksum "
                    f"({task.key or 'inline'}): it is corrupt or truncated; not running it")
            self._decoded = {}
            # The C loader first: most chunks reference no shared object, and a
            # persistent_load (the Python path) costs several microseconds a task.
            parts = loads_parts(body)
            if any(error is not None for _, error in parts):
                parts = loads_parts(body, loader_per_part=self._task_loader)
            header, error = parts[0]
            if error is not None:
                raise error
            payload = header
            try:
                fns = [self._load_shared(("sb", digest)) for digest in payload["fns"]]
                items = _chunk_items(payload, parts[1:], fns)
                seed, log_level = payload.get("seed"), payload.get("log_level")
                init = payload.get("init")
                limit = payload.get("max_tasks_per_child")
            except (TypeError, ValueError, IndexError, KeyError) as exc:
                raise ProtocolError(f"payload of chunk {task.chunk} is malformed: {exc}") from exc
            if len(items) != task.n:
                raise ProtocolError(
                    f"payload of chunk {task.chunk} holds {len(items)} tasks, header says {task.n}")
            if isinstance(limit, int) and limit > 0:
                self.max_tasks = limit
            if init:
                self._initialize(str(init))
            if self._init_globals is not None:
                _share_initializer_globals(fns, *self._init_globals)
        except (ProtocolError, SerializationError, KeyError) as exc:
            # What really failed, with its traceback (and the cause's: the
            # user's own KeyError raised while unpickling, say). A missing
            # store key was made a ProtocolError by _payload; any other
            # KeyError stays itself.
            tb = "".join(traceback.format_exception(exc))
            return [(i, "err", (exc, tb), "", None) for i in range(task.n)]
        if self._init_error is not None:
            return [(tid, "err", (self._init_error, ""), "", None) for tid, *_ in items]
        return items, seed, log_level, handed

    def _handed_outcomes(self, task: protocol.TaskMessage) -> list[Outcome]:
        """The outcomes of the tasks a handed-back chunk ran before (``done_key``)."""
        try:
            frame = self.transport.store.get(task.done_key)
        except KeyError:
            raise ProtocolError(f"the outcomes {task.done_key!r} of handed-back chunk "
                                f"{task.chunk} are missing from the store") from None
        if not verify_checksum(frame, task.done_checksum, self.transport.spec):
            raise ProtocolError(f"the outcomes {task.done_key!r} of handed-back chunk "
                                f"{task.chunk} fail their checksum: corrupt or truncated")
        outcomes: list[Outcome] = []
        for outcome, error in loads_parts(frame):
            if error is not None:  # a worker's own frame: cannot happen
                raise error
            if outcome[1] != "unrun":
                outcomes.append(tuple(outcome))
        return outcomes

    def _initialize(self, digest: str) -> None:
        """Run the session's initializer once in this process, before its first task."""
        if digest in self._inits:
            return
        self._inits.add(digest)
        initializer, initargs = self._load_shared(("sb", digest))
        namespace = getattr(initializer, "__globals__", None)
        before = dict(namespace) if _by_value(initializer) and namespace is not None else None
        try:
            initializer(*initargs)
            if before is not None and namespace is not None:
                self._init_globals = (namespace.get("__name__"),
                                      _set_by(initializer, namespace, before))
        except BaseException as exc:
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            exc.__traceback__ = None
            name = getattr(initializer, "__qualname__", repr(initializer))
            self._init_error = InitializerError(
                f"the initializer {name}() raised {type(exc).__name__}: {exc}; no task runs "
                "in this worker process. Fix the initializer (its traceback is this "
                "error's __cause__)", cause=exc, traceback=tb)
            self._log(f"the initializer {name}() raised {type(exc).__name__}: {exc}")

    def _execute(self, task: protocol.TaskMessage,
                 resume: Resume | None = None) -> list[Outcome]:
        loaded = self._load_chunk(task)
        if not isinstance(loaded, tuple):
            return loaded
        items, seed, log_level, handed = loaded
        order = {t[0]: i for i, t in enumerate(items)}
        pre: dict[int, Outcome] = {o[0]: o for o in handed}
        if resume is not None:
            for frame in resume.frames:
                for outcome, error in loads_parts(frame):
                    if error is not None:  # this worker's own frame: cannot happen
                        raise error
                    pre[outcome[0]] = tuple(outcome)
            for tid in resume.timed_out:
                pre[tid] = (tid, "timeout", timeout_error(tid, task.timeout), "", None)

        def ordered(outcomes: list[Outcome]) -> list[Outcome]:
            merged = {**pre, **{o[0]: o for o in outcomes}}
            return sorted(merged.values(), key=lambda o: order.get(o[0], -1))

        run = ChunkRun([t for t in items if t[0] not in pre], timeout=task.timeout,
                       capture=task.capture, seed=seed, log_level=log_level,
                       hand_by=hand_by(self.settings, self._received),
                       max_lease=self.settings.max_lease)
        stream = bool(task.timeout or self.drain or self.max_tasks)
        if stream and resume is None:
            # What a successor needs to finish the chunk, should this
            # process be killed (or retire) part-way through it.
            self._tell(("body", self._lease.body if self._lease else b""))
        if stream:  # else no per-task call at all: no-op tasks cost ~1 us each
            run.on_task = self._hook(run)
        self._run = run
        self._in_task = True
        try:
            if self._stopping.is_set() or (resume is not None and resume.stop):
                raise _Stop
            return ordered(run.run())
        except _Retire:
            self._in_task = False
            self._tell(("exit", "retire"))  # the supervisor finishes the chunk in a fresh one
            os._exit(0)
        except (_Stop, HandBack) as exc:
            self._in_task = False
            lease = isinstance(exc, HandBack)
            if not run.outcomes and len(pre) == len(handed):
                # Nothing finished under this lease: release the message as it
                # is (its next receive starts a fresh lease, so this is never a loop).
                raise _Stop from None
            done = {o[0] for o in run.outcomes} | set(pre)
            rest = [t[0] for t in items if t[0] not in done]
            if lease:
                self._unrun = UNRUN_LEASE
                self._log(f"chunk {task.chunk}: its lease nears max_lease="
                          f"{self.settings.max_lease:g}s (SQS's 12-hour limit); storing "
                          f"{len(done)} finished task(s) and handing back {len(rest)} under "
                          "a new message")
            else:
                self._log(f"chunk {task.chunk}: stopping; reporting {len(done)} finished "
                          f"task(s) and handing back {len(rest)}")
            return ordered([*run.outcomes, *((tid, "unrun", None, "", None) for tid in rest)])
        finally:
            self._in_task = False
            self._run = None

    def _hook(self, run: ChunkRun) -> Any:
        """What a task process tells its supervisor per task where a kill must
        not lose it (timed, drainable or retiring chunks): when a task begins,
        and its outcome. (Progress goes from the heartbeat thread.)"""
        send = self._tell

        def on_task(event: str, task_id: int, outcome: Outcome | None) -> None:
            in_task, self._in_task = self._in_task, False  # no _Stop mid-message
            try:
                if event == "begin":
                    send(("begin", task_id, time.monotonic()))
                    return
                assert outcome is not None
                self.tasks_run += 1
                send(("one", task_id, _encode([outcome])))
            finally:
                self._in_task = in_task
            if (self.max_tasks is not None and self.tasks_run >= self.max_tasks
                    and len(run.outcomes) < len(run.tasks)):
                raise _Retire

        return on_task

    def _payload(self, task: protocol.TaskMessage) -> bytes:
        """The stored payload of ``task``; only an absent store key is "missing"."""
        try:
            return self.transport.store.get(task.key)
        except KeyError as exc:
            if exc.args[:1] != (task.key,):
                raise  # not the store saying the key is absent: that error, as it is
            raise ProtocolError(
                f"payload {task.key!r} of chunk {task.chunk} is missing from the store (the "
                "session ended, or its data was deleted while the chunk was queued)") from None

    def _task_loader(self) -> Callable[[Any], Any]:
        """A ``persistent_load`` for one task's arguments: each shared object it
        references is decoded into a copy of its own (one copy per task, shared
        by that task's references), as each call unpickles its own arguments."""
        memo: dict[str, Any] = {}

        def load(pid: Any) -> Any:
            digest = self._shared_digest(pid)
            if digest not in memo:
                memo[digest] = loads(self._shared_frame(digest),
                                     persistent_load=self._load_shared)
            return memo[digest]

        return load

    @staticmethod
    def _shared_digest(pid: Any) -> str:
        if not (isinstance(pid, tuple) and len(pid) == 2 and pid[0] == "sb"):
            raise ProtocolError(f"unknown shared-object reference {pid!r}")
        return str(pid[1])

    def _load_shared(self, pid: Any) -> Any:
        """A shared object (a function, the initializer), decoded once per chunk."""
        digest = self._shared_digest(pid)
        if digest not in self._decoded:
            self._decoded[digest] = loads(self._shared_frame(digest),
                                          persistent_load=self._load_shared)
        return self._decoded[digest]

    def _shared_frame(self, digest: str) -> bytes:
        """The checked frame of a shared object, fetched once per worker."""
        if digest not in self._shared:
            key = shared_key(self.session, digest)
            try:
                frame = self.transport.store.get(key)
            except KeyError:
                raise ProtocolError(f"shared object {key} is missing from the store") from None
            if not shared_digest_matches(frame, digest, self.transport.spec):
                raise ProtocolError(f"shared object {key} fails its checksum: corrupt")
            self._shared[digest] = frame
        return self._shared[digest]

    def _encode(self, outcomes: list[Outcome]) -> bytes | memoryview:
        return _encode(outcomes, codec_for(self.transport.spec))

    def _report(self, task: protocol.TaskMessage, outcomes: list[Outcome], attempt: str,
                msg: Message, started: float, unrun: str = UNRUN_STOPPED) -> None:
        """Commit the result (first attempt wins), notify the client, acknowledge.

        The commit is the ``done`` notice itself, written with a conditional
        put to ``results/<chunk>/commit``: with the body inside when it is
        small, else pointing at the attempt's own key. It stays in the store
        until the session ends, so a client that attaches later finds every
        result even if another client consumed (and lost) the notice.
        ``unrun`` says why tasks handed back ``unrun`` were not run
        (:data:`UNRUN_STOPPED` or :data:`UNRUN_STUCK`); it travels in the
        notice's info only when there are such tasks.
        """
        frame = self._encode(outcomes)
        digest = frame_checksum(frame, self.transport.spec)
        info: dict[str, Any] = {"seconds": round(time.time() - started, 6)}
        if any(o[1] == "unrun" for o in outcomes):
            info["unrun"] = unrun
        small = len(frame) <= self.transport.inline_limit
        key = "" if small else result_key(self.session, task.chunk, attempt)
        notice = protocol.Notice(kind="done", session=self.session, chunk=task.chunk,
                                 worker=self.worker_id, attempt=attempt, key=key,
                                 checksum=digest, info=info, body=bytes(frame) if small else b"")
        encoded = protocol.encode(notice, self.key)
        if key:
            self.transport.store.put(key, frame)
        commit = result_commit_key(self.session, task.chunk)
        if self.transport.store.put_if_absent(commit, encoded):
            self.transport.results.send([encoded])
        elif (committed := self._valid_commit(commit, task.chunk)) is not None:
            # Another attempt committed first: it wins, this one is dropped.
            # Its worker may have died between the commit and its notice, so
            # the committed notice is sent on (the client drops a duplicate);
            # otherwise nobody would ever tell the client.
            self._log(f"chunk {task.chunk}: a result was already committed; dropping "
                      "this one and passing the committed one on")
            if key:
                self.transport.store.delete_prefix(key)
            self.transport.results.send([committed])
        else:
            # What sits there is not this chunk's result (forged, or another
            # chunk's copied here): this one replaces it, or the chunk would wait
            # for a result nobody sends.
            self._log(f"chunk {task.chunk}: the commit in the store is not this chunk's "
                      "result; replacing it")
            self.transport.store.put(commit, encoded)
            self.transport.results.send([encoded])
        self.transport.tasks.delete([msg.receipt])
        with self._lock:
            self._lease = None
        self.chunks_done += 1
        if (self.debug_keepalive > 0 and not self._kept_alive
                and any(o[1] == "err" for o in outcomes)):
            self._kept_alive = self._keeping_alive = True

    def _valid_commit(self, commit: str, chunk: int) -> bytes | None:
        """The stored commit of ``chunk`` when it is one: tagged with the session key, a
        ``done`` notice of this session and chunk; else None."""
        try:
            body = self.transport.store.get(commit)
            notice = protocol.decode(body, self.key)
        except (KeyError, ProtocolError):
            return None
        valid = (isinstance(notice, protocol.Notice) and notice.kind == "done"
                 and notice.session == self.session and notice.chunk == chunk)
        return body if valid else None

    def _hand_back(self, task: protocol.TaskMessage, outcomes: list[Outcome], attempt: str,
                   msg: Message) -> None:
        """Hand the rest of a chunk back under a new message, before ``max_lease``.

        The outcomes so far (all ``n``, those not run ``unrun``) go to the store,
        and the new message is the same chunk (id, payload) naming them: the
        worker that takes it runs only the rest and commits the whole result.
        So no client has to queue the rest again, and one that attaches later
        knows the chunk from its manifest. The new message is sent before the
        old one is deleted: a worker that dies in between leaves the chunk
        queued (twice at worst; the first commit wins), never lost. The
        ``release`` comes last and gives the attempt back; the ``start`` of the
        rest may arrive before it (:data:`protocol.HANDED_BACK`).
        """
        frame = self._encode(outcomes)
        digest = frame_checksum(frame, self.transport.spec)
        key = handed_key(self.session, task.chunk, attempt)
        self.transport.store.put(key, frame)
        rest = dataclasses.replace(task, done_key=key, done_checksum=digest)
        self.transport.tasks.send([protocol.encode(rest, self.key)])
        self.transport.tasks.delete([msg.receipt])
        with self._lock:
            self._lease = None
        self._notify("release", task.chunk, attempt=attempt, receipt=msg.receipt, key=key,
                     checksum=digest, info={"unrun": UNRUN_LEASE})

    def _release(self, chunk: int) -> None:
        with self._lock:
            lease, self._lease = self._lease, None
        if lease is not None:
            self.transport.tasks.set_visibility(lease.receipt, 0)
            self._notify("release", chunk, receipt=lease.receipt)
            why = "on SIGTERM" if self._stopping.is_set() else "before its lease reached max_lease"
            self._log(f"released chunk {chunk} {why}")

    # -- heartbeat ------------------------------------------------------
    def _heartbeat(self) -> None:
        """End a Spot drain or a chunk at ``max_lease`` on time, and tell the
        supervisor how far the chunk got, once a period at most. (The
        supervisor's own heartbeat keeps the lease and watches the client.)"""
        period = min(self.settings.heartbeat, 1.0)
        told = 0
        while True:
            time.sleep(_DRAIN_CHECK if self._drain_until is not None else period)
            now = time.monotonic()
            self._end_drain(now)
            self._end_lease(now)
            run = self._run
            done = len(run.outcomes) if run is not None else 0
            if done and done != told:
                told = done
                with contextlib.suppress(OSError, ValueError):
                    self._tell(("progress", done))

    def _end_lease(self, now: float) -> None:
        """A task still running when its chunk must be handed back: stop it (the
        main thread's SIGUSR1 handler raises :class:`LeaseEnd` into it)."""
        run = self._run
        if (run is not None and run.hand_by is not None and self._in_task
                and run.current is not None and run is not self._lease_kicked
                and now >= run.hand_by):
            self._lease_kicked = run  # once per chunk: a second one could hit the report
            self._log(f"task {run.current} is still running as chunk {self._chunk}'s lease "
                      f"reaches max_lease={self.settings.max_lease:g}s; stopping it")
            os.kill(os.getpid(), signal.SIGUSR1)

    def _end_drain(self, now: float) -> None:
        """While stopping: once the running task finished, or at the deadline, signal
        the main thread again so that it reports what is done and hands back the rest."""
        if self._drain_until is None or self._drain_kicked:
            return
        run = self._run
        if run is None or not self._in_task:
            return  # the chunk ended on its own: the main loop reports it and stops
        if len(run.outcomes) > self._drain_done or now >= self._drain_until:
            self._drain_kicked = True
            os.kill(os.getpid(), signal.SIGTERM)


def _say(text: str) -> None:
    """Write a line to the real stderr; never raise (a dead client's pipe, a closed
    stream): a worker must not die, nor its heartbeat thread, over a log line."""
    stream = sys.__stderr__
    if stream is None:
        return
    with contextlib.suppress(OSError, ValueError):
        print(text, file=stream, flush=True)


def _portable_error(outcome: Outcome) -> Outcome:
    """An exception that pickles but does not unpickle would fail the whole
    chunk's result on the client; replace it with a SerializationError that
    keeps its type name, message and traceback."""
    task_id, status, value, output, logs = outcome
    if status != "err":
        return outcome
    exc, tb = value
    try:
        loads(dumps(exc))
    except Exception as problem:
        return (task_id, "err", (SerializationError(
            f"task {task_id} raised {type(exc).__module__}.{type(exc).__qualname__}: "
            f"{exc} (the exception itself cannot travel back: {problem})"), tb), output, logs)
    return outcome


def _fix_exit(outcome: Outcome) -> Outcome:
    """A task's ``sys.exit()`` must not exit the client when re-raised there."""
    task_id, status, value, output, logs = outcome
    if status == "err" and isinstance(value[0], (SystemExit, KeyboardInterrupt)):
        exc = value[0]
        what = (f"called sys.exit({exc.code!r})" if isinstance(exc, SystemExit)
                else "raised KeyboardInterrupt")
        return (task_id, "err", (TaskError(
            f"task {task_id} {what}; return a value or raise an exception instead"),
            value[1]), output, logs)
    return outcome


def _by_value(fn: Any) -> bool:
    """Whether ``fn`` came by value (cloudpickle), with globals of its own rather than
    an importable module's: a function of ``__main__`` or of a notebook cell."""
    namespace = getattr(fn, "__globals__", None)
    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    return namespace is not None and (module is None or vars(module) is not namespace)


def _set_by(initializer: Any, namespace: dict[str, Any],
            before: dict[str, Any]) -> dict[str, Any]:
    """The globals an initializer set or may have changed in place: names it assigned
    (new or rebound values) and every global its code names (``CACHE.update(...)``)."""
    named: set[str] = set()
    codes = [getattr(initializer, "__code__", None)]
    while codes:
        code = codes.pop()
        if code is None:
            continue
        named.update(code.co_names)
        codes.extend(c for c in code.co_consts if hasattr(c, "co_names"))
    return {k: v for k, v in namespace.items()
            if not k.startswith("__") and (k not in before or before[k] is not v
                                           or (k in named and not callable(v)))}


def _share_initializer_globals(fns: list[Any], name: Any, values: dict[str, Any]) -> None:
    """Give by-value functions of the initializer's module what the initializer set.

    A process pool's initializer and tasks share one ``__main__``; here each
    arrives by value with globals of its own, so what the initializer set in
    this process is copied into the globals of each task function of the
    same module (as it would read them in a pool).
    """
    for fn in fns:
        namespace = getattr(fn, "__globals__", None)
        if namespace is not None and _by_value(fn) and namespace.get("__name__") == name:
            namespace.update(values)


def client_heartbeat_stale(store: Any, session: str, stale: float) -> bool:
    """Whether the session's client heartbeat is older than ``stale`` seconds (a
    missing or unreadable heartbeat is not: the client may not have written it yet)."""
    try:
        raw = store.get(client_heartbeat_key(session))
    except KeyError:
        return False
    try:
        beat = float(raw.decode())
    except ValueError:
        return False
    return bool(time.time() - beat > stale)


def _chunk_items(header: dict[str, Any], calls: list[tuple[Any, Any]],
                 fns: list[Any]) -> list[Task]:
    """The tasks of a chunk: its header's ``(task id, function, position)`` items and
    one frame part of ``(args, kwargs)`` per task (or, for immutable scalars, the
    header's own list of them). A task whose arguments cannot be unpickled gets a
    function that raises that error, so it fails alone."""
    items = header["items"]
    if header.get("calls") != "parts":  # immutable scalars only: kept in the header
        calls = [(call, None) for call in header["calls"]]
    if len(calls) != len(items):
        raise ProtocolError(f"the chunk holds {len(calls)} argument parts for {len(items)} "
                            "tasks")
    tasks: list[Task] = []
    for (tid, fi, pos), (call, error) in zip(items, calls, strict=True):
        if error is not None:
            tasks.append((tid, _raiser(error), (), {}, pos))
            continue
        args, kwargs = call
        tasks.append((tid, fns[fi], tuple(args), kwargs or {}, pos))
    return tasks


def _raiser(error: BaseException) -> Callable[..., Any]:
    def fail(*_: Any, **__: Any) -> Any:
        raise error
    return fail


def _encode(outcomes: list[Outcome], codec: Codec = "none") -> bytes | memoryview:
    """The result frame of ``outcomes``, one part per task (:func:`dumps_parts`): a result
    that cannot be unpickled on the client fails its task only, and so does one that
    does not pickle here."""
    fixed = [_portable_error(_fix_exit(o)) for o in outcomes]
    try:
        return dumps_parts(fixed, codec=codec)
    except SerializationError:
        pass
    safe: list[Outcome] = []
    for outcome in fixed:
        try:
            dumps(outcome)
            safe.append(outcome)
        except SerializationError as exc:
            safe.append((outcome[0], "err", (SerializationError(
                f"the result of task {outcome[0]} cannot be pickled: {exc}. Return "
                "plain data (numbers, arrays, frames) instead."), ""), outcome[3], None))
    return dumps_parts(safe, codec=codec)
