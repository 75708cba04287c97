"""A joblib parallel backend that runs ``joblib.Parallel`` work on starburst workers.

Importing this module registers the backend ``"starburst"``, so everything
built on joblib (scikit-learn's ``n_jobs=``, for one) runs on starburst by
changing the joblib configuration only::

    import joblib
    import starburst.joblib  # registers backend="starburst"

    with joblib.parallel_config(backend="starburst", n_jobs=50, cpu=2, memory="4GB"):
        GridSearchCV(model, grid, cv=5).fit(X, y)

Keyword arguments of ``parallel_config`` other than joblib's own are
:class:`starburst.Executor` options. ``backend`` is joblib's keyword, so the
starburst backend is chosen with ``starburst_backend="fargate"`` (or by
:func:`starburst.plan`, whose options are the defaults here). ``n_jobs``
sets the worker count: a positive number is the number of workers, ``-1``
(or unset) the executor's default (``workers=`` if given, else one per core
locally), ``-2`` one fewer, and so on.

How joblib's calls map onto the executor:

* One session per ``parallel_config(backend="starburst")`` block: the first
  ``Parallel`` call in it (``configure``) opens an executor, every later call
  in the block reuses it and its warm workers (``terminate``, at the end of
  each call, keeps it), and leaving the block shuts it down, stopping its
  workers. joblib tells a backend nothing when a block ends, so importing
  this module wraps ``parallel_config.unregister`` (what its ``__exit__``
  calls) to close a starburst backend the block held. A backend used
  outside any block (``Parallel(backend="starburst")``) closes its session
  at the end of each call. ``n_jobs=1`` runs in this process, as on every
  joblib backend.
* Each joblib batch is one :meth:`Executor.submit`. Large arguments of the
  batch's calls (scikit-learn's ``X`` and ``y``) are handed to the executor
  as top-level arguments, so it stores each once per session by content
  hash and every batch refers to the stored copy instead of carrying it.
* joblib dispatches the next batch from a finished batch's done-callback.
  A plain call's results are then taken by joblib's main thread blocking on
  each future, so the call ends the moment its last batch does; with
  callbacks (``supports_retrieve_callback``, kept for ``timeout=`` and
  ``return_as="generator"``) joblib polls every 10 ms, which made a small
  call last 20 ms when its batches took 11. A task's exception is raised
  with its own type.
* When a task fails, joblib calls ``abort_everything``: the executor is
  aborted at once (queued work dropped, workers stopped) instead of running
  the rest of the input for results nobody will read.

With ``seed=``, each *batch* gets the random stream of its submission
position in the session (counted across the block's ``Parallel`` calls);
pass ``batch_size=`` (an integer) to ``Parallel`` when results must be
reproducible, since joblib's automatic batch size depends on timing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

# joblib ships neither type hints nor a py.typed marker, so mypy sees it as
# Any. The ignore also covers joblib not being installed where mypy runs, and
# stays quiet (unused-ignore) if pyproject gains an override for joblib.
import joblib  # type: ignore[import-untyped, import-not-found, unused-ignore]
from joblib.parallel import (  # type: ignore[import-untyped, import-not-found, unused-ignore]
    AutoBatchingMixin,
    FallbackToBackend,
    ParallelBackendBase,
    SequentialBackend,
)

from .api import current_plan
from .backends import get_backend_class
from .client import SHARE_THRESHOLD
from .exceptions import ConfigurationError
from .executor import Executor
from .options import ExecutorOptions
from .wire.serialization import sizeof

__all__ = ["BACKEND_NAME", "StarburstBackend", "register"]

#: The name under which :func:`register` makes the backend known to joblib.
BACKEND_NAME = "starburst"

# Arguments of the executor that joblib's ``parallel_config`` cannot pass
# under their own name, because joblib uses it.
_RENAMED = {"starburst_backend": "backend"}


def _run_batch(batch: Callable[[], Any], *shared: Any) -> Any:
    """Run one joblib batch on a worker.

    ``shared`` are the batch's large arguments. They are not used here: they
    travel as top-level arguments so the client stores each once by content
    hash; the references to them inside ``batch`` are pickled as references
    to that stored copy and resolve to the same objects on the worker.
    """
    del shared
    return batch()


def _large_arguments(batch: Any) -> tuple[Any, ...]:
    """The distinct arguments of a joblib batch big enough to store once per session.

    A joblib ``BatchedCalls`` lists its calls as ``(function, args, kwargs)``
    in ``items``; any other callable has none to offer.
    """
    items = getattr(batch, "items", None)
    if not isinstance(items, list):
        return ()
    found: dict[int, Any] = {}
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 3):
            continue
        _, args, kwargs = item
        values = list(args) if isinstance(args, (tuple, list)) else []
        if isinstance(kwargs, dict):
            values.extend(kwargs.values())
        for value in values:
            if id(value) not in found and sizeof(value) >= SHARE_THRESHOLD:
                found[id(value)] = value
    return tuple(found.values())


# joblib's classes are untyped (Any to mypy): subclassing them is the point.
class StarburstBackend(AutoBatchingMixin, ParallelBackendBase):  # type: ignore[misc]
    """joblib backend running each batch of a ``Parallel`` call as a starburst task.

    Args:
        nesting_level: set by joblib (how deep in nested ``Parallel`` calls).
        inner_max_num_threads: not supported (joblib checks
            ``supports_inner_max_num_threads`` before passing it).
        **executor_options: :class:`starburst.Executor` options, on top of
            those of :func:`starburst.plan`; ``starburst_backend`` names the
            starburst backend (``"local"``, ``"fargate"``).

    Raises:
        ConfigurationError: an executor option is invalid (raised here, when
            ``parallel_config`` builds the backend, not at the first task).
    """

    # ``timeout=`` and ``return_as="generator"`` work: such calls take their
    # results through future callbacks (see ``supports_retrieve_callback``).
    supports_timeout = True
    supports_return_generator = True
    # Workers are other processes (or machines): no shared memory, so joblib
    # falls back to threads for ``require="sharedmem"``.
    uses_threads = False
    supports_sharedmem = False
    # ``n_jobs`` unset means every worker the executor would run by default.
    default_n_jobs = -1
    # A batch round trip through the queue and store costs milliseconds
    # locally, tens to hundreds in the cloud (SQS, S3): aim for batches long
    # enough to hide it, short enough that workers finish together.
    MIN_IDEAL_BATCH_DURATION = 0.5
    MAX_IDEAL_BATCH_DURATION = 5.0

    def __init__(self, nesting_level: int | None = None,
                 inner_max_num_threads: int | None = None, **executor_options: Any) -> None:
        super().__init__(nesting_level=nesting_level,
                         inner_max_num_threads=inner_max_num_threads)
        options = {**current_plan()}
        for name, value in executor_options.items():
            options[_RENAMED.get(name, name)] = value
        self._options = options
        # Validate now: a typo fails in ``parallel_config``, not in a worker.
        self._validated = ExecutorOptions.resolve(**options)
        get_backend_class(self._validated.backend, self._validated.extra)
        self._lock = threading.Lock()
        self._executor: Executor | None = None
        # The workers= the open executor was asked for (None: its default).
        self._requested: int | None = None
        self._session_ids: list[str] = []
        self.parallel: Any = None

    def __reduce__(self) -> tuple[Any, ...]:
        # An open executor (threads, queues) cannot travel: a copy of the
        # backend opens its own from the same options.
        return (_rebuild, (self.nesting_level, self._options))

    # -- what joblib asks ---------------------------------------------------
    @property
    def supports_retrieve_callback(self) -> bool:
        """Whether the running ``Parallel`` call takes results through callbacks.

        With callbacks, joblib's main thread looks for finished batches every
        10 ms (``time.sleep(0.01)`` in ``Parallel._retrieve``), so a small call
        ends on a 10 ms tick: 20 ms for a call whose batches took 11. Without,
        it blocks on each future in turn and wakes the moment it resolves.
        Callbacks stay for the calls that need them (``timeout=``, generators);
        the next batch is dispatched from the future's callback either way.
        """
        parallel = self.parallel
        if parallel is None:
            return True
        return bool(getattr(parallel, "return_generator", True)
                    or getattr(parallel, "timeout", None) is not None)

    def retrieve_result(self, out: Future[Any], timeout: float | None = None) -> Any:
        """The batch's list of results (a call without callbacks), blocking until done."""
        return out.result(timeout)

    @property
    def executor(self) -> Executor | None:
        """The executor of the current ``Parallel`` call, or None between calls."""
        return self._executor

    @property
    def session_ids(self) -> list[str]:
        """The sessions this backend opened, oldest first (for ``starburst logs``)."""
        return list(self._session_ids)

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        """The number of workers that run batches at once for ``n_jobs``.

        Exact while an executor is open (its worker count may be capped by a
        quota or ``max_hourly_cost``); otherwise the count asked for.
        """
        requested = self._requested_workers(n_jobs)
        executor = self._executor
        if executor is not None and requested == self._requested:
            return executor.workers
        if requested is not None:
            return requested
        return self._default_workers()

    def configure(self, n_jobs: int | None = 1, parallel: Any = None, prefer: str | None = None,
                  require: str | None = None, **joblib_options: Any) -> int:
        """Open the executor for a ``Parallel`` call; return its worker count.

        ``joblib_options`` (``max_nbytes``, ``mmap_mode``, ``temp_folder``...)
        concern joblib's own process pools and do not apply here.
        """
        del prefer, require, joblib_options
        requested = self._requested_workers(n_jobs)
        if requested == 1:
            # joblib runs n_jobs=1 in this process anyway: open nothing.
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        self.parallel = parallel
        workers = self._open(requested).workers
        if workers == 1:
            # Capped to one (quota, max_hourly_cost): joblib would run the
            # call here and never terminate this backend, so close it now.
            self.close()
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        return workers

    def submit(self, func: Callable[[], Any],
               callback: Callable[[Future[Any]], object] | None = None) -> Future[Any]:
        """Run one batch on a worker; ``callback(future)`` runs when it is done.

        Raises:
            RuntimeError: the backend is not configured (no ``Parallel`` call
                is running): a late callback never reopens a closed session.
        """
        executor = self._executor
        if executor is None:
            raise RuntimeError("the starburst joblib backend has no open executor: "
                               "submit() runs only inside a Parallel call")
        future: Future[Any] = executor.submit(_run_batch, func, *_large_arguments(func))
        if callback is not None:
            future.add_done_callback(callback)
        return future

    def apply_async(self, func: Callable[[], Any],
                    callback: Callable[[Future[Any]], object] | None = None) -> Future[Any]:
        """:meth:`submit` under the name joblib < 1.5 calls."""
        return self.submit(func, callback)

    def retrieve_result_callback(self, future: Future[Any]) -> Any:
        """The batch's list of results, or its task's exception raised again."""
        return future.result()

    def terminate(self) -> None:
        """End a ``Parallel`` call: keep the session for the block's next call, or close it.

        Inside a ``parallel_config`` block that holds this backend the
        executor stays open (the block's end closes it, see :meth:`close`):
        starting a session per call made many small calls, and libraries
        that make several calls per fit, pay worker start-up each time.
        """
        if _active_backend() is self:
            self.reset_batch_stats()
            return
        self.close()

    def close(self) -> None:
        """Shut the executor down (its workers stop); the next call opens a new one."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        self.reset_batch_stats()

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """Drop all outstanding work at once: a task failed and joblib will raise.

        The executor is aborted (workers stopped, queued batches dropped);
        with ``ensure_ready`` a fresh one is opened for the calls that follow.
        """
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            # Executor.shutdown() would let the batches already queued run to
            # the end; aborting the session stops them (their futures fail
            # with ExecutorBroken, which joblib, aborting, never reads).
            executor.abort()
            executor.shutdown(wait=True)
        self.reset_batch_stats()
        if ensure_ready:
            self._open(self._requested)

    # -- the executor ---------------------------------------------------------
    def _requested_workers(self, n_jobs: int | None) -> int | None:
        """Map joblib's ``n_jobs`` to ``workers=`` (None: the executor's default)."""
        if n_jobs is None:
            n_jobs = self.default_n_jobs
        if isinstance(n_jobs, bool) or not isinstance(n_jobs, int):
            raise ConfigurationError(f"n_jobs={n_jobs!r} must be an integer")
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs > 0:
            return n_jobs
        if n_jobs == -1:
            return self._validated.workers
        return max(1, self._default_workers() + 1 + n_jobs)

    def _default_workers(self) -> int:
        """The executor's worker count when ``n_jobs`` does not set one."""
        if self._validated.workers is not None:
            return self._validated.workers
        if self._validated.backend == "local":
            return self._validated.default_local_workers()
        # A cloud backend's default depends on its account's quota: only an
        # open executor knows it.
        return self._open(None).workers

    def _open(self, workers: int | None) -> Executor:
        """The open executor asked for ``workers``, opening (or replacing) it."""
        with self._lock:
            executor = self._executor
            if executor is not None and workers == self._requested:
                return executor
            self._executor = None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        fresh = Executor(**{**self._options, "workers": workers})
        with self._lock:
            if self._executor is not None:
                # Another thread opened one meanwhile: keep it.
                kept = self._executor
            else:
                self._executor, self._requested, kept = fresh, workers, fresh
                self._session_ids.append(fresh.session_id)
        if kept is not fresh:
            fresh.shutdown(wait=True)
        return kept


def _rebuild(nesting_level: int | None, options: dict[str, Any]) -> StarburstBackend:
    """Unpickle a :class:`StarburstBackend` (see its ``__reduce__``)."""
    renamed = {("starburst_backend" if k == "backend" else k): v for k, v in options.items()}
    return StarburstBackend(nesting_level=nesting_level, **renamed)


def _active_backend() -> Any:
    """The backend the current thread's joblib configuration holds (None outside blocks)."""
    config = getattr(joblib.parallel._backend, "config", None)
    return config.get("backend") if isinstance(config, dict) else None


def _close_on_unregister(unregister: Callable[[Any], None]) -> Callable[[Any], None]:
    """Wrap ``parallel_config.unregister`` to close the starburst backend its block leaves.

    A nested block that sets no backend of its own holds its parent's: the
    backend is closed only when the configuration restored no longer holds it.
    """
    def wrapped(self: Any) -> None:
        leaving = getattr(self, "parallel_config", {}).get("backend")
        unregister(self)
        if isinstance(leaving, StarburstBackend) and _active_backend() is not leaving:
            leaving.close()

    wrapped._starburst_closes = True  # type: ignore[attr-defined]
    wrapped.__doc__ = unregister.__doc__
    return wrapped


def register() -> None:
    """Make ``backend="starburst"`` known to joblib (done on import).

    Also wraps ``joblib.parallel_config.unregister`` (once) so that leaving a
    block closes the session its ``Parallel`` calls shared.
    """
    joblib.register_parallel_backend(BACKEND_NAME, StarburstBackend)
    config_class = joblib.parallel.parallel_config
    if not getattr(config_class.unregister, "_starburst_closes", False):
        config_class.unregister = _close_on_unregister(config_class.unregister)


register()
