"""The client side of a session: chunks out, notices in, workers kept alive.

::

    Executor.submit/map --chunks--> outbox --(loop thread) send--> tasks queue
                                                                     |
    futures <--deliver-- receiver thread <--notices-- results queue <-- workers
                               |
                        scheduler (pure) --actions--> backend.launch/stop,
                                                      redeliver, discard, fail

Two threads: the *loop* sends chunks, watches workers, launches them as
the scheduler decides and writes the client heartbeat; the *receiver*
long-polls result notices and resolves futures. Both feed the scheduler
under one lock; futures are resolved outside it, so user callbacks never
run while starburst holds a lock.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from .backends import get_backend_class
from .backends.base import WorkerSpec
from .chunking import submit_group_size
from .cost import CostReport, check_caps, computed_cost, format_money
from .exceptions import (
    BudgetExceededError,
    CloudError,
    ExecutorBroken,
    ProtocolError,
    RemoteTraceback,
    SerializationError,
    StarburstError,
    TaskError,
    TransportError,
    WorkerLostError,
)
from .options import ExecutorOptions, cap_local_workers
from .scheduler import (
    Budget,
    ChunkState,
    Discard,
    Fail,
    Launch,
    OverBudget,
    Redeliver,
    Retire,
    Scheduler,
)
from .scheduling.events import (
    FAILED_TO_START,
    SPOT_INTERRUPTION,
    WorkerExit,
    describe_exit,
    exit_signal,
)
from .session import (
    KEY_OPTION,
    WORKER_OPTION,
    SessionRecord,
    load_manifests,
    write_manifest,
)
from .wire import messages as protocol
from .wire.keys import (
    cancel_key,
    chunk_manifest_key,
    client_heartbeat_key,
    payload_key,
    record_key,
    result_commit_key,
    session_prefix,
    shared_key,
)
from .wire.serialization import (
    codec_for,
    dumps,
    dumps_parts,
    frame_checksum,
    loads_parts,
    locate_unpicklable,
    shared_digest,
    sizeof,
    verify_checksum,
)
from .worker.loop import EXIT_STUCK, UNRUN_LEASE, UNRUN_STOPPED, UNRUN_STUCK

__all__ = ["Client", "MapBlock", "Target"]

log = logging.getLogger("starburst")

# A top-level argument at least this large is stored once per session by
# content hash and referenced from payloads, so a big array passed to a
# thousand tasks is uploaded once (and read once per worker).
SHARE_THRESHOLD = 1 << 20
# Objects (functions, large arguments) whose digest is remembered by
# identity; beyond this the least recently used are forgotten.
_SHARED_CACHE = 256
# Argument types never worth sharing (checked by type, the cheapest test).
_SCALARS = frozenset({int, float, bool, type(None), complex})
#: Argument types no task can change in place: a chunk of only these keeps its
#: arguments in its header instead of a frame part per task.
_IMMUTABLE = _SCALARS | {str, bytes}
# What a store put raises when it fails (a full disk, the network, AWS): the
# tasks it was for fail with a TransportError, the session goes on.
_STORE_ERRORS = (TransportError, CloudError, OSError)
# How long shutdown waits for a billed backend to report its workers'
# stop times (Fargate: StopTask to STOPPED takes a few seconds to ~30 s).
_EXIT_WAIT = 30.0
# How often the client looks into the dead-letter queue (seconds).
_DEAD_CHECK = 5.0
# Bytes reserved for the message header when deciding whether a payload
# still fits inline.
_HEADER_ROOM = 1024
# A worker that exits before running anything, this many times per
# worker slot in a row, means workers cannot start: the executor is broken.
_FUTILE_EXITS_PER_WORKER = 3
# Why a worker handed tasks back ``unrun`` (the ``unrun`` entry of its
# ``done`` notice's info), as told to an attached client that cannot re-queue them.
# (``lease`` only from a worker of an older starburst: a worker now queues the
# rest of such a chunk itself.)
_UNRUN_WHY = {
    UNRUN_STOPPED: "their worker was stopped while running the chunk (a Fargate Spot "
                   "interruption, or a stop) and handed them back",
    UNRUN_STUCK: "their worker gave up on a task stuck past its timeout",
    UNRUN_LEASE: "their chunk's lease neared max_lease, SQS's 12-hour limit, and its "
                 "worker handed them back",
}
# What a worker of an older starburst, which did not say why, is told as.
_UNRUN_UNSAID = "their worker handed them back: it was stopped, or a task was stuck"


_LIVE: weakref.WeakSet[Client] = weakref.WeakSet()


def _at_exit() -> None:
    for client in list(_LIVE):
        if not client._loop_thread.is_alive():
            continue
        try:
            client.close(wait=True, cancel_futures=False)
        except KeyboardInterrupt:
            client.abort(KeyboardInterrupt())


threading._register_atexit(_at_exit)  # type: ignore[attr-defined]


class MapBlock:
    """Results of one map chunk, filled in as outcomes arrive."""

    __slots__ = ("done", "outcomes", "remaining")

    def __init__(self, n: int) -> None:
        self.outcomes: list[tuple[str, Any]] = [("pending", None)] * n
        self.remaining = n
        self.done = threading.Event()


Target = Future[Any] | tuple[MapBlock, int]
#: (task id, function, args, kwargs, position): the position seeds the
#: task's random stream (its index in map's input, or the submit order).
TaskSpec = tuple[int, Callable[..., Any], tuple[Any, ...], dict[str, Any] | None, int]


@dataclass
class _Chunk:
    id: int
    tasks: list[TaskSpec]
    targets: list[Target]
    body: bytes = b""
    payload_key: str = ""
    size: int = 0
    #: Indices of the targets resolved already, from a hand-back's outcomes so far.
    delivered: set[int] = field(default_factory=set)
    #: The task ids of an attached client's chunk (which holds no task specs).
    ids: list[int] = field(default_factory=list)

    def task_ids(self) -> list[int]:
        """The id of each target's task."""
        return [t[0] for t in self.tasks] if self.tasks else self.ids

    @property
    def undelivered(self) -> int:
        """How many of its targets are still to be resolved."""
        return len(self.targets) - len(self.delivered)


@dataclass
class _Counters:
    tasks_total: int = 0
    tasks_done: int = 0
    tasks_failed: int = 0
    tasks_cancelled: int = 0
    messages_refused: int = 0
    chunks_sent: int = 0
    workers_launched: int = 0
    worker_exits: list[WorkerExit] = field(default_factory=list)


def _remote(value: Any) -> BaseException:
    exc, tb = value
    if not isinstance(exc, BaseException):
        return ProtocolError(f"worker returned a non-exception as an error: {exc!r}")
    if tb:
        exc.__cause__ = RemoteTraceback(tb)
    return exc


def _json_safe(options: dict[str, Any]) -> dict[str, Any]:
    """The backend options that survive JSON (what an attaching client re-opens with)."""
    out: dict[str, Any] = {}
    for name, value in options.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        out[name] = value
    return out


def _emit_logs(records: list[dict[str, Any]], task: int, worker: str) -> None:
    """Hand a task's log records to the client's loggers, task and worker attached."""
    for data in records:
        name = data.get("name") or "root"
        logger = logging.getLogger(name if name != "root" else None)
        level = data.get("levelno")
        if not isinstance(level, int) or not logger.isEnabledFor(level):
            continue
        record = logging.makeLogRecord({**data, "args": None, "exc_info": None,
                                        "starburst_task": task, "starburst_worker": worker})
        logger.handle(record)


def deliver(target: Target, status: str, value: Any) -> None:
    """Resolve one task's target with an outcome (``ok``, ``err``, ``timeout``, ``fail``)."""
    if isinstance(target, Future):
        if target.done():
            return
        if status == "ok":
            target.set_result(value)
        else:
            target.set_exception(_remote(value) if status == "err" else value)
        return
    block, index = target
    if block.outcomes[index][0] != "pending":
        return
    block.outcomes[index] = (status, value)
    block.remaining -= 1
    if block.remaining == 0:
        block.done.set()


def outcome_value(status: str, value: Any) -> Any:
    """Return the value of an ``ok`` outcome or raise what the task raised."""
    if status == "ok":
        return value
    if status == "err":
        raise _remote(value)
    raise value


class Client:
    """Runs one session: owns the transport, backend, scheduler and threads."""

    def __init__(self, options: ExecutorOptions, session_id: str, *,
                 attach: bool = False) -> None:
        self.options = options
        self.session_id = session_id
        self.settings = options.settings
        # Imported here: rich is the client's alone, and a worker that imports
        # starburst should not pay for it at start-up.
        from .progress import ProgressDisplay

        self.display = ProgressDisplay(options.progress, "starburst")
        backend_cls = get_backend_class(options.backend, options.extra)
        record: SessionRecord | None = None
        if not attach:
            self.session = backend_cls.open_session(session=session_id, options=options,
                                                    on_output=self._on_output)
        else:
            self.session, record = backend_cls.attach_session(
                session=session_id, options=options, on_output=self._on_output)
        self.backend = self.session.backend
        self.transport = self.session.transport
        self.key = self.session.key
        try:
            self.workers = self._fit_workers(options.workers or self.session.workers)
            rate = self.session.hourly_rate
            dearest = self.session.max_hourly_rate
            budget = (Budget(rate / 3600.0, options.max_cost,
                             launch_rate_per_second=None if dearest is None else dearest / 3600.0)
                      if options.max_cost is not None and rate > 0 else None)
            self.scheduler = Scheduler(
                max_workers=self.workers, max_attempts=options.max_attempts,
                pacing=self.session.pacing,
                linger=self.settings.linger if self.backend.bills_idle else None,
                budget=budget)
            if rate > 0 and dearest is not None and dearest > rate:
                self.session.notes.append(
                    f"{self.workers} workers x {format_money(rate, 3)}/h = "
                    f"{format_money(self.workers * rate, 3)}/h, up to "
                    f"{format_money(self.workers * dearest, 3)}/h if every worker starts at "
                    f"{format_money(dearest, 3)}/h "
                    f"({self.session.price_note}); the spend shown prices each worker at its own "
                    "rate")
            elif rate > 0:
                self.session.notes.append(
                    f"{self.workers} workers x {format_money(rate, 3)}/h = "
                    f"{format_money(self.workers * rate, 3)}/h "
                    f"at most ({self.session.price_note})")
            for note in self.session.notes:
                self.display.print(f"starburst: {note}", stream="stderr")
            env = {**self.session.spec.env, **self.settings.to_env()}
            self.deadline = record.deadline if record is not None else (
                time.time() + options.session_timeout if options.detached else 0.0)
            if options.detached or (record is not None and record.detached):
                env["STARBURST_DETACHED"] = "1"
                env["STARBURST_SESSION_DEADLINE"] = f"{self.deadline:.0f}"
            if options.debug:
                env["STARBURST_DEBUG_KEEPALIVE"] = f"{options.debug_keepalive:g}"
            self._debug_kept: set[str] = set()
            self.spec = WorkerSpec(env=env, cpu=self.session.spec.cpu,
                                   memory_mib=self.session.spec.memory_mib,
                                   image=self.session.spec.image, key=self.session.spec.key)
            self.counters = _Counters()
            self._lock = threading.RLock()
            self._chunks: dict[int, _Chunk] = {}
            #: Tasks finished in chunks still running, from workers' progress notices.
            self._partial: dict[int, int] = {}
            self._outbox: list[_Chunk] = []
            self._outbox_lock = threading.Lock()
            self._submits: deque[tuple[Future[Any], Callable[..., Any], tuple[Any, ...],
                                       dict[str, Any]]] = deque()
            self._wake = threading.Event()
            self._chunk_ids = itertools.count()
            self._object_ids = itertools.count()
            self._task_ids = itertools.count()
            self._submit_positions = itertools.count()
            self._shared: OrderedDict[int, tuple[Any, str]] = OrderedDict()
            self._stored: set[str] = set()
            self._shared_lock = threading.Lock()
            self._closing = False
            self._aborted: BaseException | None = None
            self._broken: BaseException | None = None
            self._futile_exits = 0
            # Workers that ran something: their deaths are losses, not start failures.
            self._productive: set[str] = set()
            self._ended = False
            self._started_at = time.time()
            self._next_beat = 0.0
            self._next_dead_check = 0.0
            self._manifests = 0
            self._adopted_workers = 0  # the previous client's, still running at attach
            self._detaching = False
            self._future_chunk: dict[Future[Any], int] = {}
            self._maybe_cancelled: set[int] = set()
            self.record = record or SessionRecord(
                session=session_id, backend=options.backend, transport=self.transport.spec,
                detached=options.detached, deadline=self.deadline, workers=self.workers,
                max_attempts=options.max_attempts,
                options={**_json_safe(options.extra), WORKER_OPTION: {
                    "image": self.session.spec.image, "cpu": self.session.spec.cpu,
                    "memory_mib": self.session.spec.memory_mib,
                    "arch": str(getattr(self.backend, "arch", "")),
                    "env": dict(self.session.spec.env)},
                    KEY_OPTION: self.session.key_ref})
            self.attached_futures: dict[int, Future[Any]] = {}
            if record is None:
                self._write_record("running")
            else:
                self._manifests = self._adopt()
            self._beat()
            self._receiver = threading.Thread(target=self._receive_loop, daemon=True,
                                              name=f"starburst-receiver-{session_id}")
            # A daemon thread, joined by an interpreter-exit hook that runs
            # before non-daemon threads are joined (as concurrent.futures does):
            # work still outstanding at exit is finished, and a second Ctrl-C
            # during that wait aborts it instead of hanging.
            self._loop_thread = threading.Thread(target=self._loop, daemon=True,
                                                 name=f"starburst-client-{session_id}")
            self._receiver.start()
            self._loop_thread.start()
            _LIVE.add(self)
        except BaseException:
            # A refused or failed construction leaves nothing of its session behind.
            self._discard_session(attach)
            raise

    def _discard_session(self, attach: bool) -> None:
        """Undo what opening the session created: workers, the session's data and queues.

        An attached client only lets go of the transport: the session, its
        data and its queues belong to whoever attaches next.
        """
        steps: list[tuple[str, Callable[[], object]]] = [
            ("stop its workers", self.backend.stop), ("close its backend", self.backend.close)]
        if attach:  # its key and role stay for the next attach (and cleanup)
            steps.insert(0, ("keep the session's key", self.backend.detach))
        if not attach:
            steps += [("delete its data", lambda: self.transport.store.delete_prefix(
                          session_prefix(self.session_id))),
                      ("delete its queues", self.transport.destroy)]
        steps += [("close its transport", self.transport.close),
                  ("close its display", self.display.close)]
        for what, step in steps:
            try:
                step()
            except Exception as exc:
                log.error("starburst: session %s was refused, and a cleanup step (%s) "
                          "failed: %s; `starburst cleanup` removes what is left",
                          self.session_id, what, exc)

    def _fit_workers(self, requested: int) -> int:
        """Cap the worker count by the quota and ``max_hourly_cost``."""
        workers = requested
        if self.options.backend == "local":
            # User code -> Executor.__init__ -> Client.__init__ -> here -> the cap.
            workers = cap_local_workers(workers, stacklevel=4)
        if self.session.max_workers is not None:
            workers = min(workers, max(1, self.session.max_workers))
        hourly_cap = self.options.max_hourly_cost
        rate = self.session.hourly_rate
        check_caps(max_cost=self.options.max_cost, max_hourly_cost=hourly_cap, hourly_rate=rate,
                   max_hourly_rate=self.session.max_hourly_rate,
                   price_note=self.session.price_note)
        if hourly_cap is not None and rate > 0:
            affordable = int(hourly_cap // rate)
            if affordable < workers:
                self.session.notes.append(
                    f"max_hourly_cost={format_money(hourly_cap, 3)} allows {affordable} workers at "
                    f"{format_money(rate, 3)}/h each: running {affordable} instead of {workers}")
                workers = affordable
        return workers

    # -- building chunks --------------------------------------------------
    def next_task_id(self) -> int:
        """A session-unique task number (labels output: ``[task N]``)."""
        return next(self._task_ids)

    def _share(self, obj: Any) -> str:
        """Store ``obj`` once by content hash; return its digest.

        The identity cache keeps a strong reference (so ``id(obj)`` stays
        this object's) to at most :data:`_SHARED_CACHE` objects, dropping
        the least recently used: memory stays bounded on long sessions, and
        a dropped object that comes back is hashed again but not re-uploaded.
        """
        key = id(obj)
        with self._shared_lock:
            hit = self._shared.get(key)
            if hit is not None and hit[0] is obj:
                self._shared.move_to_end(key)
                return hit[1]
        frame = dumps(obj, codec=codec_for(self.transport.spec))
        digest = shared_digest(frame, self.transport.spec, next(self._object_ids))
        with self._shared_lock:
            known = digest in self._stored
        if not known:
            # Remembered only once stored: a put that fails (a full disk) is
            # tried again by the next task that needs the object.
            self.transport.store.put(shared_key(self.session_id, digest), frame)
        with self._shared_lock:
            self._stored.add(digest)
            self._shared[key] = (obj, digest)
            while len(self._shared) > _SHARED_CACHE:
                self._shared.popitem(last=False)
        return digest

    def _persistent_id(self, obj: Any) -> Any:
        hit = self._shared.get(id(obj))
        if hit is not None and hit[0] is obj:
            return ("sb", hit[1])
        return None

    def build_chunk(self, tasks: list[TaskSpec], targets: list[Target]) -> tuple[int, int] | None:
        """Pickle tasks into a chunk and queue it for sending.

        Tasks that cannot be pickled fail alone with a
        :class:`~starburst.exceptions.SerializationError` naming the culprit.

        Returns:
            (chunk id, payload bytes), or None when no task could be pickled.
        """
        try:
            chunk = self._encode_chunk(tasks, targets)
        except _STORE_ERRORS as exc:
            self._fail_unstored(tasks, targets, exc)
            return None
        except SerializationError:
            good_tasks, good_targets = [], []
            for task, target in zip(tasks, targets, strict=True):
                try:
                    self._encode_chunk([task], [target])
                except SerializationError as exc:
                    deliver(target, "fail", exc)
                    with self._lock:
                        self.counters.tasks_done += 1
                        self.counters.tasks_failed += 1
                else:
                    good_tasks.append(task)
                    good_targets.append(target)
            if not good_tasks:
                return None
            try:
                chunk = self._encode_chunk(good_tasks, good_targets)
            except _STORE_ERRORS as exc:
                self._fail_unstored(good_tasks, good_targets, exc)
                return None
        futures = [t for t in chunk.targets if isinstance(t, Future)]
        if futures:
            with self._lock:
                for future in futures:
                    self._future_chunk[future] = chunk.id
            for future in futures:
                future.add_done_callback(self._on_future_done)
        with self._outbox_lock:
            self._outbox.append(chunk)
        self._wake.set()
        return chunk.id, chunk.size

    def _fail_unstored(self, tasks: Sequence[TaskSpec], targets: Sequence[Target],
                       exc: BaseException, what: str = "stored") -> None:
        """Fail tasks whose function, arguments or payload the store refused
        (``what="stored"``), or whose message the queue refused (``"queued"``).

        Nothing of them was queued, so nothing else would ever resolve them;
        the session goes on (the next submit stores what it needs anew).
        """
        ids = ", ".join(str(t[0]) for t in tasks[:5]) + (", ..." if len(tasks) > 5 else "")
        error = TransportError(
            f"task(s) {ids} of session {self.session_id} could not be {what}, so they "
            f"were not run: {type(exc).__name__}: {exc}. Free space in the store (the "
            "local directory, STARBURST_LOCAL_DIR) or fix access to the bucket or queue, "
            "and submit them again; the session goes on")
        error.__cause__ = exc
        for target in targets:
            if isinstance(target, Future) and not (target.running() or target.done()):
                target.set_running_or_notify_cancel()  # False (and notified) if cancelled
            deliver(target, "fail", error)
        with self._lock:
            self.counters.tasks_done += len(targets)
            self.counters.tasks_failed += len(targets)

    def _on_future_done(self, future: Future[Any]) -> None:
        """A submitted future finished or was cancelled by the user."""
        with self._lock:
            chunk_id = self._future_chunk.pop(future, None)
        if chunk_id is None or not future.cancelled():
            return
        future.set_running_or_notify_cancel()  # wake wait()/as_completed() waiters
        with self._lock:
            self._maybe_cancelled.add(chunk_id)
        self._wake.set()

    def _cancel_abandoned(self) -> None:
        """Cancel chunks whose every future was cancelled before a worker started them."""
        with self._lock:
            candidates, self._maybe_cancelled = self._maybe_cancelled, set()
        if not candidates:
            return
        with self._outbox_lock:
            pending = {c.id: c for c in self._outbox if c.id in candidates}
        with self._lock:
            for cid in candidates:
                chunk = self._chunks.get(cid) or pending.get(cid)
                if chunk is not None and all(
                        isinstance(t, Future) and t.cancelled() for t in chunk.targets):
                    pending[cid] = chunk
                else:
                    pending.pop(cid, None)
        if pending:
            for cid in pending:
                # Workers check this before running a cancellable chunk.
                self.transport.store.put(cancel_key(self.session_id, cid), b"")
            self.cancel_chunks(list(pending))
            with self._lock:
                self.counters.tasks_cancelled += sum(len(c.targets) for c in pending.values())

    def _encode_chunk(self, tasks: list[TaskSpec], targets: list[Target]) -> _Chunk:
        digests: dict[str, int] = {}
        items = []
        calls: list[tuple[tuple[Any, ...], dict[str, Any] | None]] = []
        shares = split = False
        last_fn: Any = None
        index = 0
        for tid, fn, args, kwargs, position in tasks:
            if fn is not last_fn:  # a map's tasks share one function
                try:
                    digest = self._share(fn)
                except SerializationError as exc:
                    raise SerializationError(
                        f"task {tid}: cannot pickle the function "
                        f"{getattr(fn, '__qualname__', fn)!r}: {exc}") from exc
                index = digests.setdefault(digest, len(digests))
                last_fn = fn
            # One walk over the arguments: large or repeated ones are shared,
            # and any that could be changed in place splits the chunk into
            # a frame part per task, after the chunk's header: each task
            # unpickles its own copy, as ProcessPoolExecutor pickles each call,
            # so a task's in-place change never reaches the next one. A chunk
            # of immutable scalars only (map over a range, say) keeps them in
            # its header: nothing there can be changed, and a part per task
            # would double the cost of a no-op task.
            for arg in (*args, *kwargs.values()) if kwargs else args:
                kind = type(arg)
                if kind in _SCALARS:
                    continue
                split = split or kind not in _IMMUTABLE
                if id(arg) in self._shared or sizeof(arg) >= SHARE_THRESHOLD:
                    self._share(arg)
                    shares = True
            items.append((tid, index, position))
            calls.append((args, kwargs or None))
        payload = {"fns": list(digests), "items": items, "seed": self.options.seed,
                   "log_level": logging.getLogger().getEffectiveLevel(),
                   "calls": "parts" if split else calls}
        if self.options.initializer is not None:  # stored once, like the functions
            pair = self.__dict__.setdefault(
                "_init_pair", (self.options.initializer, self.options.initargs))
            payload["init"] = self._share(pair)
        if self.options.max_tasks_per_child is not None:
            payload["max_tasks_per_child"] = self.options.max_tasks_per_child
        try:
            frame = dumps_parts([payload, *calls] if split else [payload],
                                persistent_id=self._persistent_id if shares else None,
                                codec=codec_for(self.transport.spec))
        except SerializationError as exc:
            if len(tasks) == 1:
                tid, fn, args, kwargs, _ = tasks[0]
                where = locate_unpicklable(fn, args, kwargs or {})
                raise SerializationError(
                    f"task {tid}: cannot pickle {where}. Pass picklable objects (create "
                    "locks, connections and open files inside the task instead)."
                ) from exc.__cause__
            raise
        chunk_id = next(self._chunk_ids)
        key = ""
        body = frame
        if len(frame) > self.transport.inline_limit - _HEADER_ROOM:
            key = payload_key(self.session_id, chunk_id)
            self.transport.store.put(key, frame)
            body = b""
        msg = protocol.TaskMessage(
            session=self.session_id, chunk=chunk_id, n=len(tasks),
            checksum=frame_checksum(frame, self.transport.spec),
            key=key, timeout=self.options.task_timeout,
            capture=not self.backend.live_output,
            cancellable=any(isinstance(t, Future) for t in targets), body=bytes(body))
        return _Chunk(chunk_id, tasks, targets, protocol.encode(msg, self.key), key,
                      len(frame))

    def enqueue_submit(self, future: Future[Any], fn: Callable[..., Any],
                       args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Queue one submitted call; the loop groups backlogs into chunks."""
        self._submits.append((future, fn, args, kwargs))
        if not self._wake.is_set():
            self._wake.set()

    def _drain_submits(self) -> None:
        batch = []
        while self._submits:
            batch.append(self._submits.popleft())
        # Futures stay PENDING (cancellable, as concurrent.futures documents)
        # until a worker starts their chunk; a cancelled one is just notified.
        live = []
        for item in batch:
            if item[0].cancelled():
                item[0].set_running_or_notify_cancel()
            else:
                live.append(item)
        if not live:
            return
        size = submit_group_size(len(live), self.workers)
        with self._lock:
            self.counters.tasks_total += len(live)
        for start in range(0, len(live), size):
            group = live[start : start + size]
            tasks: list[TaskSpec] = [
                (self.next_task_id(), fn, args, kwargs or None, next(self._submit_positions))
                for _, fn, args, kwargs in group]
            try:
                self.build_chunk(tasks, [f for f, *_ in group])
            except BaseException as exc:
                # These futures left the submit queue: fail them here, or
                # nothing would ever resolve them.
                self._fail_unstored(tasks, [f for f, *_ in live[start:]], exc)
                raise

    def add_total(self, n: int) -> None:
        """Count ``n`` more tasks towards the progress total (map)."""
        with self._lock:
            self.counters.tasks_total += n

    def _flush_outbox(self) -> None:
        with self._outbox_lock:
            chunks, self._outbox = self._outbox, []
        if not chunks:
            return
        with self._lock:
            for chunk in chunks:
                self._chunks[chunk.id] = chunk
                self.scheduler.submit(chunk.id, len(chunk.tasks))
            self.counters.chunks_sent += len(chunks)
        try:
            self.transport.tasks.send([c.body for c in chunks])
        except _STORE_ERRORS as exc:
            # Not queued (a full disk, the network): fail these chunks' tasks
            # and go on, as for a payload the store refused.
            with self._lock:
                for chunk in chunks:
                    self.scheduler.cancel(chunk.id)
                    self.scheduler.forget(chunk.id)
                    self._chunks.pop(chunk.id, None)
                self.counters.chunks_sent -= len(chunks)
            for chunk in chunks:
                self._fail_unstored(chunk.tasks, chunk.targets, exc, what="queued")
            return
        try:
            write_manifest(self.transport.store, self.session_id, self._manifests,
                           [(c.id, [t[0] for t in c.tasks]) for c in chunks])
        except _STORE_ERRORS as exc:
            # The chunks are queued and this client gets their results; only a
            # client that attaches later would not know of them.
            log.warning("starburst: the manifest of %d chunk(s) of session %s could not be "
                        "stored (%s): this client collects their results, a client that "
                        "attaches later will not", len(chunks), self.session_id, exc)
            return
        self._manifests += 1

    def cancel_chunks(self, chunk_ids: Sequence[int]) -> None:
        """Forget chunks whose results nobody will read (an abandoned map)."""
        drop = set(chunk_ids)
        with self._outbox_lock:
            self._outbox = [c for c in self._outbox if c.id not in drop]
        with self._lock:
            for cid in chunk_ids:
                if self.scheduler.cancel(cid) or cid in drop:
                    self._chunks.pop(cid, None)
                    self.scheduler.forget(cid)

    # -- results ----------------------------------------------------------
    def _receive_loop(self) -> None:
        results = self.transport.results
        while True:
            if self._broken is not None or self._aborted is not None:
                return
            if self._closing and self._idle():
                return
            if self._detaching:
                return  # notices stay queued for whoever attaches
            try:
                got = results.receive(max_messages=results.max_batch, wait_seconds=0.5,
                                      visibility=60.0)
                if self._detaching:
                    # This client left while the poll was out: what it brought back
                    # belongs to whoever attaches (it may already have read the
                    # commits, and would never hear of these chunks otherwise).
                    for msg in got:
                        results.set_visibility(msg.receipt, 0)
                    return
                for msg in got:
                    self._on_notice(msg.body)
                if got:
                    results.delete([m.receipt for m in got])
                    self._wake.set()
            except Exception as exc:
                self._break(exc)
                return

    def _refuse(self, body: bytes, error: ProtocolError) -> None:
        """A notice that fails its tag or its parse: set aside in the dead-letter
        queue (for a post-mortem), counted, never unpickled."""
        with self._lock:
            self.counters.messages_refused += 1
            first = self.counters.messages_refused == 1
        (log.warning if first else log.debug)(
            "starburst: refused a result notice of session %s: %s", self.session_id, error)
        try:
            self.transport.dead.send([body])
        except Exception as exc:  # best effort: refusing it is what matters
            log.debug("starburst: cannot set a refused notice aside: %s", exc)

    def _on_notice(self, body: bytes) -> None:
        try:
            notice = protocol.decode(body, self.key)
        except ProtocolError as exc:
            self._refuse(body, exc)
            return
        if not isinstance(notice, protocol.Notice) or notice.session != self.session_id:
            log.warning("starburst: dropped a notice of another session or kind")
            return
        actions: list[Any] = []
        chunk: _Chunk | None = None
        handed: _Chunk | None = None
        with self._lock:
            if notice.kind == "start":
                self._futile_exits = 0
                self._productive.add(notice.worker)
                actions = self.scheduler.started(
                    notice.chunk, notice.worker, notice.receipt, time.monotonic(),
                    handed_back=notice.info.get(protocol.HANDED_BACK) is True)
                started = self._chunks.get(notice.chunk)
                if started is not None:
                    for target in started.targets:
                        if isinstance(target, Future) and not (target.running()
                                                               or target.done()):
                            target.set_running_or_notify_cancel()
            elif notice.kind == "progress":
                running = self._chunks.get(notice.chunk)
                done = notice.info.get("done")
                if running is not None and isinstance(done, int):
                    self._partial[notice.chunk] = max(0, min(done, len(running.targets)))
            elif notice.kind == "release":
                self._partial.pop(notice.chunk, None)
                self.scheduler.released(notice.chunk, notice.worker, notice.receipt)
                if notice.key:  # handed back near max_lease: the outcomes so far
                    handed = self._chunks.get(notice.chunk)
            elif notice.kind == "bad":
                self.counters.messages_refused += 1
                log.warning("starburst: worker %s moved a malformed task message aside: %s",
                            notice.worker, notice.info.get("error"))
            elif notice.kind == "done" and self.scheduler.finished(notice.chunk,
                                                                    time.monotonic()):
                chunk = self._chunks.pop(notice.chunk, None)
                self._partial.pop(notice.chunk, None)
                self.scheduler.forget(notice.chunk)
        self._act(actions)
        if chunk is not None:
            self._complete(chunk, notice)
        if handed is not None:
            self._complete(handed, notice, final=False)

    def _complete(self, chunk: _Chunk, notice: protocol.Notice, *, final: bool = True) -> None:
        """Resolve the targets of ``chunk`` from its result (``final``) or, for a chunk
        handed back near ``max_lease``, from its outcomes so far: those resolve now,
        the rest when the chunk's new message has run (its result holds them all)."""
        try:
            frame = notice.body if not notice.key else self.transport.store.get(notice.key)
            if not verify_checksum(frame, notice.checksum, self.transport.spec):
                raise ProtocolError(
                    f"result of chunk {chunk.id} ({notice.key or 'inline'}) fails its "
                    "checksum: it is corrupt or truncated")
            # Each task's outcome decodes on its own: one that cannot be
            # unpickled here fails that task, not its siblings.
            outcomes = [value if error is None else (
                chunk.tasks[i][0] if i < len(chunk.tasks) else i, "fail", error, "", None)
                for i, (value, error) in enumerate(loads_parts(frame))]
            if len(outcomes) != len(chunk.targets):
                raise ProtocolError(f"result of chunk {chunk.id} has the wrong shape")
        except (ProtocolError, SerializationError, TransportError, CloudError, KeyError) as exc:
            if not final:  # the final result holds these outcomes too
                log.debug("starburst: the outcomes so far of chunk %d cannot be read: %s",
                          chunk.id, exc)
                return
            # A result that cannot be read fails its chunk's tasks with the
            # reason; it never leaves their futures waiting.
            error = exc if isinstance(exc, StarburstError) else ProtocolError(
                f"result {notice.key} of chunk {chunk.id} is missing from the store")
            outcomes = [(tid, "fail", error, "", None) for tid in chunk.task_ids()]
        rerun: list[int] = []
        with self._lock:  # a hand-back's and the final result may be read at once
            fresh = [i for i, o in enumerate(outcomes)
                     if i not in chunk.delivered and o[1] != "unrun"]
            chunk.delivered.update(fresh)
        failed = 0
        for index, ((tid, status, value, output, logs), target) in enumerate(
                zip(outcomes, chunk.targets, strict=True)):
            if status == "unrun":
                rerun.append(index)
                continue
            if index not in fresh:
                continue  # resolved from the outcomes of a hand-back
            if output:
                for stream, text in zip(("stdout", "stderr"), output.split("\0", 1),
                                        strict=False):
                    for line in text.splitlines():
                        self.display.print(f"[task {tid}] {line}", stream=stream)
            if logs:
                _emit_logs(logs, tid, notice.worker)
            if status != "ok":
                failed += 1
            if status == "err" and self.options.debug:
                self._offer_debugging(notice.worker, tid)
            deliver(target, status, value)
        with self._lock:
            self.counters.tasks_done += len(fresh)
            self.counters.tasks_failed += failed
        if not final:
            return
        # Results stay in the store until the session ends (an attaching
        # client finds them there); the payload is no longer needed.
        if chunk.payload_key:
            self.transport.store.delete(chunk.payload_key)
        if rerun and not chunk.tasks:
            lost = TaskError(
                f"{len(rerun)} task(s) of chunk {chunk.id} were not run "
                f"({_UNRUN_WHY.get(str(notice.info.get('unrun')), _UNRUN_UNSAID)}) and an "
                "attached client cannot queue them again: it does not have their arguments; "
                "submit them anew")
            for i in rerun:
                deliver(chunk.targets[i], "fail", lost)
        elif rerun:
            self.build_chunk([chunk.tasks[i] for i in rerun], [chunk.targets[i] for i in rerun])

    def _offer_debugging(self, worker: str, task: int) -> None:
        """Debug mode: the first worker whose task raised stays up; say how to get in."""
        with self._lock:
            if self._debug_kept:
                return
            self._debug_kept.add(worker)
        how = self.backend.keep_for_debugging(worker)
        seconds = f"{self.options.debug_keepalive:g}"
        if how is None:
            self.display.print(
                f"starburst: debug: task {task} failed on worker {worker}, which stays alive "
                f"for {seconds} s; this backend cannot say how to get into it", stream="stderr")
        else:
            self.display.print(
                f"starburst: debug: task {task} failed on worker {worker}, which stays alive "
                f"for {seconds} s; get into it with:\n    {how}", stream="stderr")

    # -- scheduler actions --------------------------------------------------
    def _act(self, actions: Sequence[Any]) -> None:
        for action in actions:
            if isinstance(action, Redeliver | Fail) and self._recover_committed(action.chunk):
                continue
            if isinstance(action, Redeliver) and action.receipt:
                self.transport.tasks.set_visibility(action.receipt, 0)
            elif isinstance(action, Discard) and action.receipt:
                self.transport.tasks.delete([action.receipt])
            elif isinstance(action, Fail):
                self._fail_chunk(action)
            elif isinstance(action, Launch):
                self._launch(action.count)
            elif isinstance(action, Retire):
                retire = [w for w in action.workers if w not in self._debug_kept]
                if retire:
                    self.backend.stop(retire)
            elif isinstance(action, OverBudget):
                self._over_budget(action)

    def _recover_committed(self, chunk_id: int) -> bool:
        """Complete a chunk whose worker was lost from its commit, if it has one.

        The worker may have committed before it died, or its ``done`` notice
        may have gone to another client (one that detached while its poll was
        out); then the chunk's message is gone, a redelivery would wait for
        nothing and a failure would drop a result that exists. The commit in
        the store is the truth: one GET per lost chunk.
        """
        try:
            body = self.transport.store.get(result_commit_key(self.session_id, chunk_id))
            notice = protocol.decode(body, self.key)
        except KeyError:
            return False
        except (ProtocolError, TransportError, CloudError) as exc:
            log.warning("starburst: cannot read the commit of chunk %d: %s", chunk_id, exc)
            return False
        if (not isinstance(notice, protocol.Notice) or notice.session != self.session_id
                or notice.kind != "done" or notice.chunk != chunk_id):
            return False  # another chunk's commit, copied here: not this chunk's result
        with self._lock:
            chunk = self._chunks.pop(chunk_id, None)
            self.scheduler.finished(chunk_id, time.monotonic())
            self.scheduler.forget(chunk_id)
        if chunk is not None:
            self._complete(chunk, notice)
        return True

    def _fail_chunk(self, action: Fail) -> None:
        with self._lock:
            chunk = self._chunks.pop(action.chunk, None)
            self.scheduler.forget(action.chunk)
        if chunk is None:
            return
        ex = action.exit
        for tid, target in zip(chunk.task_ids(), chunk.targets, strict=True):
            deliver(target, "fail", WorkerLostError(
                f"task {tid} lost its worker {action.attempts} time(s) "
                f"(max_attempts={self.options.max_attempts}); the last worker {ex.worker} "
                f"{describe_exit(ex)}. If the task crashes its process (os._exit, a native "
                "crash, memory), fix that; otherwise raise max_attempts=",
                worker=ex.worker, exit_code=ex.exit_code, signal=exit_signal(ex),
                stop_code=ex.stop_code, reason=ex.reason, attempts=action.attempts))
        with self._lock:
            self.counters.tasks_done += chunk.undelivered
            self.counters.tasks_failed += chunk.undelivered

    def _over_budget(self, action: OverBudget) -> None:
        with self._lock:
            chunks = [self._chunks.pop(cid) for cid in action.chunks if cid in self._chunks]
            for cid in action.chunks:
                self.scheduler.forget(cid)
        tasks = sum(c.undelivered for c in chunks)
        limit, spent = format_money(action.limit, 3), format_money(action.spent, 3)
        if action.needed:
            why = (f"{spent} committed so far leaves {format_money(action.limit - action.spent, 3)}"
                   f", and no worker is left to run the {tasks} tasks still waiting: the next "
                   f"one would commit {format_money(action.needed, 3)} (its one-minute "
                   "minimum)")
        else:
            why = (f"{spent} committed so far and {format_money(action.projected, 3)} "
                   f"projected for the {tasks} tasks still waiting")
        error = BudgetExceededError(
            f"max_cost={limit} reached: {why}, so they were not run (session "
            f"{self.session_id}). Raise max_cost= or run fewer tasks; running tasks "
            "finished normally")
        for chunk in chunks:
            for target in chunk.targets:
                deliver(target, "fail", error)
        with self._lock:
            self.counters.tasks_done += tasks
            self.counters.tasks_failed += tasks
        self.display.print(f"starburst: {error}", stream="stderr")

    def _launch(self, count: int) -> None:
        try:
            ids = self.backend.launch(count, self.spec)
        except StarburstError:
            with self._lock:
                self.scheduler.launched([], count)
            raise
        # Each worker's own rate (a Spot session's On-Demand fallbacks cost more),
        # so the live spend and the budget count what it really costs.
        rates = {w: r / 3600.0 for w in ids if (r := self.backend.rate_of(w)) is not None}
        with self._lock:
            self.scheduler.launched(ids, count, time.monotonic(), rates)
            self.counters.workers_launched += len(ids)

    def _watch_workers(self) -> None:
        exits = self.backend.poll()
        if not exits:
            return
        actions: list[Any] = []
        with self._lock:
            for ex in exits:
                self.counters.worker_exits.append(ex)
                held = any(r.holder == ex.worker for r in self.scheduler.chunks.values())
                actions.extend(self.scheduler.worker_exited(ex))
                # A Spot reclaim says nothing about whether workers can start.
                if (not held and ex.worker not in self._productive
                        and self.scheduler.outstanding
                        and (ex.exit_code not in (0, None, EXIT_STUCK)
                             or ex.stop_code == FAILED_TO_START)
                        and ex.stop_code != SPOT_INTERRUPTION):
                    self._futile_exits += 1
            futile = self._futile_exits
        self._act(actions)
        if futile >= _FUTILE_EXITS_PER_WORKER * self.workers:
            last = exits[-1]
            raise ExecutorBroken(
                f"{futile} workers in a row exited before running anything; the last "
                f"{describe_exit(last)}. See its output above (or `starburst logs "
                f"{self.session_id}`) for the cause, such as a missing module or credentials")

    def _check_dead_letters(self) -> None:
        """Fail chunks the queue gave up on (the backstop behind max_attempts)."""
        now = time.monotonic()
        if now < self._next_dead_check:
            return
        self._next_dead_check = now + _DEAD_CHECK
        dead = self.transport.dead.receive(max_messages=self.transport.dead.max_batch,
                                           wait_seconds=0.0, visibility=60.0)
        for msg in dead:
            try:
                task = protocol.decode(msg.body, self.key)
            except ProtocolError as exc:
                # Set aside by whoever refused it (a worker's "bad" notice, or this
                # client's refusal), which said so and counted it: not again per scan.
                log.debug("starburst: a refused message lies in the dead-letter queue: %s", exc)
                continue
            if not isinstance(task, protocol.TaskMessage) or task.session != self.session_id:
                continue
            with self._lock:
                first = self.scheduler.cancel(task.chunk)
                chunk = self._chunks.pop(task.chunk, None) if first else None
                self.scheduler.forget(task.chunk)
            if chunk is None:
                continue
            error = WorkerLostError(
                f"chunk {task.chunk} was received {msg.receives} or more times without a "
                f"result and the queue moved it to the dead-letter queue (session "
                f"{self.session_id}); its workers keep failing before reporting. Check "
                "the worker logs; raise Settings.max_receives only if leases are too short",
                attempts=msg.receives)
            for target in chunk.targets:
                deliver(target, "fail", error)
            with self._lock:
                self.counters.tasks_done += chunk.undelivered
                self.counters.tasks_failed += chunk.undelivered
        if dead:
            self.transport.dead.delete([m.receipt for m in dead])

    def _beat(self) -> None:
        now = time.monotonic()
        if now >= self._next_beat:
            self._next_beat = now + self.settings.client_heartbeat
            try:
                self.transport.store.put(client_heartbeat_key(self.session_id),
                                         f"{time.time():.3f}".encode())
            except _STORE_ERRORS as exc:
                # Workers wait minutes (client_stale) for a beat: a full disk
                # now is retried next beat rather than breaking the session.
                log.warning("starburst: cannot write the client heartbeat of %s (retried "
                            "in %g s): %s", self.session_id, self.settings.client_heartbeat,
                            exc)

    # -- the loop -----------------------------------------------------------
    def _idle(self) -> bool:
        with self._lock:
            return (not self._submits and not self._outbox
                    and self.scheduler.outstanding == 0)

    def _loop(self) -> None:
        try:
            while True:
                self._wake.wait(self.settings.poll)
                self._wake.clear()
                if self._aborted is not None or self._broken is not None:
                    break
                self._drain_submits()
                self._cancel_abandoned()
                self._flush_outbox()
                self._watch_workers()
                with self._lock:
                    actions = self.scheduler.tick(time.monotonic())
                self._act(actions)
                self._beat()
                self._check_dead_letters()
                self._show_progress()
                if self._detaching and not self._submits and not self._outbox:
                    break
                if self._closing and self._idle():
                    break
        except Exception as exc:
            self._break(exc)
        finally:
            self._teardown()

    def tasks_finished(self) -> int:
        """Tasks finished so far, counting those of chunks still running (what the
        progress bar shows: tasks as they finish, not chunks)."""
        with self._lock:
            return self.counters.tasks_done + sum(self._partial.values())

    def _show_progress(self) -> None:
        c = self.counters
        if c.tasks_total:
            extra = ""
            if self.session.hourly_rate > 0:
                extra = f"{format_money(self.cost().spent, 3)} so far"
            self.display.update(completed=self.tasks_finished(), total=c.tasks_total,
                                workers=len(self.scheduler.alive), extra=extra)

    def cost(self) -> CostReport:
        """The session's cost so far, or final once it has ended."""
        rate = self.session.hourly_rate
        with self._lock:
            live = self.scheduler.worker_cost(time.monotonic(), rate / 3600.0)
            computed, seconds = computed_cost(self.counters.worker_exits, rate)
        finished = self._ended
        return CostReport(backend=self.options.backend, workers=self.workers, hourly_rate=rate,
                          estimated_hourly=self.workers * rate,
                          spent=computed if finished else max(live, computed),
                          computed=computed, worker_seconds=seconds, finished=finished,
                          price_note=self.session.price_note)

    def _break(self, exc: BaseException) -> None:
        if self._broken is None:
            self._broken = exc if isinstance(exc, ExecutorBroken) else ExecutorBroken(
                f"the executor stopped working: {type(exc).__name__}: {exc}")
            self._broken.__cause__ = exc if exc is not self._broken else None
            self._wake.set()

    def _fail_everything(self, error: BaseException) -> None:
        self._submits_fail(error)
        with self._outbox_lock:
            outbox, self._outbox = self._outbox, []
        with self._lock:
            chunks = list(self._chunks.values()) + outbox
            self._chunks.clear()
            for chunk in chunks:
                self.scheduler.cancel(chunk.id)
                self.scheduler.forget(chunk.id)
        for chunk in chunks:
            for target in chunk.targets:
                deliver(target, "fail", error)
            with self._lock:
                self.counters.tasks_done += chunk.undelivered
                self.counters.tasks_failed += chunk.undelivered

    def _submits_fail(self, error: BaseException) -> None:
        while self._submits:
            future, *_ = self._submits.popleft()
            if future.set_running_or_notify_cancel():
                future.set_exception(error)

    def _collect_exits(self) -> None:
        """Gather the stopped workers' exits (their timestamps make the cost).

        A billed backend reports a stop with a delay (Fargate: StopTask to
        STOPPED takes seconds), so it is polled until every launched worker
        is accounted for, for at most :data:`_EXIT_WAIT` seconds.
        """
        deadline = time.monotonic() + (_EXIT_WAIT if self.session.hourly_rate > 0 else 0.0)
        while True:
            for ex in self.backend.poll():
                with self._lock:
                    self.counters.worker_exits.append(ex)
                    self.scheduler.worker_stopped(ex)
            seen = {ex.worker for ex in self.counters.worker_exits}
            expected = self.counters.workers_launched + self._adopted_workers
            if len(seen) >= expected or time.monotonic() >= deadline:
                missing = expected - len(seen)
                if missing > 0 and self.session.hourly_rate > 0:
                    self.display.print(
                        f"starburst: {missing} workers had not reported their stop time "
                        "yet; their cost is missing from the figure below", stream="stderr")
                return
            time.sleep(0.25)

    def _write_record(self, state: str) -> None:
        self.record.state = state
        self.transport.store.put(record_key(self.session_id), self.record.to_bytes())

    def _adopt(self) -> int:
        """Take a session over: one future per recorded task; committed results first.

        Returns the number of manifests read (new chunks continue after them).
        """
        manifests = load_manifests(self.transport.store, self.session_id)
        index = 0
        while True:
            try:
                self.transport.store.get(chunk_manifest_key(self.session_id, index))
            except KeyError:
                break
            index += 1
        for cid in sorted(manifests):
            futures: list[Future[Any]] = []
            for tid in manifests[cid]:
                future: Future[Any] = Future()
                future.set_running_or_notify_cancel()
                self.attached_futures[tid] = future
                futures.append(future)
            chunk = _Chunk(cid, [], list(futures), ids=list(manifests[cid]))
            self._chunks[cid] = chunk
            self.scheduler.submit(cid, len(futures))
            self.counters.tasks_total += len(futures)
            self.counters.chunks_sent += 1  # by the previous client
        # The previous client's workers: those still running count toward the
        # workers wanted (no second set is started beside them) and are stopped
        # with this client's; a stale start notice of one that ended frees its
        # chunk at once.
        alive, exits = self.backend.adopted()
        self.scheduler.adopt(alive, exits, time.monotonic())
        self._productive.update(alive)
        self._adopted_workers = len(alive)
        next_id = max(manifests, default=-1) + 1
        self._chunk_ids = itertools.count(next_id)
        self._task_ids = itertools.count(max(self.attached_futures, default=-1) + 1)
        for cid in sorted(manifests):
            try:
                committed = self.transport.store.get(result_commit_key(self.session_id, cid))
            except KeyError:
                continue
            self._on_notice(committed)
        self._write_record("running")
        return index

    def detach(self) -> None:
        """Send everything queued, record the session as submitted, leave the rest running."""
        self._detaching = True
        self._wake.set()
        self._loop_thread.join()

    def _teardown(self) -> None:
        if self._detaching and self._broken is None:
            # Its last poll hands back what it brings; after this, the notices
            # wait for the attaching client.
            self._receiver.join(timeout=10.0)
            self._write_record("submitted")
            self._ended = True
            self.backend.detach()
            self.display.close()
            name = self.backend.name
            where = "" if name == "local" else f", backend={name!r}"
            # A local session's directory stays until then (or its deadline and
            # `starburst cleanup --local --orphans`).
            rest = (f"; `starburst cleanup --local {self.session_id}` removes it unread"
                    if name == "local" else "")
            self.display.print(
                f"starburst: session {self.session_id} runs on without this client; "
                f"collect its results with starburst.attach({self.session_id!r}{where})"
                f"{rest}", stream="stderr")
            return
        error = self._broken or self._aborted
        try:
            self.backend.stop()
            self._collect_exits()
            self.backend.close()
        except Exception as exc:
            log.error("starburst: stopping workers of %s failed: %s", self.session_id, exc)
        if error is not None:
            self._fail_everything(error)
        self._receiver.join(timeout=5.0)
        self._ended = True
        self._show_progress()
        self.display.close()
        if self.session.hourly_rate > 0:
            self.display.print(f"starburst: session {self.session_id}: {self.cost()}",
                               stream="stderr")
        try:
            self.transport.store.delete_prefix(session_prefix(self.session_id))
            self.transport.destroy()
            self.transport.close()
        except Exception as exc:
            log.error("starburst: cleaning up session %s failed: %s", self.session_id, exc)

    # -- API used by the executor -------------------------------------------
    @property
    def broken(self) -> BaseException | None:
        """Why the executor broke, if it did."""
        return self._broken

    def close(self, *, wait: bool, cancel_futures: bool) -> None:
        """Finish outstanding work (unless aborted), then stop workers and clean up."""
        if cancel_futures:
            while self._submits:
                future = self._submits.popleft()[0]
                future.cancel()
                future.set_running_or_notify_cancel()
            with self._outbox_lock:
                queued = list(self._outbox)
            with self._lock:
                queued += [c for c in self._chunks.values()
                           if (rec := self.scheduler.chunks.get(c.id)) is not None
                           and rec.state is ChunkState.PENDING]
            for chunk in queued:
                for target in chunk.targets:
                    if isinstance(target, Future):
                        target.cancel()  # succeeds only while it has not started
        self._closing = True
        self._wake.set()
        if wait:
            self._loop_thread.join()

    def abort(self, reason: BaseException) -> None:
        """Stop now: cancel everything, stop every worker, clean up."""
        self._aborted = ExecutorBroken(f"the executor was aborted ({type(reason).__name__})")
        self._closing = True
        self._wake.set()
        self._loop_thread.join(timeout=30.0)

    def _on_output(self, worker: str, stream: str, line: str) -> None:
        if line.startswith("[starburst worker "):
            log.debug("%s", line)
            return
        self.display.print(line, stream=stream)

    def status(self) -> dict[str, Any]:
        """Counts of workers, chunks and tasks, for ``Executor.status()``."""
        with self._lock:
            chunk_counts = self.scheduler.counts()
            c = self.counters
            return {
                "session_id": self.session_id,
                "backend": self.options.backend,
                "workers": len(self.scheduler.alive),
                "workers_launched": c.workers_launched,
                "chunks_pending": chunk_counts["pending"] + len(self._outbox),
                "chunks_running": chunk_counts["running"],
                "chunks_done": c.chunks_sent - self.scheduler.outstanding,
                "tasks_total": c.tasks_total,
                "tasks_done": c.tasks_done - c.tasks_failed,
                "tasks_failed": c.tasks_failed,
                "tasks_pending": c.tasks_total - c.tasks_done - c.tasks_cancelled,
                "tasks_cancelled": c.tasks_cancelled,
                "messages_refused": c.messages_refused,
                "attempts": self.scheduler.total_attempts,
                "elapsed": round(time.time() - self._started_at, 3),
            }
