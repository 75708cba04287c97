"""The compute backend ABC: it only starts, watches and stops workers.

A backend never carries task data: workers find their work through the
transport whose spec is in :class:`WorkerSpec`. Scheduling, retries and
waves live above, in the scheduler, once for every backend.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..exceptions import ConfigurationError
from ..scheduling.events import WorkerExit

if TYPE_CHECKING:
    from ..options import ExecutorOptions
    from ..scheduling.pacing import LaunchPacing
    from ..session import SessionRecord
    from ..transport import Transport

__all__ = ["ComputeBackend", "OutputCallback", "Session", "WorkerSpec"]

#: Called with (worker id, stream name, line) for live worker output.
OutputCallback = Callable[[str, str, str], None]


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What every worker of a session is started with.

    Attributes:
        env: environment variables of the worker command (transport spec,
            session id, settings). Never credentials.
        cpu: vCPUs per worker.
        memory_mib: memory per worker in MiB.
        image: container image (cloud backends).
        key: the session key (:mod:`starburst.wire.auth`), for a backend that
            hands it to a worker process itself (local: in the process's
            environment, never in ``env``). Cloud backends leave it empty:
            their workers get it from a per-session secret.
    """

    env: dict[str, str]
    cpu: float = 1.0
    memory_mib: int = 2048
    image: str = ""
    key: bytes = field(default=b"", repr=False)


@dataclass
class Session:
    """What a backend sets up for one executor session.

    Attributes:
        backend: the backend that starts this session's workers.
        transport: the session's store and queues.
        spec: how each worker is started (its env includes the transport
            spec and session id; the executor adds the settings).
        pacing: launch rate limits the scheduler must respect.
        workers: the worker count when the user gave none.
        key: the session key every message is tagged with
            (:mod:`starburst.wire.auth`); its workers hold it too.
        key_ref: where the key is kept for ``attach`` (recorded in the session
            record): a local file's path, or a Secrets Manager secret's ARN.
        max_workers: the most workers that may run (quota); None: no limit.
        hourly_rate: dollars per worker-hour (0 for local workers): what a
            worker costs unless :meth:`ComputeBackend.rate_of` says otherwise.
        max_hourly_rate: the most one worker may cost per hour when that is
            above ``hourly_rate`` (Fargate Spot ``"prefer"``: an On-Demand
            fallback); None: every worker costs ``hourly_rate`` at most.
        price_note: where the rate comes from (region, date, source).
        notes: things the user should know before the run (quota cuts...).
    """

    backend: ComputeBackend
    transport: Transport
    spec: WorkerSpec
    pacing: LaunchPacing
    workers: int
    key: bytes = field(repr=False)
    max_workers: int | None = None
    hourly_rate: float = 0.0
    max_hourly_rate: float | None = None
    price_note: str = ""
    notes: list[str] = field(default_factory=list)
    key_ref: str = ""


class ComputeBackend(abc.ABC):
    """Starts, watches and stops workers. Three jobs, nothing else."""

    #: Registry name (``local``, ``fargate``...).
    name: str = ""
    #: True when worker output reaches the client live (no need to replay
    #: captured output with each result).
    live_output: bool = False
    #: True when an idle worker costs money, so the scheduler retires idle
    #: workers after ``Settings.linger`` instead of waiting for idle_timeout.
    bills_idle: bool = False

    @classmethod
    @abc.abstractmethod
    def open_session(cls, *, session: str, options: ExecutorOptions,
                     on_output: OutputCallback | None = None) -> Session:
        """Create (or reuse) what a session needs and return it.

        Validates the backend-specific options in ``options.extra`` and
        raises :class:`~starburst.exceptions.ConfigurationError` for bad ones.
        """

    @classmethod
    def attach_session(cls, *, session: str, options: ExecutorOptions,
                       on_output: OutputCallback | None = None,
                       ) -> tuple[Session, SessionRecord]:
        """Re-open an existing session (``starburst.attach``) and read its record.

        Creates nothing: the session's transport is rebuilt from its record.
        """
        raise ConfigurationError(f"backend {cls.name!r} cannot attach to session {session} yet")

    @abc.abstractmethod
    def launch(self, count: int, spec: WorkerSpec) -> list[str]:
        """Start up to ``count`` workers; return the ids of those started.

        May start fewer (throttling, capacity); the scheduler asks again.
        """

    @abc.abstractmethod
    def poll(self) -> list[WorkerExit]:
        """Return the workers that stopped since the last call."""

    @abc.abstractmethod
    def stop(self, workers: Sequence[str] | None = None) -> None:
        """Stop the given workers, or all of this backend's workers."""

    def rate_of(self, worker: str) -> float | None:
        """Dollars per hour of a worker this backend launched, when it differs by worker.

        The client asks right after :meth:`launch`, so the live spend and the
        ``max_cost`` budget price each worker at what it really costs (a
        Fargate Spot session's On-Demand fallbacks). None: the session's
        ``hourly_rate``.
        """
        return None

    def adopted(self) -> tuple[list[str], list[WorkerExit]]:
        """The session's workers this backend found when it attached: those still
        running (it watches and stops them like its own) and the exits of those
        that ended before. Empty for a backend that cannot list them.

        The scheduler counts the running ones toward the workers wanted, so an
        attach does not start a second set beside them, and a start notice the
        previous client left unread from one that ended redelivers its chunk at
        once.
        """
        return [], []

    def keep_for_debugging(self, worker: str) -> str | None:
        """Debug mode: leave ``worker`` running when all workers are stopped (it
        ends itself after its keep-alive) and return how to get into it, or
        None when this backend cannot say (or no longer knows the worker)."""
        return None

    def detach(self) -> None:  # noqa: B027 - optional hook
        """The client leaves a detached session: its workers run on without it.

        Nothing is stopped. A backend that holds per-worker handles hands them
        to whatever must outlive the client object (local: a reaper thread).
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources once every worker has stopped."""
