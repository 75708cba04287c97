"""The local cache of Fargate prices fetched from the AWS Pricing API.

``starburst pricing refresh`` (:mod:`starburst.aws.pricing_api`) writes
``<cache>/prices.json``; this module reads and writes that file and
builds the price table in use from it. :mod:`starburst.pricing` stays
pure: callers pass :func:`table_in_use` as ``table=`` to
:func:`~starburst.pricing.lookup`.

``<cache>`` is ``STARBURST_CACHE_DIR`` when set, else
``platformdirs.user_cache_dir("starburst")`` (the same root as the
environment-sync cache). The file::

    {"format": 1,
     "fetched": "2026-11-28T09:15:02Z",          # when the Pricing API answered
     "source": "AWS Price List API (GetProducts, AmazonECS; endpoint us-east-1)",
     "on_demand": [{"region": "us-east-1", "arch": "x86_64", "vcpu_hour": 0.04048,
                    "gib_hour": 0.004445, "storage_gib_hour": 0.000111,
                    "source": "...", "recorded": "2026-11-28"}, ...],
     "spot": [...]}                               # only if the Price List carried Spot rates

An unreadable or foreign cache is ignored with a warning in the log (the
shipped table still works); writes go to a temporary file and are renamed
into place.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from .pricing import (
    PRICES,
    SPOT_DISCOUNT,
    FargatePrice,
    PriceTable,
    lookup,
    merge_tables,
    spot_price,
)

__all__ = ["CACHE_FORMAT", "CACHE_NAME", "PriceCache", "cache_path", "load", "save",
           "spot_price_in_use", "spot_table_in_use", "table_in_use"]

log = logging.getLogger("starburst")

#: Version of the file layout; a file of another version is ignored.
CACHE_FORMAT = 1
#: File name of the cache inside the cache directory.
CACHE_NAME = "prices.json"

_FIELDS = ("region", "arch", "vcpu_hour", "gib_hour", "storage_gib_hour", "source", "recorded")


@dataclass(frozen=True)
class PriceCache:
    """Prices fetched from the AWS Pricing API.

    Attributes:
        fetched: when the Pricing API answered (ISO 8601, UTC).
        source: what was asked (API, service code, endpoint).
        on_demand: Linux On-Demand prices by (region, architecture).
        spot: Fargate Spot prices, when the Price List carried them.
    """

    fetched: str
    source: str
    on_demand: PriceTable = field(default_factory=dict)
    spot: PriceTable = field(default_factory=dict)

    def merged(self, newer: PriceCache) -> PriceCache:
        """This cache with ``newer``'s rows (and its date and source) on top."""
        return PriceCache(fetched=newer.fetched, source=newer.source,
                          on_demand=merge_tables(self.on_demand, newer.on_demand),
                          spot=merge_tables(self.spot, newer.spot))

    def to_json(self) -> dict[str, Any]:
        """The cache file's content."""
        return {"format": CACHE_FORMAT, "fetched": self.fetched, "source": self.source,
                "on_demand": [asdict(p) for _, p in sorted(self.on_demand.items())],
                "spot": [asdict(p) for _, p in sorted(self.spot.items())]}

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
                   spot=_rows(data.get("spot", [])))


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
