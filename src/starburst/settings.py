"""Intervals and limits of the protocol, all settings so tests run in seconds.

Every field can be set from the environment as ``STARBURST_<NAME>``
(e.g. ``STARBURST_LEASE=5``); workers receive the client's settings that
way, so both sides agree.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

from .exceptions import ConfigurationError

__all__ = ["MAX_LEASE", "MAX_RECEIVES", "MAX_SESSION_TIMEOUT", "SQS_MAX_VISIBILITY", "Settings"]

#: SQS's upper bound on a redrive policy's ``maxReceiveCount`` (1 to 1,000).
MAX_RECEIVES = 1000
#: SQS's limit on a message's total invisibility since it was received (12
#: hours): ChangeMessageVisibility past it is refused.
SQS_MAX_VISIBILITY = 43_200.0
#: The default ``max_lease``: the SQS limit less 10 minutes, room for the
#: request that received the message, clock steps and the final report.
MAX_LEASE = SQS_MAX_VISIBILITY - 600.0
#: The longest a detached session may run (``session_timeout=``): a week, inside
#: the 14 days SQS keeps a task message and the 30 days S3 keeps run data
#: (aws/retention.py, which reads it from here so it needs no option handling).
MAX_SESSION_TIMEOUT = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Settings:
    """Protocol intervals, in seconds.

    Attributes:
        lease: how long a leased chunk stays invisible to other workers
            without a heartbeat. A dead worker's chunk returns after this
            at the latest (the client redelivers sooner when the backend
            reports the death).
        heartbeat: how often a worker extends its lease; a quarter of the
            lease, so three heartbeats may be lost before the lease lapses.
        poll: how long the client waits between housekeeping rounds when
            nothing happens (launches, exits, heartbeat).
        idle_timeout: a worker exits after this long without work.
        client_heartbeat: how often the client writes its heartbeat.
        client_stale: a worker of a non-detached session exits when the
            client heartbeat is older than this (the client is gone).
        timeout_grace: after ``task_timeout`` a task that ignores the
            interrupt (stuck in C code) gets this long before the worker's
            supervisor kills its task process; a fresh one runs the rest of
            the chunk.
        max_receives: dead-letter backstop; far above max_attempts because
            releases and lease renewals count as receives there too.
        linger: on backends that bill idle time (Fargate), a worker with
            nothing to do while no chunk waits is stopped after this long,
            rather than after its whole ``idle_timeout``.
        max_lease: the longest a worker holds one chunk's message: SQS
            refuses to keep a message invisible for more than 12 hours since
            it was received, so before this much time has passed the worker
            stores the outcomes of the tasks that finished and hands the rest
            back under a new message of the same chunk (see
            :mod:`starburst.worker.loop`). Lease extensions never reach past it.
    """

    lease: float = 60.0
    heartbeat: float = 15.0
    poll: float = 0.25
    idle_timeout: float = 60.0
    client_heartbeat: float = 30.0
    client_stale: float = 600.0
    timeout_grace: float = 5.0
    max_receives: int = 100
    linger: float = 5.0
    max_lease: float = MAX_LEASE

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "max_receives":
                if (isinstance(value, bool) or not isinstance(value, int)
                        or not 1 <= value <= MAX_RECEIVES):
                    raise ConfigurationError(
                        f"setting max_receives={value!r} must be a positive whole number of "
                        f"at most {MAX_RECEIVES}: SQS accepts a redrive maxReceiveCount "
                        f"from 1 to {MAX_RECEIVES}")
                continue
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not math.isfinite(value) or value <= 0):
                raise ConfigurationError(
                    f"setting {f.name}={value!r} must be a positive, finite number of seconds"
                )
        if self.heartbeat >= self.lease:
            raise ConfigurationError(
                f"heartbeat ({self.heartbeat}s) must be shorter than lease ({self.lease}s), "
                "or leases lapse while a chunk is still running; use heartbeat = lease / 4"
            )
        if self.max_lease > SQS_MAX_VISIBILITY:
            raise ConfigurationError(
                f"max_lease ({self.max_lease:g}s) must be at most {SQS_MAX_VISIBILITY:g}s "
                "(12 hours), the longest SQS keeps a message leased: past it, lease "
                f"extensions are refused; leave it at its default ({MAX_LEASE:g}s)")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: float) -> Settings:
        """Read ``STARBURST_<NAME>`` variables, then apply explicit overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, float] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f"STARBURST_{f.name.upper()}")
            if raw is not None:
                try:
                    values[f.name] = int(raw) if f.name == "max_receives" else float(raw)
                except ValueError:
                    raise ConfigurationError(
                        f"STARBURST_{f.name.upper()}={raw!r} is not a number"
                    ) from None
        values.update(overrides)
        if "lease" in values and "heartbeat" not in values:
            values["heartbeat"] = values["lease"] / 4
        return cls(**values)  # type: ignore[arg-type]

    def to_env(self) -> dict[str, str]:
        """The environment variables that reproduce these settings on a worker."""
        return {
            f"STARBURST_{f.name.upper()}": str(getattr(self, f.name))
            for f in dataclasses.fields(self)
        }
