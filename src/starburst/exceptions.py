"""The starburst exception tree.

Every error starburst raises on its own account derives from
:class:`StarburstError`. Errors raised *by the user's function* on a
worker are re-raised locally with their original type; the remote
traceback is attached as their ``__cause__`` (:class:`RemoteTraceback`).

::

    StarburstError
     +-- ConfigurationError (ValueError)      bad option, size, region, config file
     +-- SerializationError                   something could not be pickled/unpickled
     +-- ProtocolError                        corrupt, truncated or foreign message/payload
     |    +-- VersionMismatchError            payload written by another starburst version
     +-- TaskError                            one task failed for a reason of starburst's
     |    +-- WorkerLostError                 its worker died ``max_attempts`` times
     |    +-- TaskTimeoutError (TimeoutError) it ran past ``task_timeout`` (never retried)
     |    +-- BudgetExceededError             ``max_cost`` stopped it from running
     +-- BackendError                         the compute backend failed (launch, watch)
     +-- TransportError                       the store or queue failed (I/O, AWS)
     +-- CloudError                           an AWS call failed; says what to do
     +-- ExecutorBroken (concurrent.futures.BrokenExecutor)
     |                                        the executor can no longer run anything
     +-- InitializerError (concurrent.futures.BrokenExecutor)
                                              ``initializer=`` raised in a worker process

A :class:`TaskError` fails one future only; the executor keeps running.
"""

from __future__ import annotations

import concurrent.futures

__all__ = [
    "BackendError",
    "BudgetExceededError",
    "CloudError",
    "ConfigurationError",
    "ExecutorBroken",
    "InitializerError",
    "ProtocolError",
    "RemoteTraceback",
    "SerializationError",
    "StarburstError",
    "TaskError",
    "TaskTimeoutError",
    "TransportError",
    "VersionMismatchError",
    "WorkerLostError",
]


class StarburstError(Exception):
    """Root of every error that starburst raises on its own account."""


class ConfigurationError(StarburstError, ValueError):
    """An option, size, region or configuration file is invalid.

    The message names the offending value, the valid choices and the fix.
    """


class SerializationError(StarburstError):
    """An object could not be pickled (client) or unpickled (worker/client).

    The message names the object and where it was found: argument
    position, keyword, global name or closure cell.
    """


class ProtocolError(StarburstError):
    """A queue message, payload or result is corrupt, truncated or foreign."""


class VersionMismatchError(ProtocolError):
    """A payload was written by a starburst protocol version this one cannot read."""


class TaskError(StarburstError):
    """A single task failed for a reason of starburst's, not of the user's code."""


class WorkerLostError(TaskError):
    """The worker running a task died, on every one of ``max_attempts`` attempts.

    Attributes:
        worker: identifier of the last worker (process id or ECS task ARN).
        exit_code: its exit code, when known.
        signal: the signal that killed it, when known (e.g. ``"SIGKILL"``).
        stop_code: ECS stop code, when on Fargate.
        reason: ECS stopped reason / container reason, when known.
        attempts: how many attempts were made.
    """

    def __init__(
        self,
        message: str,
        *,
        worker: str | None = None,
        exit_code: int | None = None,
        signal: str | None = None,
        stop_code: str | None = None,
        reason: str | None = None,
        attempts: int = 0,
    ) -> None:
        super().__init__(message)
        self.worker = worker
        self.exit_code = exit_code
        self.signal = signal
        self.stop_code = stop_code
        self.reason = reason
        self.attempts = attempts

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_worker_lost,
            (
                str(self),
                self.worker,
                self.exit_code,
                self.signal,
                self.stop_code,
                self.reason,
                self.attempts,
            ),
        )


def _rebuild_worker_lost(
    message: str,
    worker: str | None,
    exit_code: int | None,
    signal: str | None,
    stop_code: str | None,
    reason: str | None,
    attempts: int,
) -> WorkerLostError:
    return WorkerLostError(
        message,
        worker=worker,
        exit_code=exit_code,
        signal=signal,
        stop_code=stop_code,
        reason=reason,
        attempts=attempts,
    )


class TaskTimeoutError(TaskError, TimeoutError):
    """A task ran longer than ``task_timeout``. Such a task is not retried."""


class BudgetExceededError(TaskError):
    """The run's ``max_cost`` or ``max_hourly_cost`` stopped this task from running."""


class BackendError(StarburstError):
    """The compute backend could not start, watch or stop workers."""


class TransportError(StarburstError):
    """The store or the queue failed (disk, network, AWS)."""


class CloudError(StarburstError):
    """An AWS call failed; the message says what to do about it."""


class ExecutorBroken(StarburstError, concurrent.futures.BrokenExecutor):
    """The executor can no longer run anything (its transport or backend failed)."""


class InitializerError(StarburstError, concurrent.futures.BrokenExecutor):
    """The ``initializer=`` raised in a worker process, so no task ran there.

    Like :class:`concurrent.futures.process.BrokenProcessPool` after a failed
    initializer, it fails the futures of the tasks that process was given.
    Its ``__cause__`` is the initializer's own exception, whose ``__cause__``
    in turn is the :class:`RemoteTraceback`. Both survive pickling (plain
    exception pickling drops ``__cause__``), so it arrives whole from the worker.
    """

    def __init__(self, message: str, *, cause: BaseException | None = None,
                 traceback: str = "") -> None:
        super().__init__(message)
        self.traceback = traceback
        if cause is not None:
            if traceback:
                cause.__cause__ = RemoteTraceback(traceback)
            self.__cause__ = cause

    def __reduce__(self) -> tuple[object, ...]:
        cause = self.__cause__
        return (_initializer_error, (str(self), cause, self.traceback))


def _initializer_error(message: str, cause: BaseException | None,
                       traceback: str) -> InitializerError:
    return InitializerError(message, cause=cause, traceback=traceback)


class RemoteTraceback(Exception):
    """Carries the formatted traceback of an exception raised on a worker.

    Attached as ``__cause__`` of the re-raised exception, so the user's
    traceback shows the remote file and line, as :mod:`concurrent.futures`
    does for process pools.
    """

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb}"""'
