"""Fargate prices and cost arithmetic. Pure functions, no I/O.

The table ships with the package; every price carries its source and the
date it was recorded, and a region without a known price is an error,
never a guess. Fargate bills per second from ``pullStartedAt`` to
``stoppedAt`` with a one-minute minimum, for vCPU and memory, plus
ephemeral storage above the free 20 GiB and a public IPv4 address when
the task has one.

The table in use is :data:`PRICES` overlaid with the prices fetched by
``starburst pricing refresh`` (:func:`starburst.pricing_cache.table_in_use`
reads that cache; this module never touches the disk): pass it as
``table=`` to :func:`lookup`.

Fargate Spot has no fixed price: AWS sets it by region and changes it
over time, and the Price List may not carry it. Unless the cache holds a
Spot rate or the caller names one, :func:`spot_price` applies
:data:`SPOT_DISCOUNT`, the discount AWS advertises for Fargate Spot ("up
to 70%" off On-Demand), and says so in the price's ``source``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .exceptions import ConfigurationError

__all__ = [
    "IPV4_PER_HOUR",
    "MINIMUM_SECONDS",
    "PRICES",
    "SPOT_DISCOUNT",
    "SPOT_DISCOUNT_SOURCE",
    "FargatePrice",
    "PriceTable",
    "billed_seconds",
    "hourly_rate",
    "lookup",
    "merge_tables",
    "spot_price",
    "task_cost",
]

#: Fargate bills at least one minute per task.
MINIMUM_SECONDS = 60.0
#: Public IPv4 address, per address-hour (AWS, since 2024-02-01).
IPV4_PER_HOUR = 0.005
#: Ephemeral storage included with every task.
FREE_STORAGE_GIB = 20

_SOURCE = "https://aws.amazon.com/fargate/pricing/ (Linux, On-Demand)"
_RECORDED = "2026-11-28"

#: Fargate Spot's discount below On-Demand assumed when no Spot rate is known:
#: the figure AWS advertises ("up to 70%"). Real Spot prices vary by region
#: and over time and are often a little above that floor.
SPOT_DISCOUNT = 0.70
#: Where :data:`SPOT_DISCOUNT` comes from.
SPOT_DISCOUNT_SOURCE = ("assumed 70% below On-Demand, the discount AWS advertises for "
                        "Fargate Spot (https://aws.amazon.com/fargate/pricing/); real Spot "
                        "prices vary by region and over time")


@dataclass(frozen=True, slots=True)
class FargatePrice:
    """Hourly prices of one region and architecture.

    Attributes:
        region: AWS region.
        arch: ``x86_64`` or ``arm64``.
        vcpu_hour: dollars per vCPU-hour.
        gib_hour: dollars per GiB-hour of memory.
        storage_gib_hour: dollars per GiB-hour of ephemeral storage above 20 GiB.
        source: where the figures come from.
        recorded: when they were recorded (ISO date).
    """

    region: str
    arch: str
    vcpu_hour: float
    gib_hour: float
    storage_gib_hour: float
    source: str = _SOURCE
    recorded: str = _RECORDED


def _table() -> dict[tuple[str, str], FargatePrice]:
    # Each row names its own source and recorded date, so a region added from
    # another source (a Price List snapshot, say) keeps its own provenance.
    # A region is added only with figures read from an official AWS source;
    # none is extrapolated from a neighbour. The four regions below share one
    # price: AWS's pricing page has grouped exactly these four under a single
    # Fargate rate (the stored copy of https://aws.amazon.com/jp/fargate/pricing/
    # from before the January 2019 price cut lists "US East (N. Virginia), US
    # East (Ohio), US West (Oregon), EU (Ireland)" together), which is why the
    # rows are identical; no stored official source contradicts today's figures,
    # and none re-states them per region either. No official per-region figures
    # for other regions could be found in stored sources on 2026-12-04 (the
    # current pricing page renders its figures with JavaScript); those regions
    # stay unpriced until `starburst pricing refresh` fetches them.
    rows: list[tuple[str, float, float, float, float, float, str, str]] = [
        # region, x86 vCPU, x86 GiB, arm vCPU, arm GiB, storage GiB, source, recorded
        ("us-east-1", 0.04048, 0.004445, 0.03238, 0.00356, 0.000111, _SOURCE, _RECORDED),
        ("us-east-2", 0.04048, 0.004445, 0.03238, 0.00356, 0.000111, _SOURCE, _RECORDED),
        ("us-west-2", 0.04048, 0.004445, 0.03238, 0.00356, 0.000111, _SOURCE, _RECORDED),
        ("eu-west-1", 0.04048, 0.004445, 0.03238, 0.00356, 0.000111, _SOURCE, _RECORDED),
    ]
    out: dict[tuple[str, str], FargatePrice] = {}
    for region, xc, xm, ac, am, st, source, recorded in rows:
        out[(region, "x86_64")] = FargatePrice(region, "x86_64", xc, xm, st, source, recorded)
        out[(region, "arm64")] = FargatePrice(region, "arm64", ac, am, st, source, recorded)
    return out


#: A price table: (region, architecture) -> price.
PriceTable = dict[tuple[str, str], FargatePrice]

#: The shipped price table, keyed by (region, architecture).
PRICES: PriceTable = _table()


def lookup(region: str, arch: str = "x86_64",
           table: PriceTable | None = None) -> FargatePrice:
    """The price of ``region``/``arch`` in ``table`` (default: the shipped table).

    Pass :func:`starburst.pricing_cache.table_in_use` as ``table`` to prefer
    prices fetched with ``starburst pricing refresh``.

    Raises:
        ConfigurationError: the table has no price for ``region``/``arch``.
    """
    prices = PRICES if table is None else table
    try:
        return prices[(region, arch)]
    except KeyError:
        known = sorted({r for r, a in prices if a == arch})
        raise ConfigurationError(
            f"no Fargate price is known for {region!r} ({arch}); known regions: "
            f"{', '.join(known) or 'none'}. Run `starburst pricing refresh --region {region}` "
            "to fetch current prices from the public AWS Price List (no credentials needed), "
            "or choose a known region."
        ) from None


def merge_tables(base: PriceTable, overlay: PriceTable) -> PriceTable:
    """``base`` with every row of ``overlay`` replacing or adding its own."""
    return {**base, **overlay}


def spot_price(on_demand: FargatePrice, discount: float = SPOT_DISCOUNT, *,
               source: str | None = None) -> FargatePrice:
    """A Fargate Spot price: ``on_demand``'s vCPU and memory rates less ``discount``.

    Ephemeral storage keeps its On-Demand rate. ``source`` (default: a note
    naming the discount and the On-Demand source) travels with the price.

    Raises:
        ConfigurationError: ``discount`` is not in [0, 1).
    """
    if not 0.0 <= discount < 1.0:
        raise ConfigurationError(
            f"spot discount {discount!r} must be a fraction in [0, 1), e.g. 0.7 for 70% off")
    factor = 1.0 - discount
    if source is None:
        source = (SPOT_DISCOUNT_SOURCE if discount == SPOT_DISCOUNT else
                  f"assumed {discount:.0%} below On-Demand (your figure)")
        source = f"{source}; On-Demand: {on_demand.source}"
    return replace(on_demand, vcpu_hour=on_demand.vcpu_hour * factor,
                   gib_hour=on_demand.gib_hour * factor, source=source)


def hourly_rate(price: FargatePrice, cpu: float, memory_mib: int, *, storage_gib: int = 20,
                public_ip: bool = False) -> float:
    """Dollars per hour for one task of this size."""
    rate = cpu * price.vcpu_hour + memory_mib / 1024 * price.gib_hour
    rate += max(0, storage_gib - FREE_STORAGE_GIB) * price.storage_gib_hour
    if public_ip:
        rate += IPV4_PER_HOUR
    return rate


def billed_seconds(pull_started: float, stopped: float) -> float:
    """Seconds Fargate bills for a task: per second, at least one minute."""
    return max(MINIMUM_SECONDS, math.ceil(max(0.0, stopped - pull_started)))


def task_cost(rate_per_hour: float, pull_started: float, stopped: float) -> float:
    """Dollars for one task that ran from ``pull_started`` to ``stopped`` (epoch seconds)."""
    return rate_per_hour * billed_seconds(pull_started, stopped) / 3600.0
