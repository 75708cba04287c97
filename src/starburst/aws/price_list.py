"""Fargate prices from the public AWS Price List bulk offer files: no credentials.

The AWS Price List publishes each service's prices as static files that
anyone may download (no signature, no account)::

    GET {base}/offers/v1.0/aws/AmazonECS/current/region_index.json
        {"formatVersion": "v1.0", "publicationDate": ..., "regions": {
            "eu-central-1": {"regionCode": "eu-central-1", "currentVersionUrl":
                             "/offers/v1.0/aws/AmazonECS/<version>/eu-central-1/index.json"},
            ...}}
    GET {base}{currentVersionUrl}                         one per region wanted
        {"formatVersion": "v1.0", "offerCode": "AmazonECS", "version": ...,
         "publicationDate": "2026-11-11T12:00:00Z",
         "products": {sku: {"sku", "productFamily",
                            "attributes": {"usagetype", "regionCode", ...}}},
         "terms": {"OnDemand": {sku: {"<sku>.<term>": {"priceDimensions": {
             "<rate>": {"unit", "pricePerUnit": {"USD": "0.04656"}, ...}}}}}}}

A product with its ``OnDemand`` terms is the record ``GetProducts``
returns, so :func:`starburst.aws.pricing_api.parse_price_list` reads both.
Each row's ``source`` is its offer file's URL, and its ``recorded`` the
day AWS published that file (``publicationDate``).

``{base}`` is ``STARBURST_PRICE_LIST_URL`` (scheme, host and port, the
part before ``/offers``) or ``https://pricing.us-east-1.amazonaws.com``:
a mirror, a proxy, or a test's local server. Transient failures
(connection errors, timeouts, 429, 5xx) are retried with capped
exponential backoff and jitter; anything else, and a document that is not
an AmazonECS offer of the format read here, raises
:class:`PriceListUnavailable` at once, which
:mod:`starburst.aws.price_refresh` may answer by asking the Pricing API.

Only AmazonECS is read this way. The AmazonEC2 offer file of a single
region is hundreds of MB, so GPU instance prices come from the Pricing API
(:func:`starburst.aws.pricing_api.fetch_gpu_prices`).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import httpx

from .._version import __version__
from ..exceptions import CloudError
from ..pricing import PriceTable, merge_tables
from ..pricing_cache import PriceCache
from .pricing_api import SERVICE_CODE, FetchResult, parse_price_list

__all__ = ["DEFAULT_PRICE_LIST_URL", "FORMAT_VERSION", "INDEX_PATH", "PRICE_LIST_URL_ENV",
           "BulkResult", "PriceListUnavailable", "fetch_bulk", "index_url",
           "price_list_url"]

#: Overrides where the bulk offer files are read from (scheme://host[:port]).
PRICE_LIST_URL_ENV = "STARBURST_PRICE_LIST_URL"
#: Where AWS publishes them (documented by AWS; no credentials needed).
DEFAULT_PRICE_LIST_URL = "https://pricing.us-east-1.amazonaws.com"
#: The AmazonECS region index, below the base URL.
INDEX_PATH = f"/offers/v1.0/aws/{SERVICE_CODE}/current/region_index.json"
#: The file layout read here; AWS changes ``formatVersion`` when the layout changes.
FORMAT_VERSION = "v1.0"

# Four attempts with backoff capped at 8 s ride out a throttling burst or a
# CDN hiccup without hiding a real outage for minutes.
_ATTEMPTS = 4
_BACKOFF_S = 0.5
_BACKOFF_CAP_S = 8.0
# An AmazonECS offer file of one region is a few MB: a minute to read it
# covers a slow link; ten seconds to connect is plenty for a CDN.
_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=10.0, pool=10.0)
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class PriceListUnavailable(CloudError):
    """The bulk offer files could not be read (network, HTTP status, or content)."""


@dataclass
class BulkResult:
    """What the bulk offer files gave.

    Attributes:
        fetch: the prices (``fetch.cache``), regions without one, notes.
        published: each region's offer ``publicationDate``, as AWS wrote it.
        regions: the regions asked for (every region of the index if none was named).
        index_url: the region index read.
    """

    fetch: FetchResult
    published: dict[str, str] = field(default_factory=dict)
    regions: list[str] = field(default_factory=list)
    index_url: str = ""


def price_list_url() -> str:
    """``STARBURST_PRICE_LIST_URL``, or AWS's own host, without a trailing slash."""
    return (os.environ.get(PRICE_LIST_URL_ENV, "").strip() or DEFAULT_PRICE_LIST_URL).rstrip("/")


def index_url(base: str | None = None) -> str:
    """The AmazonECS region index URL below ``base`` (default :func:`price_list_url`)."""
    return f"{(base or price_list_url()).rstrip('/')}{INDEX_PATH}"


def _pause(attempt: int) -> None:
    """Wait before attempt ``attempt`` (0-based; not before the first): capped, jittered."""
    if attempt:
        delay = min(_BACKOFF_CAP_S, _BACKOFF_S * 2 ** (attempt - 1))
        time.sleep(delay * random.uniform(0.5, 1.0))


def _get_json(http: httpx.Client, url: str, what: str) -> dict[str, Any]:
    """GET ``url`` as a JSON object, retrying what is transient.

    Raises:
        PriceListUnavailable: it could not be read, or is not a JSON object.
    """
    last = ""
    for attempt in range(_ATTEMPTS):
        _pause(attempt)
        try:
            resp = http.get(url)
        except httpx.TransportError as exc:  # connect/read errors and timeouts
            last = f"cannot reach it ({type(exc).__name__}: {exc or 'no detail'})"
            continue
        if resp.status_code in _RETRY_STATUS:
            last = f"HTTP {resp.status_code}"
            continue
        if resp.status_code != 200:
            raise PriceListUnavailable(f"reading the {what} {url} failed: HTTP "
                                       f"{resp.status_code}")
        try:
            doc = resp.json()
        except ValueError:
            raise PriceListUnavailable(
                f"the {what} {url} is not JSON (a proxy or captive portal answered?)") from None
        if not isinstance(doc, dict):
            raise PriceListUnavailable(f"the {what} {url} is not a JSON object")
        return doc
    raise PriceListUnavailable(f"reading the {what} {url} failed after {_ATTEMPTS} "
                               f"attempts: {last}")


def _check_format(doc: dict[str, Any], url: str, what: str) -> None:
    version = doc.get("formatVersion")
    if version != FORMAT_VERSION:
        raise PriceListUnavailable(
            f"the {what} {url} has formatVersion {version!r}; this starburst reads "
            f"{FORMAT_VERSION!r}: upgrade starburst, or use `--source api`")


def _published_day(doc: dict[str, Any], url: str) -> tuple[str, str]:
    """The offer's publicationDate as written, and its day (ISO date)."""
    raw = doc.get("publicationDate")
    try:
        when = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        raise PriceListUnavailable(
            f"the AmazonECS offer file {url} has no valid publicationDate ({raw!r})") from None
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return str(raw), when.date().isoformat()


def _items(doc: dict[str, Any], region: str) -> Iterator[dict[str, Any]]:
    """Each product of an offer file with its On-Demand terms, as GetProducts lists it."""
    products = doc.get("products") or {}
    on_demand = (doc.get("terms") or {}).get("OnDemand") or {}
    if not isinstance(products, dict) or not isinstance(on_demand, dict):
        return
    for sku, prod in products.items():
        if not isinstance(prod, dict):
            continue
        attrs = dict(prod.get("attributes") or {})
        attrs.setdefault("regionCode", region)  # the file is one region's
        if attrs["regionCode"] != region:
            continue
        yield {"product": {**prod, "attributes": attrs},
               "terms": {"OnDemand": on_demand.get(sku) or {}}}


def fetch_bulk(regions: Sequence[str] | None, *, base: str | None = None,
               transport: httpx.BaseTransport | None = None, now: datetime | None = None,
               progress: Callable[[str, int, int], None] | None = None) -> BulkResult:
    """Read the Fargate prices of ``regions`` from the AmazonECS bulk offer files.

    Args:
        regions: the regions to read; None: every region of the index.
        base: where the files are (default :func:`price_list_url`).
        transport: an httpx transport (tests).
        now: the time to record as ``fetched`` (default: now, UTC).
        progress: called with (region, regions done, regions) after each region.

    Returns:
        The prices, each row citing its offer file and publication day.
        A region the index does not list, or whose offer has no complete
        Linux price, is in ``fetch.missing`` (with a note).

    Raises:
        PriceListUnavailable: the index or an offer file could not be read,
            or is not an AmazonECS offer of format v1.0.
    """
    fetched = now or datetime.now(UTC)
    url = index_url(base)
    headers = {"User-Agent": f"starburst/{__version__}", "Accept": "application/json"}
    with httpx.Client(transport=transport, timeout=_TIMEOUT, headers=headers,
                      follow_redirects=True) as http:
        index = _get_json(http, url, "AWS Price List region index")
        _check_format(index, url, "AWS Price List region index")
        listed = index.get("regions")
        if not isinstance(listed, dict):
            raise PriceListUnavailable(f"the AWS Price List region index {url} lists no regions")
        wanted = sorted(listed) if regions is None else list(dict.fromkeys(regions))
        on_demand: PriceTable = {}
        spot: PriceTable = {}
        notes: list[str] = []
        published: dict[str, str] = {}
        for done, region in enumerate(wanted, start=1):
            entry = listed.get(region)
            offer = entry.get("currentVersionUrl") if isinstance(entry, dict) else None
            if not offer:
                notes.append(f"{region}: not in the {SERVICE_CODE} region index ({url})")
            else:
                offer_url = urljoin(url, str(offer))
                doc = _get_json(http, offer_url, f"{SERVICE_CODE} offer file")
                _check_format(doc, offer_url, f"{SERVICE_CODE} offer file")
                if doc.get("offerCode") != SERVICE_CODE:
                    raise PriceListUnavailable(
                        f"{offer_url} is not an {SERVICE_CODE} offer file (offerCode "
                        f"{doc.get('offerCode')!r})")
                published[region], day = _published_day(doc, offer_url)
                found = parse_price_list(_items(doc, region), fetched=fetched,
                                         source=offer_url, regions=[region], recorded=day)
                on_demand = merge_tables(on_demand, found.cache.on_demand)
                spot = merge_tables(spot, found.cache.spot)
                notes += found.notes
            if progress is not None:
                progress(region, done, len(wanted))
    cache = PriceCache(fetched=fetched.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                       source=f"AWS Price List bulk offers ({url})",
                       on_demand=on_demand, spot=spot)
    missing = [r for r in wanted if (r, "x86_64") not in on_demand]
    return BulkResult(fetch=FetchResult(cache=cache, notes=notes, missing=missing),
                      published=published, regions=wanted, index_url=url)
