"""Fargate vCPU quota -> how many workers fit, and in how many waves. Pure.

Waves are not a separate code path: when the quota allows only ``k``
workers, ``k`` workers drain the queue. This module only works out ``k``
and says so in words the user can act on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["QuotaPlan", "plan_workers", "suggest_quota"]


@dataclass(frozen=True)
class QuotaPlan:
    """How many workers run, and why.

    Attributes:
        requested: workers asked for.
        workers: workers that fit (at least 1 while any vCPU is free).
        cpu: vCPUs per worker.
        quota_vcpu: the account's vCPU quota (None: unknown).
        in_use_vcpu: vCPUs already running in the account and region.
        waves: how many rounds of ``requested`` tasks the fitted workers need.
    """

    requested: int
    workers: int
    cpu: float
    quota_vcpu: float | None
    in_use_vcpu: float
    waves: int

    @property
    def limited(self) -> bool:
        """Whether the quota cut the worker count."""
        return self.workers < self.requested

    def message(self) -> str:
        """One sentence for the user (empty when nothing was cut)."""
        if self.quota_vcpu is None:
            return ("The Fargate vCPU quota could not be read (no permission for Service "
                    f"Quotas); starting {self.requested} workers and letting RunTask decide.")
        if not self.limited:
            return ""
        if self.workers == 0:
            return (f"Quota allows no workers of {self.cpu:g} vCPU ({self.quota_vcpu:g} vCPU, "
                    f"{self.in_use_vcpu:g} in use): wait for running tasks to end, use a "
                    "smaller cpu=, or request a quota increase (`starburst quota --request`).")
        return (f"Quota allows {self.workers} workers of {self.cpu:g} vCPU "
                f"({self.quota_vcpu:g} vCPU, {self.in_use_vcpu:g} in use); "
                f"{self.requested} workers requested: the work runs on {self.workers} "
                f"workers (about {self.waves} waves of your tasks).")


def plan_workers(requested: int, cpu: float, quota_vcpu: float | None,
                 in_use_vcpu: float = 0.0) -> QuotaPlan:
    """Fit ``requested`` workers of ``cpu`` vCPUs into what the quota leaves free."""
    if requested < 1 or cpu <= 0:
        raise ValueError("requested must be >= 1 and cpu > 0")
    if quota_vcpu is None:
        return QuotaPlan(requested, requested, cpu, None, in_use_vcpu, 1)
    free = max(0.0, quota_vcpu - in_use_vcpu)
    workers = min(requested, math.floor(free / cpu + 1e-9))
    waves = math.ceil(requested / workers) if workers else 0
    return QuotaPlan(requested, workers, cpu, quota_vcpu, in_use_vcpu, waves)


def suggest_quota(requested: int, cpu: float, in_use_vcpu: float = 0.0) -> int:
    """A quota increase to ask for: enough for the request, rounded up to a multiple of 50."""
    need = requested * cpu + in_use_vcpu
    return int(math.ceil(need / 50.0) * 50)
