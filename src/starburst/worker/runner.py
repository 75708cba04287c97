"""Running the tasks of one chunk: output capture, timeouts, exceptions.

Each task's outcome is a tuple ``(task_id, status, value, output, logs)``
(``output``: what the task printed, stdout and stderr joined by a NUL,
when captured):

* ``ok``: ``value`` is the return value;
* ``err``: ``value`` is ``(exception, formatted remote traceback)``;
* ``timeout``: the task ran past ``task_timeout`` (never retried);
* ``unrun``: the worker handed the chunk back before reaching this task: it
  was stopped, and the client queues such tasks again; or the chunk's lease
  would run past ``max_lease``, and the worker queues the rest of the chunk
  itself.

What a task prints goes to the worker's own stdout/stderr with a
``[task N]`` label (live in the terminal on the local backend, in the
log stream on Fargate) and, when ``capture`` is set, also into the
outcome so the client can show it with the result. ``logging`` records a
task emits (at the client's root level or above) travel in ``logs`` and are
handed to the client's loggers with the task and worker attached.
"""

from __future__ import annotations

import contextlib
import io
import logging
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, TextIO

from .. import seeding
from ..exceptions import TaskTimeoutError

__all__ = ["ChunkRun", "HandBack", "LeaseEnd", "Outcome", "Task", "lease_error",
           "timeout_error"]

Outcome = tuple[int, str, Any, str, list[dict[str, Any]] | None]
Task = tuple[int, Callable[..., Any], tuple[Any, ...], dict[str, Any], int]

# LogRecord fields that travel (the message is formatted on the worker, so
# arguments that do not pickle cannot break the result).
_RECORD_FIELDS = ("name", "levelno", "levelname", "pathname", "filename", "module",
                  "lineno", "funcName", "created", "msecs", "thread", "threadName",
                  "process", "processName")


class _Collector(logging.Handler):
    """Keeps the log records of the running task as plain dicts."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[dict[str, Any]] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.records is None:
            return
        data = {name: getattr(record, name, None) for name in _RECORD_FIELDS}
        try:
            data["msg"] = record.getMessage()
        except Exception as exc:  # a bad format string must not fail the task
            data["msg"] = f"{record.msg!r} (unformattable: {exc})"
        if record.exc_info:
            data["exc_text"] = "".join(traceback.format_exception(*record.exc_info))
        self.records.append(data)


class _LabelledStream(io.TextIOBase):
    """Writes lines to ``target`` with a ``[task N]`` label, optionally keeping a copy."""

    def __init__(self, target: TextIO) -> None:
        self._target = target
        self._label = ""
        self._keep: list[str] | None = None
        self._partial = ""
        self._lock = threading.Lock()

    def begin(self, label: str, keep: list[str] | None) -> None:
        """Label what follows with ``label`` (and copy it into ``keep``)."""
        self._label = label
        self._keep = keep

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            if self._keep is not None:
                self._keep.append(text)
            data = self._partial + text
            lines = data.split("\n")
            self._partial = lines.pop()
            if lines:
                self._emit("".join(f"{self._label}{line}\n" for line in lines))
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._partial:
                text, self._partial = f"{self._label}{self._partial}\n", ""
                self._emit(text)

    def _emit(self, text: str) -> None:
        """Write to the worker's stream; a closed one (the client that read it died)
        loses the line, never fails the task: the captured copy still travels."""
        with contextlib.suppress(OSError, ValueError):
            self._target.write(text)
            self._target.flush()


class _Interrupt(BaseException):
    """Raised into a task by the timeout alarm (a BaseException so that a
    task's ``except Exception`` cannot swallow it)."""


class LeaseEnd(BaseException):
    """Raised into a task still running when its chunk's lease reaches
    ``max_lease`` (the worker's signal handler raises it): the task fails
    with :func:`lease_error` rather than being run again by another worker."""


class HandBack(BaseException):
    """Raised out of :meth:`ChunkRun.run` when the next task would not finish
    before ``hand_by`` (or a task was stopped there): the worker reports the
    outcomes so far and hands the rest of the chunk back ``unrun``."""


@dataclass
class ChunkRun:
    """The tasks of one chunk, run in order on the main thread.

    The outcome list grows as tasks finish, so the worker can report what
    finished and hand back the rest when it stops or the lease runs out.
    """

    tasks: Sequence[Task]
    timeout: float | None = None
    capture: bool = False
    seed: int | None = None
    log_level: int | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    current: int | None = None
    #: Called with ("begin", task id, None) before each task and ("end", task
    #: id, outcome) after it: how the task process tells its supervisor.
    on_task: Callable[[str, int, Outcome | None], None] | None = None
    #: Monotonic time by which the chunk must be handed back (its lease
    #: reaches ``max_lease``); None: never. Before each task after the first,
    #: the run stops if the longest task so far would end past it.
    hand_by: float | None = None
    #: ``max_lease``, for the error of a task stopped at ``hand_by``.
    max_lease: float = 0.0
    #: Set when a task was stopped at ``hand_by`` (:class:`LeaseEnd`).
    lease_ended: bool = False

    def run(self) -> list[Outcome]:
        """Run every task; return their outcomes in order.

        One pair of labelled streams serves the whole chunk (only the label
        changes per task): the per-task cost stays well under a microsecond.
        """
        out = _LabelledStream(sys.__stdout__ or sys.stdout)
        err = _LabelledStream(sys.__stderr__ or sys.stderr)
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        root = logging.getLogger()
        collector = _Collector()
        saved_level = root.level
        root.addHandler(collector)
        if self.log_level is not None:
            root.setLevel(self.log_level)
        try:
            hook = self.on_task
            hand_by = self.hand_by
            longest = 0.0
            last = 0.0
            for task in self.tasks:
                if hand_by is not None:
                    # One clock read per task (the time between two reads is the
                    # last task's): the limit is far away for almost every chunk,
                    # so this is all it costs them.
                    now = time.monotonic()
                    if last and now - last > longest:
                        longest = now - last
                    if now + longest > hand_by or self.lease_ended:
                        raise HandBack
                    last = now
                if hook is not None:
                    hook("begin", task[0], None)
                outcome = self._run_one(task, out, err, collector)
                self.outcomes.append(outcome)
                if hook is not None:
                    hook("end", task[0], outcome)
        finally:
            sys.stdout, sys.stderr = saved
            root.removeHandler(collector)
            root.setLevel(saved_level)
        self.current = None
        return self.outcomes

    def _run_one(self, task: Task, out: _LabelledStream, err: _LabelledStream,
                 collector: _Collector) -> Outcome:
        task_id, fn, args, kwargs, position = task
        keep_out: list[str] | None = [] if self.capture else None
        keep_err: list[str] | None = [] if self.capture else None
        records: list[dict[str, Any]] = []
        collector.records = records
        token = seeding.seed_task(self.seed, position) if self.seed is not None else None
        label = f"[task {task_id}] "
        out.begin(label, keep_out)
        err.begin(label, keep_err)
        self.current = task_id
        alarm = self.timeout is not None and threading.current_thread() is threading.main_thread()
        previous: Any = None
        if alarm:
            previous = signal.signal(signal.SIGALRM, _raise_interrupt)
            signal.setitimer(signal.ITIMER_REAL, self.timeout or 0)
        try:
            try:
                value = fn(*args, **kwargs)
            finally:
                if alarm:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                    signal.signal(signal.SIGALRM, previous)
            outcome: Outcome = (task_id, "ok", value, "", None)
        except _Interrupt:
            outcome = (task_id, "timeout", timeout_error(task_id, self.timeout), "", None)
        except LeaseEnd:
            outcome = (task_id, "timeout", lease_error(task_id, self.max_lease), "", None)
            self.lease_ended = True
        except BaseException as exc:
            if type(exc).__name__ == "_Stop":  # SIGTERM: the worker releases the chunk
                raise
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            exc.__traceback__ = None
            outcome = (task_id, "err", (exc, tb), "", None)
        finally:
            out.flush()
            err.flush()
            collector.records = None
            if token is not None:
                seeding.reset(token)
        if keep_out or keep_err or records:
            printed = "".join(keep_out or ()) + "\0" + "".join(keep_err or ())
            outcome = (*outcome[:3], printed if printed != "\0" else "", records or None)
        return outcome


def timeout_error(task_id: int, timeout: float | None) -> TaskTimeoutError:
    """The error of a task that ran past ``task_timeout``."""
    return TaskTimeoutError(
        f"task {task_id} ran past task_timeout={timeout}s and was stopped (timeouts are "
        "not retried); raise task_timeout= if it needs longer"
    )


def lease_error(task_id: int, max_lease: float) -> TaskTimeoutError:
    """The error of a task stopped because its chunk's lease reached ``max_lease``."""
    return TaskTimeoutError(
        f"task {task_id} was still running when its chunk had been leased for "
        f"max_lease={max_lease:g}s: SQS keeps a message leased for at most 12 hours "
        "(43200 s) since its receive, after which another worker would run the task "
        "again, so it was stopped instead (not retried). A single task cannot run that "
        "long on starburst: split it into shorter tasks, and set task_timeout= below that "
        "limit to fail such a task sooner"
    )


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise _Interrupt
