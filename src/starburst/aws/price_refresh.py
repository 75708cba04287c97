"""``starburst pricing refresh``: fetch current prices into the local cache.

Two routes, chosen by ``source``::

    Fargate   "bulk"  public offer files (price_list)        no credentials
              "api"   GetProducts AmazonECS (pricing_api)     credentials
              "auto"  bulk; if unreachable, the API when credentials exist
    GPU               GetProducts AmazonEC2 (pricing_api)     credentials

``gpu=None`` (the default) fetches GPU instance prices when credentials
are found and reports why not otherwise, without failing the Fargate
refresh; ``gpu=True`` makes a GPU failure an error; ``gpu=False`` skips
them. Everything fetched is merged into :mod:`starburst.pricing_cache`
(newer rows replace older ones), which estimates and sessions prefer over
the shipped tables.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import pricing_cache
from ..exceptions import CloudError, ConfigurationError
from . import price_list

if TYPE_CHECKING:
    import httpx

    from .pricing_api import FetchResult, GpuFetchResult

__all__ = ["GPU_PHASE", "SOURCES", "ProgressCallback", "RefreshResult", "refresh"]

log = logging.getLogger("starburst")

#: The routes ``source=`` may name.
SOURCES = ("auto", "bulk", "api")
#: The progress phases, as the command shows them.
BULK_PHASE = "Fargate (bulk offers)"
API_PHASE = "Fargate (Pricing API)"
GPU_PHASE = "GPU instances (Pricing API)"
#: Called with (phase, region, regions done, regions in the phase).
ProgressCallback = Callable[[str, str, int, int], None]

_NO_GPU_CREDENTIALS = (
    "they come from the AWS Pricing API (GetProducts AmazonEC2; the EC2 "
    "bulk offer files are hundreds of MB per region), which needs AWS credentials with "
    "pricing:GetProducts, and none were found: configure credentials (`aws configure`) "
    "and run `starburst pricing refresh` again, or pass a rate (`starburst estimate "
    "--gpu-rate TYPE=DOLLARS`, instance_rate= to the Executor)")


@dataclass
class RefreshResult:
    """What a refresh fetched and wrote.

    Attributes:
        cache: the rows this refresh fetched (merged into the file at ``path``).
        route: where the Fargate prices came from: ``"bulk"`` or ``"api"``.
        path: the cache file written.
        missing: regions asked for without a Fargate (Linux) price.
        published: per region, the bulk offer's ``publicationDate`` (bulk route).
        gpu_missing: per region, the catalogued GPU types without a listed price.
        gpu_skipped: why GPU prices were not fetched, or None when they were.
        notes: anything worth saying (a fallback, an odd Price List row).
    """

    cache: pricing_cache.PriceCache
    route: str
    path: Path
    missing: list[str] = field(default_factory=list)
    published: dict[str, str] = field(default_factory=dict)
    gpu_missing: dict[str, list[str]] = field(default_factory=dict)
    gpu_skipped: str | None = None
    notes: list[str] = field(default_factory=list)


def _credentials() -> bool:
    try:
        from .clients import has_credentials
    except ImportError:  # no boto3: the aws extra is missing
        return False
    return has_credentials()


def _phase(progress: ProgressCallback | None, phase: str) -> Callable[[str, int, int], None]:
    def report(region: str, done: int, total: int) -> None:
        if progress is not None:
            progress(phase, region, done, total)
    return report


def _api_fargate(regions: Sequence[str], *, endpoint_region: str, client: Any | None,
                 now: datetime, progress: ProgressCallback | None) -> FetchResult:
    from .pricing_api import fetch_prices

    return fetch_prices(regions, endpoint_region=endpoint_region, client=client, now=now,
                        progress=_phase(progress, API_PHASE))


def _unreachable(exc: price_list.PriceListUnavailable, why: str) -> CloudError:
    return CloudError(
        f"{exc}; {why}. Either let starburst reach the AWS Price List (check the network and "
        f"proxy, or point {price_list.PRICE_LIST_URL_ENV} at a mirror), or configure AWS "
        "credentials with pricing:GetProducts and run `starburst pricing refresh "
        "--source api`")


def _gpu(regions: Sequence[str], gpu: bool | None, *, endpoint_region: str,
         client: Any | None, now: datetime,
         progress: ProgressCallback | None) -> tuple[GpuFetchResult | None, str | None]:
    """The GPU prices, or None and why they were not fetched."""
    if gpu is False:
        return None, "not asked for (--no-gpu)"
    if gpu is None and not _credentials():
        return None, _NO_GPU_CREDENTIALS
    from .pricing_api import fetch_gpu_prices

    try:
        return fetch_gpu_prices(regions, endpoint_region=endpoint_region, client=client,
                                now=now, progress=_phase(progress, GPU_PHASE)), None
    except CloudError as exc:
        if gpu:
            raise
        return None, str(exc)


def refresh(regions: Sequence[str] | None = None, *, all_regions: bool = False,
            source: str = "auto", gpu: bool | None = None, endpoint_region: str = "us-east-1",
            path: Path | None = None, base_url: str | None = None, client: Any | None = None,
            transport: httpx.BaseTransport | None = None, now: datetime | None = None,
            progress: ProgressCallback | None = None) -> RefreshResult:
    """Fetch current prices and merge them into the local cache.

    Args:
        regions: regions to refresh (default: every region of the Fargate
            table in use, i.e. the shipped ones and those cached before).
        all_regions: every region of the AmazonECS region index instead
            (bulk route only).
        source: ``"auto"``, ``"bulk"`` or ``"api"``: where Fargate prices come
            from (see the module docstring).
        gpu: fetch GPU instance prices: None when credentials are found,
            True always (failing if it cannot), False never.
        endpoint_region: the Pricing API endpoint to ask.
        path: the cache file (default :func:`starburst.pricing_cache.cache_path`).
        base_url: where the bulk offer files are (default
            :func:`starburst.aws.price_list.price_list_url`).
        client: a Pricing API client (default: one from the client factory).
        transport: an httpx transport for the bulk offer files (tests).
        now: the time to record (default: now, UTC).
        progress: called as each region is done (see :data:`ProgressCallback`).

    Raises:
        ConfigurationError: a bad option, or no region asked for had a
            Fargate price (nothing is written then).
        CloudError: the prices could not be fetched; the message names both
            routes and what each needs. :class:`~starburst.aws.price_list.
            PriceListUnavailable` when ``source="bulk"`` could not read the files.
    """
    if source not in SOURCES:
        raise ConfigurationError(f"source={source!r} is not one of {', '.join(SOURCES)}")
    if all_regions and regions:
        raise ConfigurationError("pass all_regions=True or regions, not both")
    if all_regions and source == "api":
        raise ConfigurationError(
            "all_regions=True reads the region list of the bulk offer files: use "
            "source='bulk' or 'auto', or name the regions for the Pricing API")
    old = pricing_cache.load(path)
    wanted: list[str] | None = None if all_regions else list(regions or sorted(
        {r for r, _ in pricing_cache.table_in_use(path, cache=old)}))
    now = now or datetime.now(UTC)
    notes: list[str] = []
    published: dict[str, str] = {}
    if source == "api":
        assert wanted is not None
        fetched, route = _api_fargate(wanted, endpoint_region=endpoint_region, client=client,
                                      now=now, progress=progress), "api"
    else:
        try:
            bulk = price_list.fetch_bulk(wanted, base=base_url, transport=transport, now=now,
                                         progress=_phase(progress, BULK_PHASE))
        except price_list.PriceListUnavailable as exc:
            if source == "bulk":
                raise
            if wanted is None:
                raise _unreachable(exc, "every region (--all-regions) needs the bulk "
                                        "offers' region index; name the regions with "
                                        "--region to ask the Pricing API") from exc
            if not _credentials():
                raise _unreachable(exc, "no AWS credentials were found for the Pricing "
                                        "API route either") from exc
            notes.append(f"the AWS Price List bulk offers could not be read ({exc}); asked "
                         "the Pricing API (GetProducts) instead")
            fetched, route = _api_fargate(wanted, endpoint_region=endpoint_region,
                                          client=client, now=now, progress=progress), "api"
        else:
            fetched, route, published, wanted = bulk.fetch, "bulk", bulk.published, \
                bulk.regions
    if not fetched.cache.on_demand:
        raise ConfigurationError(
            f"the AWS Price List has no Fargate (Linux) price for {', '.join(wanted)}; "
            "check the region names (e.g. us-east-1); nothing was written")
    gpu_result, gpu_skipped = _gpu(wanted, gpu, endpoint_region=endpoint_region,
                                   client=client, now=now, progress=progress)
    cache = fetched.cache
    if gpu_result is not None:
        cache = replace(cache, gpu=gpu_result.prices)
    merged = old.merged(cache) if old is not None else cache
    written = pricing_cache.save(merged, path)
    notes += fetched.notes + (gpu_result.notes if gpu_result is not None else [])
    for note in notes:
        log.info("pricing refresh: %s", note)
    return RefreshResult(cache=cache, route=route, path=written, missing=fetched.missing,
                         published=published,
                         gpu_missing=gpu_result.missing if gpu_result is not None else {},
                         gpu_skipped=gpu_skipped, notes=notes)
