"""What a session costs: the rate before, the spend during, the computed cost after.

The figure after the run is computed from each worker's own timestamps
(Fargate: ``pullStartedAt`` to ``stoppedAt``, per second, one-minute
minimum), which is what Fargate bills for compute, but it is computed
from task runtimes, not read from your bill: taxes, credits, data
transfer and request charges are not in it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from .backends.base import WorkerExit
from .pricing import task_cost

__all__ = ["LABEL", "CostReport", "computed_cost"]

LABEL = "computed from task runtimes, not your bill"


def computed_cost(exits: Iterable[WorkerExit], hourly_rate: float) -> tuple[float, float]:
    """(dollars, billed worker-seconds) of the workers that have stopped.

    A worker whose exit carries its own rate (``details["hourly_rate"]``:
    Fargate Spot and On-Demand workers of one session cost differently) is
    priced at it; the others at ``hourly_rate``.
    """
    dollars = seconds = 0.0
    for ex in exits:
        if ex.started_at is None or ex.stopped_at is None:
            continue
        rate = float(ex.details.get("hourly_rate", hourly_rate))
        cost = task_cost(rate, ex.started_at, ex.stopped_at)
        dollars += cost
        seconds += cost / rate * 3600 if rate else 0.0
    return dollars, seconds


@dataclass(frozen=True)
class CostReport:
    """Cost of one session, from :meth:`starburst.Executor.cost`.

    Attributes:
        backend: backend name.
        workers: the most workers the session runs at once.
        hourly_rate: dollars per worker-hour (0 for local workers; NaN: the region has
            no known price, and the figures below are unknown too).
        estimated_hourly: the rate shown before the run (workers x hourly_rate).
        spent: dollars so far (conservative, from each launch) while running.
        computed: dollars computed from the stopped workers' timestamps.
        worker_seconds: billed worker-seconds behind ``computed``.
        finished: whether the session has ended (``computed`` is final).
        price_note: where the rate comes from.
    """

    backend: str
    workers: int
    hourly_rate: float
    estimated_hourly: float
    spent: float
    computed: float
    worker_seconds: float
    finished: bool
    price_note: str = ""

    def __str__(self) -> str:
        if math.isnan(self.hourly_rate):  # the region has no known price
            return self.price_note or "cost unknown: no price is known for the region"
        if self.hourly_rate <= 0:
            return f"{self.backend}: local workers, no cloud cost"
        if self.finished:
            figure = (f"${self.computed:,.4f} final ({LABEL}; {self.worker_seconds:,.0f} "
                      "worker-seconds)")
        else:
            figure = f"${self.spent:,.4f} so far (counted from each launch, one-minute minimum)"
        return (f"{figure}; estimate before the run: ${self.estimated_hourly:,.4f}/h "
                f"for {self.workers} workers at ${self.hourly_rate:,.4f}/h each"
                + (f" ({self.price_note})" if self.price_note else ""))
