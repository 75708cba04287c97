"""Launch pacing: how fast a backend may start workers, as token buckets."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["LaunchPacing"]


@dataclass(slots=True)
class _Bucket:
    rate: float
    burst: float
    tokens: float
    at: float | None = None

    def refill(self, now: float) -> None:
        if self.at is not None and now > self.at:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now if self.at is None else max(self.at, now)


@dataclass(slots=True)
class LaunchPacing:
    """Rate limits on starting workers, as token buckets.

    Fargate's defaults (DESIGN.md §4): RunTask takes at most 10 tasks per
    call at about 20 calls/s, and Fargate launches about 20 tasks/s
    sustained with a burst of 100 per account and region. The local
    backend has no limits (``math.inf``).
    """

    tasks_per_call: int = 10
    calls_per_second: float = 20.0
    launches_per_second: float = 20.0
    launch_burst: float = 100.0
    _calls: _Bucket = field(init=False)
    _launches: _Bucket = field(init=False)

    def __post_init__(self) -> None:
        self._calls = _Bucket(self.calls_per_second, self.calls_per_second,
                              self.calls_per_second)
        self._launches = _Bucket(self.launches_per_second, self.launch_burst, self.launch_burst)

    @classmethod
    def unlimited(cls) -> LaunchPacing:
        """No pacing: the local backend starts processes as fast as asked."""
        return cls(tasks_per_call=1 << 30, calls_per_second=math.inf,
                   launches_per_second=math.inf, launch_burst=math.inf)

    def allow(self, wanted: int, now: float) -> int:
        """How many of ``wanted`` launches may start at ``now``; consumes tokens."""
        if wanted <= 0:
            return 0
        self._calls.refill(now)
        self._launches.refill(now)
        calls = min(self._calls.tokens // 1, math.ceil(wanted / self.tasks_per_call))
        n = min(float(wanted), calls * self.tasks_per_call, self._launches.tokens // 1)
        if n <= 0:
            return 0
        self._calls.tokens -= math.ceil(n / self.tasks_per_call)
        self._launches.tokens -= n
        return int(n)

    def backoff(self, now: float, seconds: float) -> None:
        """The service throttled us: take all tokens for ``seconds``."""
        self._launches.refill(now)
        self._launches.tokens = -seconds * self.launches_per_second
