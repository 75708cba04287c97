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

from .exceptions import BudgetExceededError, ConfigurationError
from .pricing import task_cost
from .scheduling.events import WorkerExit

__all__ = ["LABEL", "MIN_BILLED_SECONDS", "CostReport", "check_caps", "computed_cost",
           "format_money"]

#: Fargate (and AWS Batch on EC2) bill each worker for at least one minute.
MIN_BILLED_SECONDS = 60.0

LABEL = "computed from task runtimes, not your bill"


def format_money(amount: float, significant: int = 2) -> str:
    """Dollars as people read them, never ``$0.00`` for an amount that is not zero.

    Two decimals from $1 up (``$1,234.50``); below, at least two decimals and
    enough to show ``significant`` significant digits (``$0.42``, ``$0.0072``,
    ``$0.00011``; trailing zeros past the cents dropped): a cap of $0.002 or a
    Fargate rate of $0.0494/h must not print as $0.00. Every message, status,
    progress bar and CLI command that shows money uses this one function.

    >>> format_money(1234.5), format_money(0.4249), format_money(0.002), format_money(0)
    ('$1,234.50', '$0.42', '$0.002', '$0.00')
    >>> format_money(0.04937, significant=3)
    '$0.0494'
    """
    if not math.isfinite(amount):
        return f"${amount}"
    sign, size = ("-" if amount < 0 else ""), abs(amount)
    if size >= 1 or size == 0:
        return f"{sign}${size:,.2f}"
    decimals = max(2, significant - 1 - math.floor(math.log10(size)))
    text = f"{size:.{decimals}f}"
    if float(text) >= 1:  # 0.9999 rounded up to 1.00: show it as a dollar amount
        return f"{sign}${size:,.2f}"
    whole, _, fraction = text.partition(".")
    fraction = fraction.rstrip("0").ljust(2, "0")  # $0.002, not $0.0020; $0.10 stays
    return f"{sign}${whole}.{fraction}"


def check_caps(*, max_cost: float | None, max_hourly_cost: float | None,
               hourly_rate: float, max_hourly_rate: float | None = None,
               price_note: str = "") -> None:
    """Refuse caps that cannot pay for a single worker, before anything is opened.

    A backend calls this as soon as it knows its rate, before it creates
    any per-session resource (queues, prefix, tasks), and the client again
    (for backends that do not): a cap below one worker would otherwise
    start nothing and wait forever.

    Args:
        max_cost: the run's cap in dollars, or None.
        max_hourly_cost: the cap in dollars per hour, or None.
        hourly_rate: dollars per worker-hour (0: not billed, nothing to check).
        max_hourly_rate: the most one worker may cost per hour when some cost
            more than ``hourly_rate`` (a Spot session's On-Demand fallback).
        price_note: where the rate comes from, for the message.

    Raises:
        ConfigurationError: ``max_hourly_cost`` is below one worker's rate.
        BudgetExceededError: ``max_cost`` is below one worker's first billed
            minute, the least any run costs.
    """
    if math.isnan(hourly_rate) or hourly_rate <= 0:
        return  # not billed, or the price is unknown (caps are refused there already)
    where = f", {price_note}" if price_note else ""
    if max_hourly_cost is not None and max_hourly_cost < hourly_rate:
        raise ConfigurationError(
            f"max_hourly_cost={format_money(max_hourly_cost, 3)} does not pay for one worker "
            f"({format_money(hourly_rate, 3)}/h each{where}); raise it to at least "
            f"{format_money(hourly_rate, 3)} or choose a smaller cpu=/memory=")
    launch_rate = max(hourly_rate, max_hourly_rate or 0.0)
    least = MIN_BILLED_SECONDS * launch_rate / 3600.0
    if max_cost is not None and max_cost < least:
        raise BudgetExceededError(
            f"max_cost={format_money(max_cost, 3)} cannot pay for one worker: the least a run "
            f"costs is {format_money(least, 3)} (one worker at "
            f"{format_money(launch_rate, 3)}/h{where}, billed for its one-minute minimum), "
            f"so nothing would run. Raise max_cost= to at least {format_money(least, 3)}, "
            "or choose a smaller cpu=/memory=")


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
            figure = (f"{format_money(self.computed)} final ({LABEL}; "
                      f"{self.worker_seconds:,.0f} worker-seconds)")
        else:
            figure = (f"{format_money(self.spent)} so far (counted from each launch, "
                      "one-minute minimum)")
        return (f"{figure}; estimate before the run: "
                f"{format_money(self.estimated_hourly, 3)}/h for {self.workers} workers at "
                f"{format_money(self.hourly_rate, 3)}/h each"
                + (f" ({self.price_note})" if self.price_note else ""))
