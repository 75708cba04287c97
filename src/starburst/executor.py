"""``starburst.Executor``: a :class:`concurrent.futures.Executor` that bursts.

Data flow (one protocol for every backend)::

    submit(fn, *args) / map(fn, items)
        |  tasks grouped into chunks; function and large arguments stored once
        v
    tasks queue (SQLite | SQS)  ------------------->  worker (python -m starburst.worker)
        ^  redeliver / discard                           |  lease chunk, run tasks,
        |                                                |  heartbeat extends lease
    scheduler (pure state machine)                       v
        ^  start / done / release notices          store (dir | S3) for large
        |                                          payloads and results
    results queue  <-------------------------------------+
        |
        v
    concurrent.futures.Future / ordered map results, progress bar

Futures are the standard library's own, so ``wait``, ``as_completed``,
callbacks and ``cancel`` behave as documented there. ``map`` consumes its
input lazily with a bounded number of chunks in flight and yields results
in order.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor as _StdExecutor
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from .chunking import ChunkSizer
from .client import Client, MapBlock, Target, TaskSpec, outcome_value
from .cost import CostReport
from .exceptions import ConfigurationError, ExecutorBroken
from .options import ExecutorOptions
from .settings import Settings

__all__ = ["Executor", "Status"]

T = TypeVar("T")

# Chunks a map keeps in flight per worker: enough that every worker has a
# next chunk queued while it runs one, few enough that memory stays bounded
# on an endless generator.
_WINDOW_PER_WORKER = 4


@dataclass(frozen=True)
class Status:
    """A snapshot of a session, from :meth:`Executor.status`."""

    session_id: str
    backend: str
    workers: int
    workers_launched: int
    chunks_pending: int
    chunks_running: int
    chunks_done: int
    tasks_total: int
    tasks_done: int
    tasks_failed: int
    tasks_pending: int
    attempts: int
    elapsed: float
    tasks_cancelled: int = 0
    #: Queue messages refused unread: their tag did not match the session key
    #: (forged, altered or of another session), or they were malformed. Counted
    #: on the client and on the workers (which report each one).
    messages_refused: int = 0


def _length(iterables: Iterable[Any]) -> int | None:
    """The shortest length of sized iterables, or None when one has no len()."""
    try:
        return min(len(it) for it in iterables)
    except TypeError:
        return None


def new_session_id() -> str:
    """A sortable, unique session id: ``sb-YYYYmmdd-HHMMSS-xxxxxx``."""
    return f"sb-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


class Executor(_StdExecutor):
    """Run Python functions on workers: local processes or AWS Fargate tasks.

    Options left out (or None) come from ``STARBURST_<OPTION>``, then
    ``[tool.starburst]`` in the project's pyproject.toml, then the user config
    file, then the defaults below (:mod:`starburst.config_files`): backend,
    workers, cpu, memory, max_attempts, task_timeout, max_cost,
    max_hourly_cost, chunksize, seed, and backend options such as Fargate's
    ``region`` or ``platform`` (those only when that backend runs).

    The constructor takes :class:`~concurrent.futures.ProcessPoolExecutor`'s
    arguments unchanged: ``Executor(4)`` and ``Executor(max_workers=4)`` are
    ``workers=4``; ``mp_context``, ``initializer``, ``initargs`` and
    ``max_tasks_per_child`` are accepted and checked here.

    Args:
        backend: ``"local"`` (default: processes on this machine) or
            ``"fargate"``; an int here is ``max_workers``.
        workers: number of workers; None means one per core locally and
            10 on Fargate (capped by quota). Locally at most
            :func:`~starburst.options.local_worker_cap` (8 per core, at least
            32): more are capped with a :class:`RuntimeWarning`.
        max_workers: ``ProcessPoolExecutor``'s name for ``workers``.
        mp_context: a :mod:`multiprocessing` context, accepted on the local
            backend for drop-in compatibility; it changes nothing there, since
            local workers are always fresh interpreters (like ``"spawn"``):
            nothing set up in this process is inherited. Refused elsewhere.
        initializer: called once in each process that runs tasks, before its
            first task, with ``initargs``.
        initargs: a tuple of arguments for ``initializer``.
        max_tasks_per_child: tasks a worker process runs before a fresh one
            replaces it (None: no limit).
        cpu: vCPUs per worker (Fargate sizes; default 1).
        memory: memory per worker, e.g. ``"8GB"`` (= 8 GiB; default 2 GiB).
        chunksize: tasks per chunk for ``map``; None chooses automatically.
        max_attempts: how many times a task may lose its worker before it
            fails with :class:`~starburst.WorkerLostError` (default 3).
        task_timeout: seconds a task may run before it fails with
            :class:`~starburst.TaskTimeoutError` (not retried).
        idle_timeout: seconds a worker waits for work before it exits
            (None: ``settings.idle_timeout``, 60 by default).
        progress: show a progress bar (None: only on a terminal).
        detached: keep working after this client exits: ``shutdown()``
            (or leaving the ``with`` block) sends what is queued and returns;
            workers go on until the work is done or ``session_timeout``;
            :func:`starburst.attach` collects the results from any process.
        session_timeout: seconds a detached session may run (default 24 h, at most a
            week, so that its queue messages and run data outlive it).
        settings: protocol intervals (tests use short ones).
        max_cost: hard cap in dollars for the run (billed backends): once
            spent plus projected cost would exceed it, no worker starts,
            running tasks finish and the rest fail with
            :class:`~starburst.BudgetExceededError`.
        max_hourly_cost: cap in dollars per hour: fewer workers run.
        seed: give every task an independent, reproducible random stream
            derived from this seed and the task's position (see
            :mod:`starburst.seeding`): results are identical across runs,
            backends, worker counts and chunk sizes.
        debug: debug mode. The first worker whose task raises stays alive for
            ``debug_keepalive`` seconds after reporting, and the client prints how
            to get into it: on Fargate (tasks start with ECS Exec enabled) the
            ``aws ecs execute-command ...`` command; locally its process id
            (``py-spy dump --pid N``). While it waits it takes no work.
        debug_keepalive: seconds that worker stays alive (default 600).
        **backend_options: options of the backend (``region``, ``image``...).
            Fargate's environment: ``env="auto"`` (the default when no image
            is configured: the image of this environment is built without
            Docker and pushed to ECR, once per environment), ``env="off"``
            (run ``image=`` as is), ``base_image=``, ``packages=["name==1.0"]``
            (extra pins), ``platform="x86_64"|"arm64"``. The user's own code
            travels with each session either way.
    """

    def __init__(self, backend: str | int | None = None, *, workers: int | None = None,
                 cpu: float | None = None, memory: str | int | float | None = None,
                 chunksize: int | None = None,
                 max_attempts: int | None = None, task_timeout: float | None = None,
                 idle_timeout: float | None = None, progress: bool | None = None,
                 detached: bool = False, settings: Settings | None = None,
                 max_cost: float | None = None, max_hourly_cost: float | None = None,
                 seed: int | None = None, session_timeout: float = 24 * 3600.0,
                 debug: bool = False, debug_keepalive: float = 600.0,
                 max_workers: int | None = None, mp_context: Any = None,
                 initializer: Callable[..., object] | None = None,
                 initargs: tuple[Any, ...] = (), max_tasks_per_child: int | None = None,
                 **backend_options: Any) -> None:
        if isinstance(backend, int) and not isinstance(backend, bool):
            # ProcessPoolExecutor(4): an int first argument is max_workers.
            if max_workers is not None and max_workers != backend:
                raise ConfigurationError(
                    f"Executor({backend}, max_workers={max_workers!r}): the first argument "
                    "is max_workers when it is a number; pass one of them")
            backend, max_workers = None, backend
        elif backend is not None and not isinstance(backend, str):
            raise ConfigurationError(
                f"Executor({backend!r}): the first argument is the backend name (such as "
                "'local' or 'fargate') or, as in ProcessPoolExecutor, max_workers (a "
                f"positive integer), not {type(backend).__name__}")
        self._options = ExecutorOptions.resolve(
            backend=backend, workers=workers, cpu=cpu, memory=memory, chunksize=chunksize,
            max_attempts=max_attempts, task_timeout=task_timeout, idle_timeout=idle_timeout,
            progress=progress, detached=detached, settings=settings, max_cost=max_cost,
            max_hourly_cost=max_hourly_cost, seed=seed, session_timeout=session_timeout,
            debug=debug, debug_keepalive=debug_keepalive, max_workers=max_workers,
            mp_context=mp_context, initializer=initializer, initargs=initargs,
            max_tasks_per_child=max_tasks_per_child, **backend_options)
        self._session_id = new_session_id()
        self._shutdown_lock = threading.Lock()
        self._shutdown = False
        self._client = Client(self._options, self._session_id)

    # -- properties -------------------------------------------------------
    @property
    def session_id(self) -> str:
        """This session's id (names its queues, store prefix, tags and logs)."""
        return self._session_id

    @property
    def workers(self) -> int:
        """The number of workers this executor runs at most."""
        return self._client.workers

    def cost(self) -> CostReport:
        """What the session costs: the rate before, spend so far, computed cost after.

        After shutdown, ``computed`` comes from each worker's start and stop
        times (per second, one-minute minimum): computed from task runtimes,
        not read from your bill.
        """
        return self._client.cost()

    def status(self) -> Status:
        """Workers running, chunks and tasks pending/running/done/failed, attempts."""
        return Status(**self._client.status())

    # -- the Executor contract ---------------------------------------------
    def _check_open(self) -> None:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        broken = self._client.broken
        if broken is not None:
            raise ExecutorBroken(f"the executor is broken: {broken}") from broken

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Schedule ``fn(*args, **kwargs)``; return a standard Future."""
        if not callable(fn):
            raise TypeError(f"submit() needs a callable, got {type(fn).__name__}")
        with self._shutdown_lock:
            self._check_open()
            future: Future[T] = Future()
            self._client.enqueue_submit(future, fn, args, kwargs)
        return future

    def map(self, fn: Callable[..., T], *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int | None = None, buffersize: int | None = None,
            return_exceptions: bool = False) -> Iterator[T]:
        """Return an iterator of ``fn(*args)`` over the zipped iterables, in order.

        The input is consumed lazily: at most ``buffersize`` tasks (default:
        four chunks per worker) are in flight, so an endless generator uses
        bounded memory. If the input raises, the exception reaches the caller
        and the rest is cancelled.

        Args:
            fn: the function to call.
            *iterables: argument iterables, zipped as the builtin ``map`` does.
            timeout: seconds from this call after which iterating raises
                :class:`TimeoutError`.
            chunksize: tasks per chunk (default: the executor's, else automatic).
            buffersize: most tasks in flight at once.
            return_exceptions: yield a failed task's exception object (the
                original, with its remote traceback as ``__cause__``) in its
                place instead of raising it, so one bad item loses no others.
        """
        if not iterables:
            raise TypeError("map() needs at least one iterable")
        return self._map(fn, zip(*iterables, strict=False), _length(iterables), timeout,
                         chunksize, buffersize, return_exceptions)

    def starmap(self, fn: Callable[..., T], iterable: Iterable[Iterable[Any]], *,
                timeout: float | None = None, chunksize: int | None = None,
                buffersize: int | None = None,
                return_exceptions: bool = False) -> Iterator[T]:
        """Like :meth:`map`, but each item is the tuple of arguments: ``fn(*item)``."""
        return self._map(fn, (tuple(item) for item in iterable), _length([iterable]),
                         timeout, chunksize, buffersize, return_exceptions)

    def _map(self, fn: Callable[..., T], args: Iterator[tuple[Any, ...]], length: int | None,
             timeout: float | None, chunksize: int | None, buffersize: int | None,
             return_exceptions: bool) -> Iterator[T]:
        if not callable(fn):
            raise TypeError(f"map() needs a callable, got {type(fn).__name__}")
        for name, value in (("chunksize", chunksize), ("buffersize", buffersize)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ConfigurationError(f"{name}={value!r} must be a positive integer or None")
        with self._shutdown_lock:
            self._check_open()
        deadline = None if timeout is None else time.monotonic() + timeout
        sizer = ChunkSizer(length, self.workers, chunksize or self._options.chunksize)
        stream = _MapStream(self, fn, args, sizer, buffersize, length)
        stream.fill()  # start work now, as the standard library's map does
        return stream.results(deadline, return_exceptions)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting work; finish (or cancel) what is queued; clean up.

        Workers are stopped and the session's queues and data removed once
        the outstanding work is done (at once with ``wait=True``, in the
        background otherwise).
        """
        with self._shutdown_lock:
            self._shutdown = True
        if self._options.detached and not cancel_futures:
            # Send what is queued and leave: the workers go on without us.
            self._client.detach()
            return
        self._client.close(wait=wait, cancel_futures=cancel_futures)

    def abort(self) -> None:
        """Stop now: stop every worker, fail what is outstanding, delete the session's data.

        For a failed run whose remaining work is not wanted (what Ctrl-C in a
        ``with`` block does); ``shutdown()`` would wait for it instead.
        """
        with self._shutdown_lock:
            self._shutdown = True
        self._client.abort(KeyboardInterrupt())

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool | None:
        if exc is not None and not isinstance(exc, Exception):
            # KeyboardInterrupt / SystemExit: do not wait for the work; stop now.
            with self._shutdown_lock:
                self._shutdown = True
            self._client.abort(exc)
            return None
        self.shutdown(wait=True)
        return None


class _MapStream:
    """The producer/consumer of one ``map`` call: chunks out, ordered results in."""

    def __init__(self, executor: Executor, fn: Callable[..., Any], args: Iterator[tuple[Any, ...]],
                 sizer: ChunkSizer, buffersize: int | None, length: int | None) -> None:
        self.client = executor._client
        self.fn = fn
        self.args = args
        self.sizer = sizer
        workers = executor.workers
        # Chunks in flight: bounded for a generator (memory), all of them for
        # a sized input (as the standard library's map submits everything).
        if buffersize is not None:
            self.window = max(1, buffersize)
            self.window_tasks = True
        else:
            self.window = _WINDOW_PER_WORKER * workers if length is None else 1 << 62
            self.window_tasks = False
        self.in_flight_tasks = 0
        self.position = 0
        self.blocks: deque[tuple[MapBlock, int]] = deque()
        self.exhausted = False
        self.error: BaseException | None = None
        if length is not None:
            self.client.add_total(length)
        self._counted = length is not None

    def _full(self) -> bool:
        if self.window_tasks:
            return self.in_flight_tasks >= self.window
        return len(self.blocks) >= self.window

    def fill(self) -> None:
        """Submit chunks until the window is full or the input ends."""
        while not self.exhausted and not self._full():
            want = self.sizer.next_size()
            if self.window_tasks:
                want = max(1, min(want, self.window - self.in_flight_tasks))
            batch: list[tuple[Any, ...]] = []
            try:
                for item in itertools.islice(self.args, want):
                    batch.append(item)
            except BaseException as exc:
                # The items read before the failure still run; the error is
                # raised after their results, where the input broke.
                self.exhausted = True
                self.error = exc
            if not batch:
                self.exhausted = True
                return
            if not self._counted:
                self.client.add_total(len(batch))
            block = MapBlock(len(batch))
            first = self.position
            self.position += len(batch)
            tasks: list[TaskSpec] = [(self.client.next_task_id(), self.fn, args, None, first + i)
                                     for i, args in enumerate(batch)]
            targets: list[Target] = [(block, i) for i in range(len(batch))]
            built = self.client.build_chunk(tasks, targets)
            chunk_id = -1
            if built is not None:
                chunk_id, payload_bytes = built
                self.sizer.observe_payload(len(batch), payload_bytes)
            self.blocks.append((block, chunk_id))
            self.in_flight_tasks += len(batch)
            if len(batch) < want or self.error is not None:
                self.exhausted = True
                return

    def results(self, deadline: float | None, return_exceptions: bool = False) -> Iterator[Any]:
        try:
            while self.blocks:
                block, _ = self.blocks[0]
                while not block.done.wait(0.1 if deadline is None
                                          else max(0.0, min(0.1, deadline - time.monotonic()))):
                    if deadline is not None and time.monotonic() >= deadline:
                        raise TimeoutError("map() results did not arrive within timeout")
                    broken = self.client.broken
                    if broken is not None:
                        raise ExecutorBroken(f"the executor broke: {broken}") from broken
                self.blocks.popleft()
                self.in_flight_tasks -= len(block.outcomes)
                self.fill()
                for status, value in block.outcomes:
                    if return_exceptions and status != "ok":
                        try:
                            outcome_value(status, value)
                        except Exception as exc:  # the task's own exception object
                            yield exc
                        continue
                    yield outcome_value(status, value)
                if self.error is not None and not self.blocks:
                    raise self.error
        finally:
            # The consumer stopped early or an error propagates: drop the rest.
            for block, _ in self.blocks:
                for index in range(len(block.outcomes)):
                    if block.outcomes[index][0] == "pending":
                        block.outcomes[index] = ("cancelled", None)
            self.client.cancel_chunks([cid for _, cid in self.blocks if cid >= 0])
            self.blocks.clear()
        if self.error is not None:
            raise self.error
