"""Running the tasks of one chunk: output capture, timeouts, exceptions.

Each task's outcome is a tuple ``(task_id, status, value, output)``:

* ``ok``: ``value`` is the return value;
* ``err``: ``value`` is ``(exception, formatted remote traceback)``;
* ``timeout``: the task ran past ``task_timeout`` (never retried);
* ``unrun``: the worker gave up on the chunk before reaching this task
  (after a task stuck in native code ignored its timeout); the client
  queues such tasks again.

What a task prints goes to the worker's own stdout/stderr with a
``[task N]`` label (live in the terminal on the local backend, in the
log stream on Fargate) and, when ``capture`` is set, also into the
outcome so the client can show it with the result.
"""

from __future__ import annotations

import io
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, TextIO

from ..exceptions import TaskTimeoutError

__all__ = ["ChunkRun", "Outcome", "Task"]

Outcome = tuple[int, str, Any, str]
Task = tuple[int, Callable[..., Any], tuple[Any, ...], dict[str, Any]]


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
                self._target.write("".join(f"{self._label}{line}\n" for line in lines))
                self._target.flush()
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._partial:
                self._target.write(f"{self._label}{self._partial}\n")
                self._partial = ""
                self._target.flush()


class _Interrupt(BaseException):
    """Raised into a task by the timeout alarm (a BaseException so that a
    task's ``except Exception`` cannot swallow it)."""


@dataclass
class ChunkRun:
    """The tasks of one chunk, run in order on the main thread.

    The outcome list grows as tasks finish, so the worker's watchdog can
    report a partial result if a task is stuck past its timeout.
    """

    tasks: Sequence[Task]
    timeout: float | None = None
    capture: bool = False
    outcomes: list[Outcome] = field(default_factory=list)
    current: int | None = None
    current_started: float = 0.0

    def partial(self) -> list[Outcome]:
        """Outcomes so far, the current task timed out, the rest unrun."""
        out = list(self.outcomes)
        done = {o[0] for o in out}
        for task_id, *_ in self.tasks:
            if task_id in done:
                continue
            if task_id == self.current:
                out.append((task_id, "timeout", _timeout_error(task_id, self.timeout), ""))
            else:
                out.append((task_id, "unrun", None, ""))
        return out

    def run(self) -> list[Outcome]:
        """Run every task; return their outcomes in order.

        One pair of labelled streams serves the whole chunk (only the label
        changes per task): the per-task cost stays well under a microsecond.
        """
        out = _LabelledStream(sys.__stdout__ or sys.stdout)
        err = _LabelledStream(sys.__stderr__ or sys.stderr)
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        try:
            for task_id, fn, args, kwargs in self.tasks:
                self.outcomes.append(self._run_one(task_id, fn, args, kwargs, out, err))
        finally:
            sys.stdout, sys.stderr = saved
        self.current = None
        return self.outcomes

    def _run_one(self, task_id: int, fn: Callable[..., Any], args: tuple[Any, ...],
                 kwargs: dict[str, Any], out: _LabelledStream,
                 err: _LabelledStream) -> Outcome:
        keep: list[str] | None = [] if self.capture else None
        label = f"[task {task_id}] "
        out.begin(label, keep)
        err.begin(label, keep)
        self.current = task_id
        self.current_started = time.monotonic()
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
            outcome: Outcome = (task_id, "ok", value, "")
        except _Interrupt:
            outcome = (task_id, "timeout", _timeout_error(task_id, self.timeout), "")
        except BaseException as exc:
            if type(exc).__name__ == "_Stop":  # SIGTERM: the worker releases the chunk
                raise
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            exc.__traceback__ = None
            outcome = (task_id, "err", (exc, tb), "")
        finally:
            out.flush()
            err.flush()
        if keep:
            outcome = (*outcome[:3], "".join(keep))
        return outcome


def _timeout_error(task_id: int, timeout: float | None) -> TaskTimeoutError:
    return TaskTimeoutError(
        f"task {task_id} ran past task_timeout={timeout}s and was stopped (timeouts are "
        "not retried); raise task_timeout= if it needs longer"
    )


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise _Interrupt
