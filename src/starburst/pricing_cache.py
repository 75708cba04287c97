"""The local cache of the prices ``starburst pricing refresh`` fetched.

``starburst pricing refresh`` (:mod:`starburst.aws.price_refresh`) writes
``<cache>/prices.json``; this module reads and writes that file and
builds the price tables in use from it. :mod:`starburst.pricing` and
:mod:`starburst.gpu` stay pure: callers pass :func:`table_in_use` as
``table=`` to :func:`~starburst.pricing.lookup`, and
:func:`gpu_table_in_use` as ``table=`` to
:func:`~starburst.gpu.instance_price`. In both, a cached row replaces the
shipped row of the same key (the newer figure wins).

``<cache>`` is ``STARBURST_CACHE_DIR`` when set, else
``platformdirs.user_cache_dir("starburst")`` (the same root as the
environment-sync cache). The file::

    {"format": 1,
     "fetched": "2026-11-28T09:15:02Z",          # when the last refresh ran
     "source": "AWS Price List bulk offers (https://pricing.us-east-1.amazonaws.com/...)",
     "on_demand": [{"region": "us-east-1", "arch": "x86_64", "vcpu_hour": 0.04048,
                    "gib_hour": 0.004445, "storage_gib_hour": 0.000111,
                    "source": "<offer URL> (Linux, On-Demand)", "recorded": "2026-11-11"},
                   ...],
     "spot": [...],                               # only if the Price List carried Spot rates
     "gpu_on_demand": [{"instance_type": "g4dn.xlarge", "region": "eu-central-1",
                        "hourly": 0.658, "source": "...", "recorded": "2026-11-28"}, ...]}

``gpu_on_demand`` (EC2 GPU instances, Linux On-Demand) is optional: a file
written before it existed reads as one without GPU rows, and a reader
that does not know it ignores it, so the format number stays 1.

An unreadable or foreign cache is ignored with a warning in the log (the
shipped table still works); writes go to a temporary file and are renamed
into place.
"""

from __future__ import annotations

import json
import logging
import math
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from .gpu import GPU_PRICES, GpuPriceTable, InstancePrice
from .pricing import (
    PRICES,
    SPOT_DISCOUNT,
    FargatePrice,
    PriceTable,
    lookup,
    merge_tables,
    spot_price,
)

__all__ = ["CACHE_FORMAT", "CACHE_NAME", "PriceCache", "cache_path", "gpu_table_in_use",
           "load", "save", "spot_price_in_use", "spot_table_in_use", "table_in_use"]

log = logging.getLogger("starburst")

#: Version of the file layout; a file of another version is ignored.
CACHE_FORMAT = 1
#: File name of the cache inside the cache directory.
CACHE_NAME = "prices.json"

_FIELDS = ("region", "arch", "vcpu_hour", "gib_hour", "storage_gib_hour", "source", "recorded")
_GPU_FIELDS = ("instance_type", "region", "hourly", "source", "recorded")


@dataclass(frozen=True)
class PriceCache:
    """Prices fetched from the AWS Price List.

    Attributes:
        fetched: when the last refresh ran (ISO 8601, UTC).
        source: where its Fargate prices came from (bulk offers or API).
        on_demand: Fargate Linux On-Demand prices by (region, architecture).
        spot: Fargate Spot prices, when the Price List carried them.
        gpu: EC2 GPU instance Linux On-Demand prices by (instance type, region).
    """

    fetched: str
    source: str
    on_demand: PriceTable = field(default_factory=dict)
    spot: PriceTable = field(default_factory=dict)
    gpu: GpuPriceTable = field(default_factory=dict)

    def merged(self, newer: PriceCache) -> PriceCache:
        """This cache with ``newer``'s rows (and its date and source) on top."""
        return PriceCache(fetched=newer.fetched, source=newer.source,
                          on_demand=merge_tables(self.on_demand, newer.on_demand),
                          spot=merge_tables(self.spot, newer.spot),
                          gpu={**self.gpu, **newer.gpu})

    def to_json(self) -> dict[str, Any]:
        """The cache file's content."""
        data: dict[str, Any] = {
            "format": CACHE_FORMAT, "fetched": self.fetched, "source": self.source,
            "on_demand": [asdict(p) for _, p in sorted(self.on_demand.items())],
            "spot": [asdict(p) for _, p in sorted(self.spot.items())]}
        if self.gpu:
            data["gpu_on_demand"] = [
                {"instance_type": p.instance_type, "region": p.region, "hourly": p.hourly,
                 "source": p.source, "recorded": p.recorded}
                for _, p in sorted(self.gpu.items())]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PriceCache:
        """Parse a cache file's content.

        Raises:
            ValueError: the content is not a price cache of this version.
        """
        if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
            raise ValueError(f"not a starburst price cache of format {CACHE_FORMAT}")
        return cls(fetched=str(data["fetched"]), source=str(data["source"]),
                   on_demand=_rows(data.get("on_demand", [])),
                   spot=_rows(data.get("spot", [])),
                   gpu=_gpu_rows(data.get("gpu_on_demand", [])))


def _rows(items: Any) -> PriceTable:
    if not isinstance(items, list):
        raise ValueError("price rows must be a list")
    table: PriceTable = {}
    for item in items:
        if not isinstance(item, dict) or set(item) != set(_FIELDS):
            raise ValueError(f"a price row needs exactly the fields {', '.join(_FIELDS)}")
        price = FargatePrice(region=str(item["region"]), arch=str(item["arch"]),
                             vcpu_hour=float(item["vcpu_hour"]),
                             gib_hour=float(item["gib_hour"]),
                             storage_gib_hour=float(item["storage_gib_hour"]),
                             source=str(item["source"]), recorded=str(item["recorded"]))
        if min(price.vcpu_hour, price.gib_hour, price.storage_gib_hour) < 0:
            raise ValueError(f"negative price for {price.region} ({price.arch})")
        table[(price.region, price.arch)] = price
    return table


def _gpu_rows(items: Any) -> GpuPriceTable:
    if not isinstance(items, list):
        raise ValueError("GPU price rows must be a list")
    table: GpuPriceTable = {}
    for item in items:
        if not isinstance(item, dict) or set(item) != set(_GPU_FIELDS):
            raise ValueError(f"a GPU price row needs exactly the fields {', '.join(_GPU_FIELDS)}")
        price = InstancePrice(instance_type=str(item["instance_type"]),
                              region=str(item["region"]), hourly=float(item["hourly"]),
                              spot=False, source=str(item["source"]),
                              recorded=str(item["recorded"]))
        if not 0 < price.hourly < math.inf:
            raise ValueError(f"non-positive price for {price.instance_type} in {price.region}")
        table[(price.instance_type, price.region)] = price
    return table


def cache_path() -> Path:
    """``$STARBURST_CACHE_DIR/prices.json``, or the user cache directory's."""
    env = os.environ.get("STARBURST_CACHE_DIR")
    root = Path(env) if env else Path(platformdirs.user_cache_dir("starburst"))
    return root / CACHE_NAME


def load(path: Path | None = None) -> PriceCache | None:
    """The cached prices, or None when there is no usable cache (a broken one is logged)."""
    path = path if path is not None else cache_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("ignoring the price cache %s: %s", path, exc)
        return None
    try:
        return PriceCache.from_json(json.loads(text))
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring the price cache %s (%s); run `starburst pricing refresh` "
                    "to rewrite it", path, exc)
        return None


def save(cache: PriceCache, path: Path | None = None) -> Path:
    """Write ``cache`` atomically; return where it went."""
    path = path if path is not None else cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    try:
        scratch.write_text(json.dumps(cache.to_json(), indent=1) + "\n", encoding="utf-8")
        scratch.replace(path)
    finally:
        scratch.unlink(missing_ok=True)
    return path


def table_in_use(path: Path | None = None, *,
                 cache: PriceCache | None = None) -> PriceTable:
    """The shipped table with the cached On-Demand prices on top (cache preferred)."""
    cache = cache if cache is not None else load(path)
    return PRICES if cache is None else merge_tables(PRICES, cache.on_demand)


def gpu_table_in_use(path: Path | None = None, *,
                     cache: PriceCache | None = None) -> GpuPriceTable:
    """The shipped GPU instance prices with the cached ones on top (cache preferred)."""
    cache = cache if cache is not None else load(path)
    return GPU_PRICES if cache is None else {**GPU_PRICES, **cache.gpu}


def spot_table_in_use(path: Path | None = None, *,
                      cache: PriceCache | None = None) -> PriceTable:
    """Fargate Spot prices from the cache (empty: none known, apply a discount)."""
    cache = cache if cache is not None else load(path)
    return {} if cache is None else dict(cache.spot)


def spot_price_in_use(region: str, arch: str = "x86_64", *, discount: float | None = None,
                      path: Path | None = None,
                      cache: PriceCache | None = None) -> FargatePrice:
    """The Fargate Spot price a session uses, with where it comes from in ``source``.

    In order: the On-Demand price less ``discount`` when the caller names a
    discount (the user's own figure); the Spot rate ``starburst pricing
    refresh`` cached for ``region``/``arch``; else the On-Demand price in
    use less :data:`~starburst.pricing.SPOT_DISCOUNT` (AWS's advertised
    figure, said so in the source).

    Raises:
        ConfigurationError: no On-Demand price is known for ``region``/``arch``,
            or ``discount`` is not in [0, 1).
    """
    cache = cache if cache is not None else load(path)
    on_demand = lookup(region, arch, table=table_in_use(cache=cache))
    if discount is not None:
        return spot_price(on_demand, discount)
    known = spot_table_in_use(cache=cache).get((region, arch))
    if known is not None:
        return known
    return spot_price(on_demand, SPOT_DISCOUNT)
