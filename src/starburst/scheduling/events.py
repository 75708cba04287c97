"""What a backend tells the scheduler about its workers: how each one ended.

Shared by the backends (which observe exits) and the scheduler (which
acts on them), so neither imports the other.
"""

from __future__ import annotations

import signal as _signal
from dataclasses import dataclass, field

__all__ = ["FAILED_TO_START", "SPOT_INTERRUPTION", "WorkerExit", "describe_exit",
           "exit_signal"]

#: Stop code of a worker whose Spot capacity was taken back (ECS's own code,
#: which the Batch backend reports its Spot reclaims with too): its chunk is
#: redone without counting an attempt.
SPOT_INTERRUPTION = "SpotInterruption"
#: Stop code of a worker whose container never started (ECS's own code: an image
#: or secret that cannot be pulled, no network interface...; the Batch backend
#: reports its jobs' ``Cannot...Error`` starts with it too). It has no exit
#: code, and it counts toward the "workers keep failing to start" rule.
FAILED_TO_START = "TaskFailedToStart"


@dataclass(frozen=True, slots=True)
class WorkerExit:
    """How a worker ended, as far as the backend knows.

    Attributes:
        worker: worker id (local: ``local-<n>``; Fargate: task ARN).
        exit_code: process/container exit code, when known.
        signal: name of the signal that ended it, when known.
        stop_code: ECS stop code (e.g. ``EssentialContainerExited``).
        reason: ECS stopped reason and container reason, when known.
        started_at: epoch seconds the worker started (billing start).
        stopped_at: epoch seconds it stopped.
    """

    worker: str
    exit_code: int | None = None
    signal: str | None = None
    stop_code: str | None = None
    reason: str | None = None
    started_at: float | None = None
    stopped_at: float | None = None
    details: dict[str, str] = field(default_factory=dict)


def exit_signal(ex: WorkerExit) -> str | None:
    """The signal that ended a worker: as reported, or read off an exit code above 128."""
    if ex.signal is not None:
        return ex.signal
    if ex.exit_code is not None and ex.exit_code > 128:
        try:
            return _signal.Signals(ex.exit_code - 128).name
        except ValueError:
            return None
    return None


def describe_exit(ex: WorkerExit) -> str:
    """A sentence on how a worker ended, honest about what is known.

    Exit code 137 is SIGKILL, which is *not* proof of out-of-memory: OOM is
    only reported when the container reason says ``OutOfMemoryError``.
    """
    parts: list[str] = []
    sig = exit_signal(ex)
    if sig:
        parts.append(f"killed by {sig}")
    if ex.exit_code is not None:
        parts.append(f"exit code {ex.exit_code}")
    if ex.stop_code:
        parts.append(f"stop code {ex.stop_code}")
    if ex.reason:
        parts.append(f"reason: {ex.reason}")
    text = ", ".join(parts) or "ended for an unknown reason"
    if ex.reason and "OutOfMemoryError" in ex.reason:
        text += " -- out of memory: raise memory= (or process less data per task)"
    elif sig == "SIGKILL":
        text += " (SIGKILL is not proof of out-of-memory; nothing says it was)"
    elif sig == "SIGSEGV":
        text += " -- a segmentation fault in native code"
    return text
