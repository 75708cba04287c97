"""Current Fargate prices from the AWS Pricing API (``starburst pricing refresh``).

``GetProducts`` of service code ``AmazonECS``, one paginated query per
region (``TERM_MATCH regionCode``); the Fargate rows are picked out by
their usage type, with or without the region prefix AWS puts in front::

    USE1-Fargate-vCPU-Hours:perCPU          x86_64 vCPU-hour   (Linux)
    USE1-Fargate-GB-Hours                   x86_64 GB-hour
    USE1-Fargate-ARM-vCPU-Hours:perCPU      arm64 vCPU-hour
    USE1-Fargate-ARM-GB-Hours               arm64 GB-hour
    USE1-Fargate-EphemeralStorage-GB-Hours  storage GB-hour (above the free 20 GB)
    USE1-SpotUsage...Fargate-...            the same, Fargate Spot (when listed)

Windows rows (``Fargate-Windows-...``) and everything else of AmazonECS
are skipped. Each row's price is the ``OnDemand`` term's USD price per
unit. The Pricing API has endpoints only in us-east-1, eu-central-1 and
ap-south-1 (:data:`ENDPOINT_REGIONS`); any of them answers for every
region. Botocore honours ``AWS_ENDPOINT_URL_PRICING``, which is how the
tests point it at a stub server.

The result is written to the local cache (:mod:`starburst.pricing_cache`)
with the date it was fetched; the estimate then prefers it over the
shipped table.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import pricing_cache
from ..exceptions import ConfigurationError
from ..pricing import PRICES, FargatePrice, PriceTable
from .errors import translate_errors

__all__ = ["ENDPOINT_REGIONS", "SERVICE_CODE", "FetchResult", "classify_usage_type",
           "fetch_prices", "parse_price_list", "pricing_client", "refresh"]

log = logging.getLogger("starburst")

#: Regions with a Pricing API endpoint (each answers for every region).
ENDPOINT_REGIONS = ("us-east-1", "eu-central-1", "ap-south-1")
#: The Price List service code of ECS, Fargate included.
SERVICE_CODE = "AmazonECS"

_TAILS: dict[str, tuple[str | None, str]] = {
    "Fargate-vCPU-Hours:perCPU": ("x86_64", "vcpu"),
    "Fargate-GB-Hours": ("x86_64", "gib"),
    "Fargate-ARM-vCPU-Hours:perCPU": ("arm64", "vcpu"),
    "Fargate-ARM-GB-Hours": ("arm64", "gib"),
    "Fargate-EphemeralStorage-GB-Hours": (None, "storage"),
}
# What may stand before "Fargate-": a region prefix ("USE1-"), a Spot marker.
_HEAD = re.compile(r"(?:[A-Za-z0-9]+-)?(?P<spot>SpotUsage[:-]?)?")


@dataclass(frozen=True)
class UsageKind:
    """What one Price List row prices."""

    spot: bool
    arch: str | None  # None: every architecture (storage)
    dimension: str  # "vcpu", "gib" or "storage"


def classify_usage_type(usage_type: str) -> UsageKind | None:
    """The Fargate Linux dimension a ``usagetype`` prices, or None for anything else."""
    at = usage_type.find("Fargate-")
    if at < 0:
        return None
    kind = _TAILS.get(usage_type[at:])
    head = _HEAD.fullmatch(usage_type[:at])
    if kind is None or head is None:
        return None
    return UsageKind(spot=head.group("spot") is not None, arch=kind[0], dimension=kind[1])


def _usd(item: dict[str, Any]) -> float | None:
    """The USD price per unit of an item's OnDemand term (first tier)."""
    for term in (item.get("terms", {}).get("OnDemand") or {}).values():
        dims = list((term.get("priceDimensions") or {}).values())
        dims.sort(key=lambda d: float(d.get("beginRange", "0") or 0))
        for dim in dims:
            usd = (dim.get("pricePerUnit") or {}).get("USD")
            if usd is not None:
                return float(usd)
    return None


@dataclass
class FetchResult:
    """Prices found in the Price List, and what was missing."""

    cache: pricing_cache.PriceCache
    notes: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def parse_price_list(items: Iterable[str | dict[str, Any]], *, fetched: datetime,
                     source: str, regions: Sequence[str] | None = None,
                     fallback: PriceTable | None = None) -> FetchResult:
    """Build price tables from ``GetProducts`` ``PriceList`` entries (pure).

    Args:
        items: PriceList entries, each a JSON document (string) or its parsed dict.
        fetched: when the API answered (UTC).
        source: what was asked, for each row's ``source``.
        regions: the regions asked for; a region among them without a
            complete x86_64 price is reported in ``missing``.
        fallback: where a storage price comes from when the Price List has
            none for a region (default: the shipped table).
    """
    fallback = PRICES if fallback is None else fallback
    found: dict[tuple[bool, str, str | None, str], float] = {}
    notes: list[str] = []
    for raw in items:
        item: dict[str, Any] = json.loads(raw) if isinstance(raw, str) else raw
        attrs = (item.get("product") or {}).get("attributes") or {}
        kind = classify_usage_type(str(attrs.get("usagetype", "")))
        region = attrs.get("regionCode")
        if kind is None or not region:
            continue
        price = _usd(item)
        if price is None or price < 0:
            continue
        key = (kind.spot, str(region), kind.arch, kind.dimension)
        if key in found and found[key] != price:
            notes.append(f"{region}: two prices for {attrs.get('usagetype')}; kept "
                         f"{found[key]}, ignored {price}")
            continue
        found[key] = price
    day = fetched.astimezone(UTC).date().isoformat()
    tables: dict[bool, PriceTable] = {False: {}, True: {}}
    for spot in (False, True):
        for region in sorted({k[1] for k in found if k[0] == spot}):
            storage = found.get((spot, region, None, "storage"),
                                found.get((False, region, None, "storage")))
            storage_note = ""
            if storage is None:
                shipped = fallback.get((region, "x86_64"))
                if shipped is None:
                    notes.append(f"{region}: no ephemeral storage price listed; skipped")
                    continue
                storage = shipped.storage_gib_hour
                storage_note = f"; storage price from {shipped.source}, {shipped.recorded}"
            for arch in ("x86_64", "arm64"):
                vcpu = found.get((spot, region, arch, "vcpu"))
                gib = found.get((spot, region, arch, "gib"))
                if vcpu is None or gib is None:
                    continue
                what = "Fargate Spot" if spot else "Linux, On-Demand"
                tables[spot][(region, arch)] = FargatePrice(
                    region=region, arch=arch, vcpu_hour=vcpu, gib_hour=gib,
                    storage_gib_hour=storage, source=f"{source} ({what}){storage_note}",
                    recorded=day)
    missing = [r for r in (regions or []) if (r, "x86_64") not in tables[False]]
    cache = pricing_cache.PriceCache(
        fetched=fetched.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), source=source,
        on_demand=tables[False], spot=tables[True])
    return FetchResult(cache=cache, notes=notes, missing=missing)


def pricing_client(endpoint_region: str = "us-east-1") -> Any:
    """A Pricing API client from starburst's client factory (retries, endpoints)."""
    if endpoint_region not in ENDPOINT_REGIONS:
        raise ConfigurationError(
            f"the AWS Pricing API has no endpoint in {endpoint_region!r}; use one of "
            f"{', '.join(ENDPOINT_REGIONS)} (each answers for every region)")
    from .clients import client

    make: Callable[..., Any] = client  # the factory's overloads name only the core services
    return make("pricing", region=endpoint_region)


def fetch_prices(regions: Sequence[str], *, endpoint_region: str = "us-east-1",
                 client: Any | None = None, now: datetime | None = None) -> FetchResult:
    """Ask the Pricing API for the Fargate prices of ``regions`` (one query each)."""
    if not regions:
        raise ConfigurationError("name at least one region to fetch prices for")
    api = client if client is not None else pricing_client(endpoint_region)
    items: list[str | dict[str, Any]] = []
    for region in regions:
        paginator = api.get_paginator("get_products")
        pages = paginator.paginate(
            ServiceCode=SERVICE_CODE, FormatVersion="aws_v1", MaxResults=100,
            Filters=[{"Type": "TERM_MATCH", "Field": "regionCode", "Value": region}])
        with translate_errors(f"AWS Pricing API GetProducts ({SERVICE_CODE}, {region})"):
            for page in pages:
                items.extend(page.get("PriceList", []))
    source = f"AWS Price List API (GetProducts {SERVICE_CODE}, endpoint {endpoint_region})"
    return parse_price_list(items, fetched=now or datetime.now(UTC), source=source,
                            regions=regions)


def refresh(regions: Sequence[str] | None = None, *, endpoint_region: str = "us-east-1",
            path: Path | None = None, client: Any | None = None,
            now: datetime | None = None) -> tuple[FetchResult, Path]:
    """Fetch current prices and merge them into the local cache.

    Args:
        regions: regions to refresh (default: every region of the table in
            use, i.e. the shipped ones and those cached before).
        endpoint_region: the Pricing API endpoint to ask.
        path: the cache file (default :func:`starburst.pricing_cache.cache_path`).
        client: a Pricing API client (default: one from the client factory).
        now: the time to record (default: now, UTC).

    Returns:
        What was fetched (with notes and regions without a price) and the
        cache file written.

    Raises:
        ConfigurationError: no region of ``regions`` had a Fargate price.
        CloudError: the Pricing API call failed (the message says why).
    """
    old = pricing_cache.load(path)
    if not regions:
        regions = sorted({r for r, _ in pricing_cache.table_in_use(path, cache=old)})
    result = fetch_prices(regions, endpoint_region=endpoint_region, client=client, now=now)
    if not result.cache.on_demand:
        raise ConfigurationError(
            f"the AWS Price List has no Fargate (Linux) price for {', '.join(regions)}; "
            "check the region names (e.g. us-east-1); nothing was written")
    merged = old.merged(result.cache) if old is not None else result.cache
    written = pricing_cache.save(merged, path)
    for note in result.notes:
        log.info("pricing refresh: %s", note)
    return result, written
