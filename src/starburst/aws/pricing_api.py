"""Current prices from the AWS Pricing API (``starburst pricing refresh --source api``).

This is the route that needs AWS credentials (``pricing:GetProducts``).
:mod:`starburst.aws.price_refresh` uses it for GPU instance prices always,
and for Fargate when asked to or when the public bulk offer files
(:mod:`starburst.aws.price_list`) cannot be read.

**Fargate.** ``GetProducts`` of service code ``AmazonECS``, one paginated
query per region (``TERM_MATCH regionCode``); the Fargate rows are picked
out by their usage type, with or without the region prefix AWS puts in
front::

    USE1-Fargate-vCPU-Hours:perCPU          x86_64 vCPU-hour   (Linux)
    USE1-Fargate-GB-Hours                   x86_64 GB-hour
    USE1-Fargate-ARM-vCPU-Hours:perCPU      arm64 vCPU-hour
    USE1-Fargate-ARM-GB-Hours               arm64 GB-hour
    USE1-Fargate-EphemeralStorage-GB-Hours  storage GB-hour (above the free 20 GB)
    USE1-SpotUsage...Fargate-...            the same, Fargate Spot (when listed)

Windows rows (``Fargate-Windows-...``) and everything else of AmazonECS
are skipped. Each row's price is the ``OnDemand`` term's USD price per
unit. :func:`parse_price_list` also reads the rows of a bulk offer file.

**GPU instances.** ``GetProducts`` of ``AmazonEC2``, one query per region
and catalogued instance type (:mod:`starburst.gpu`), with the
``TERM_MATCH`` filters of :data:`GPU_FILTERS` that leave exactly the
Linux, shared-tenancy, On-Demand row of a type (no SQL Server, no
capacity reservation, no licence included). The EC2 bulk offer file of
one region is hundreds of MB, which is why GPU prices come from the API.

The Pricing API has endpoints only in us-east-1, eu-central-1 and
ap-south-1 (:data:`ENDPOINT_REGIONS`); any of them answers for every
region. Botocore honours ``AWS_ENDPOINT_URL_PRICING``, which is how the
tests point it at a stub server. Rows are dated with the day the API
answered.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from .. import pricing_cache
from ..exceptions import ConfigurationError
from ..gpu import GpuPriceTable, InstancePrice, gpu_instance, gpu_instances, known_gpus
from ..pricing import PRICES, FargatePrice, PriceTable
from .errors import translate_errors

__all__ = ["EC2_SERVICE_CODE", "ENDPOINT_REGIONS", "GPU_FILTERS", "SERVICE_CODE", "FetchResult",
           "GpuFetchResult", "classify_usage_type", "fetch_gpu_prices", "fetch_prices",
           "gpu_catalog", "parse_gpu_price_list", "parse_price_list", "pricing_client"]

log = logging.getLogger("starburst")

#: Regions with a Pricing API endpoint (each answers for every region).
ENDPOINT_REGIONS = ("us-east-1", "eu-central-1", "ap-south-1")
#: The Price List service code of ECS, Fargate included.
SERVICE_CODE = "AmazonECS"
#: The Price List service code of EC2 (instances).
EC2_SERVICE_CODE = "AmazonEC2"
#: With ``regionCode`` and ``instanceType``, these leave the one row that
#: prices a plain Linux instance: shared tenancy, no pre-installed software,
#: no licence, a running instance (not an unused capacity reservation).
GPU_FILTERS: tuple[tuple[str, str], ...] = (
    ("operatingSystem", "Linux"), ("tenancy", "Shared"), ("preInstalledSw", "NA"),
    ("capacitystatus", "Used"), ("licenseModel", "No License required"))
# GetProducts calls in flight at once for the GPU types of a region: one query
# per type (40 of them) takes ~0.2 s each; eight at a time keeps a region to
# about a second, well under the Price List Query API's request rate, and
# botocore's adaptive retries absorb any throttling.
_GPU_QUERIES_AT_ONCE = 8

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
                     fallback: PriceTable | None = None,
                     recorded: str | None = None) -> FetchResult:
    """Build price tables from ``GetProducts`` ``PriceList`` entries (pure).

    Args:
        items: PriceList entries, each a JSON document (string) or its parsed
            dict: ``{"product": {"attributes": ...}, "terms": {"OnDemand": ...}}``.
        fetched: when the API answered (UTC).
        source: what was asked, for each row's ``source``.
        regions: the regions asked for; a region among them without a
            complete x86_64 price is reported in ``missing``.
        fallback: where a storage price comes from when the Price List has
            none for a region (default: the shipped table).
        recorded: each row's ``recorded`` date (default: ``fetched``'s day).
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
    day = recorded or fetched.astimezone(UTC).date().isoformat()
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
                 client: Any | None = None, now: datetime | None = None,
                 progress: Callable[[str, int, int], None] | None = None) -> FetchResult:
    """Ask the Pricing API for the Fargate prices of ``regions`` (one query each).

    ``progress`` is called with (region, regions done, regions) after each region.
    """
    if not regions:
        raise ConfigurationError("name at least one region to fetch prices for")
    api = client if client is not None else pricing_client(endpoint_region)
    items: list[str | dict[str, Any]] = []
    for done, region in enumerate(regions, start=1):
        paginator = api.get_paginator("get_products")
        pages = paginator.paginate(
            ServiceCode=SERVICE_CODE, FormatVersion="aws_v1", MaxResults=100,
            Filters=[{"Type": "TERM_MATCH", "Field": "regionCode", "Value": region}])
        with translate_errors(f"AWS Pricing API GetProducts ({SERVICE_CODE}, {region})"):
            for page in pages:
                items.extend(page.get("PriceList", []))
        if progress is not None:
            progress(region, done, len(regions))
    source = f"AWS Price List API (GetProducts {SERVICE_CODE}, endpoint {endpoint_region})"
    return parse_price_list(items, fetched=now or datetime.now(UTC), source=source,
                            regions=regions)


# -- GPU instances (AmazonEC2) ---------------------------------------------------


@dataclass
class GpuFetchResult:
    """GPU instance prices found in the Price List, and what was missing.

    Attributes:
        prices: Linux On-Demand prices by (instance type, region).
        missing: per region, the catalogued types without a listed price.
        notes: anything odd met on the way (two prices for one type).
        source: what was asked.
    """

    prices: GpuPriceTable
    missing: dict[str, list[str]]
    notes: list[str]
    source: str


def gpu_catalog() -> list[str]:
    """Every catalogued GPU instance type, sorted."""
    return sorted({i.instance_type for g in known_gpus() for i in gpu_instances(g)})


def parse_gpu_price_list(items: Iterable[str | dict[str, Any]], *, fetched: datetime,
                         source: str) -> tuple[GpuPriceTable, list[str]]:
    """Linux On-Demand GPU instance prices from AmazonEC2 ``PriceList`` entries (pure).

    Rows are checked against :data:`GPU_FILTERS` again, so an answer that
    ignored a filter cannot slip in a Windows or dedicated price. Two
    different prices for one type and region keep the first, with a note.

    Returns:
        The prices by (instance type, region), and the notes.
    """
    day = fetched.astimezone(UTC).date().isoformat()
    table: GpuPriceTable = {}
    notes: list[str] = []
    for raw in items:
        item: dict[str, Any] = json.loads(raw) if isinstance(raw, str) else raw
        attrs = (item.get("product") or {}).get("attributes") or {}
        itype, region = attrs.get("instanceType"), attrs.get("regionCode")
        if not itype or not region or any(attrs.get(k) != v for k, v in GPU_FILTERS):
            continue
        price = _usd(item)
        if price is None or not price > 0:
            continue
        key = (str(itype), str(region))
        if key in table:
            if table[key].hourly != price:
                notes.append(f"{region}: two prices for {itype}; kept {table[key].hourly}, "
                             f"ignored {price}")
            continue
        table[key] = InstancePrice(key[0], key[1], price, False,
                                   f"{source} (Linux, On-Demand, shared tenancy)", day)
    return table, notes


def fetch_gpu_prices(regions: Sequence[str], *, instance_types: Sequence[str] | None = None,
                     endpoint_region: str = "us-east-1", client: Any | None = None,
                     now: datetime | None = None,
                     progress: Callable[[str, int, int], None] | None = None
                     ) -> GpuFetchResult:
    """Ask the Pricing API for the Linux On-Demand prices of GPU instances.

    Args:
        regions: where.
        instance_types: which (default: every catalogued GPU type).
        endpoint_region: the Pricing API endpoint to ask.
        client: a Pricing API client (default: one from the client factory).
        now: the time to record (default: now, UTC).
        progress: called with (region, regions done, regions) after each region.

    Raises:
        CloudError: a GetProducts call failed (the message says why).
    """
    types = [gpu_instance(t).instance_type for t in instance_types] if instance_types \
        else gpu_catalog()
    api = client if client is not None else pricing_client(endpoint_region)

    def query(region: str, itype: str) -> list[str | dict[str, Any]]:
        filters = [{"Type": "TERM_MATCH", "Field": "regionCode", "Value": region},
                   {"Type": "TERM_MATCH", "Field": "instanceType", "Value": itype},
                   *({"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in GPU_FILTERS)]
        found: list[str | dict[str, Any]] = []
        with translate_errors(f"AWS Pricing API GetProducts ({EC2_SERVICE_CODE}, {itype}, "
                              f"{region})"):
            pages = api.get_paginator("get_products").paginate(
                ServiceCode=EC2_SERVICE_CODE, FormatVersion="aws_v1", MaxResults=100,
                Filters=filters)
            for page in pages:
                found.extend(page.get("PriceList", []))
        return found

    source = (f"AWS Price List API (GetProducts {EC2_SERVICE_CODE}, "
              f"endpoint {endpoint_region})")
    fetched = now or datetime.now(UTC)
    prices: GpuPriceTable = {}
    notes: list[str] = []
    missing: dict[str, list[str]] = {}
    with ThreadPoolExecutor(max_workers=_GPU_QUERIES_AT_ONCE,
                            thread_name_prefix="starburst-pricing") as pool:
        for done, region in enumerate(regions, start=1):
            answers = pool.map(partial(query, region), types)
            items = [item for answer in answers for item in answer]
            table, found_notes = parse_gpu_price_list(items, fetched=fetched, source=source)
            prices.update(table)
            notes += found_notes
            absent = [t for t in types if (t, region) not in table]
            if absent:
                missing[region] = absent
            if progress is not None:
                progress(region, done, len(regions))
    return GpuFetchResult(prices=prices, missing=missing, notes=notes, source=source)
