"""``starburst pricing``: the Fargate price table in use, and refreshing it from AWS."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..exceptions import StarburstError
from ..pricing import PRICES, SPOT_DISCOUNT_SOURCE, FargatePrice, lookup, spot_price
from ..pricing_cache import cache_path, load, spot_table_in_use, table_in_use
from ._common import echo_json, json_option

__all__ = ["pricing"]

_ENDPOINTS = ("us-east-1", "eu-central-1", "ap-south-1")


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 140, soft_wrap=False)


@click.group(short_help="Fargate prices: the table in use; refresh it from AWS.")
def pricing() -> None:
    """Fargate prices: the table in use, and refreshing it from the AWS Pricing API."""


@pricing.command()
@click.option("--region", "regions", multiple=True, metavar="REGION",
              help="Region to fetch (repeatable).  [default: every region of the table in use]")
@click.option("--endpoint-region", type=click.Choice(_ENDPOINTS), default="us-east-1",
              show_default=True,
              help="Pricing API endpoint to ask (it exists only in these three regions).")
@json_option
def refresh(regions: tuple[str, ...], endpoint_region: str, as_json: bool) -> None:
    """Fetch current Fargate prices from the AWS Pricing API into the local cache.

    Asks GetProducts (service code AmazonECS) for the Linux x86_64 and
    arm64 vCPU-hour, GB-hour and ephemeral-storage prices of each region
    (and Fargate Spot rates if the Price List carries them), then writes
    them with today's date to the cache, which estimates prefer over the
    shipped table. Needs the aws extra and pricing:GetProducts permission.
    """
    try:
        from ..aws.pricing_api import refresh as do_refresh
    except ImportError as exc:
        raise click.ClickException(
            f"`starburst pricing refresh` needs the aws extra ({exc}): "
            "pip install 'starburst-cloud[aws]'") from exc
    try:
        result, path = do_refresh(list(regions) or None, endpoint_region=endpoint_region)
    except StarburstError as exc:
        raise click.ClickException(str(exc)) from exc
    cache = result.cache
    fetched = sorted({r for r, _ in cache.on_demand})
    spot_regions = sorted({r for r, _ in cache.spot})
    if as_json:
        echo_json({"regions": fetched, "spot_regions": spot_regions, "source": cache.source,
                   "fetched": cache.fetched, "missing": result.missing, "notes": result.notes,
                   "cache": str(path),
                   "on_demand": [asdict(p) for _, p in sorted(cache.on_demand.items())],
                   "spot": [asdict(p) for _, p in sorted(cache.spot.items())]})
        return
    click.echo(f"Fetched Fargate prices for {len(fetched)} region"
               f"{'s' if len(fetched) != 1 else ''} ({', '.join(fetched)}) from {cache.source} "
               f"at {cache.fetched}.")
    if spot_regions:
        click.echo(f"Fargate Spot rates listed for: {', '.join(spot_regions)}.")
    else:
        click.echo("The Price List carried no Fargate Spot rates: Spot is "
                   f"{SPOT_DISCOUNT_SOURCE}.")
    if result.missing:
        click.echo(f"No Fargate price listed for: {', '.join(result.missing)} (not written).")
    for note in result.notes:
        click.echo(f"note: {note}")
    click.echo(f"Wrote {path}")


def _rows(regions: tuple[str, ...]) -> list[tuple[str, FargatePrice]]:
    cache = load()
    table = table_in_use(cache=cache)
    spot = spot_table_in_use(cache=cache)
    rows: list[tuple[str, FargatePrice]] = []
    for region, arch in sorted(table):
        if regions and region not in regions:
            continue
        rows.append(("On-Demand", lookup(region, arch, table)))
        if arch == "x86_64":
            rows.append(("Spot", spot.get((region, arch)) or spot_price(table[(region, arch)])))
    return rows


@pricing.command()
@click.option("--region", "regions", multiple=True, metavar="REGION",
              help="Only this region (repeatable).")
@json_option
def show(regions: tuple[str, ...], as_json: bool) -> None:
    """Print the Fargate price table in use, with the source and date of each row.

    Rows fetched by `starburst pricing refresh` replace the shipped ones.
    Spot rows come from the Price List when it carried them, else from the
    assumed discount (stated in the row's source).
    """
    cache = load()
    rows = _rows(regions)
    if regions and not rows:
        known = ", ".join(sorted({r for r, _ in table_in_use(cache=cache)}))
        raise click.ClickException(
            f"no Fargate price is known for {', '.join(regions)}; known regions: {known}. "
            "Run `starburst pricing refresh --region REGION` to fetch it.")
    where = (f"cache {cache_path()} (fetched {cache.fetched})" if cache is not None else
             f"no cache yet ({cache_path()}); `starburst pricing refresh` fetches current "
             "prices")
    if as_json:
        data: dict[str, Any] = {
            "currency": "USD", "cache": str(cache_path()),
            "cache_fetched": cache.fetched if cache is not None else None,
            "prices": [{"capacity": capacity, "region": p.region, "arch": p.arch,
                        "vcpu_hour": p.vcpu_hour, "gib_hour": p.gib_hour,
                        "storage_gib_hour": p.storage_gib_hour, "source": p.source,
                        "recorded": p.recorded} for capacity, p in rows]}
        click.echo(json.dumps(data, indent=2))
        return
    table = Table(title="Fargate prices in use (USD per hour, Linux)", title_justify="left")
    for name, justify in (("region", "left"), ("arch", "left"), ("capacity", "left"),
                          ("vCPU-hour", "right"), ("GiB-hour", "right"),
                          ("storage GiB-hour", "right"), ("recorded", "left"),
                          ("source", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    sources: dict[str, int] = {}
    for capacity, p in rows:
        shipped = PRICES.get((p.region, p.arch))
        source = p.source + (" (shipped with starburst)" if p == shipped else "")
        number = sources.setdefault(source, len(sources) + 1)
        table.add_row(p.region, p.arch, capacity, f"{p.vcpu_hour:.6g}", f"{p.gib_hour:.6g}",
                      f"{p.storage_gib_hour:.6g}", p.recorded, Text(f"[{number}]"))
    console = _console()
    console.print(table)
    for source, number in sources.items():
        console.print(f"[{number}] {source}", highlight=False, soft_wrap=True, markup=False)
    console.print(f"Prices from: {where}", highlight=False, soft_wrap=True, markup=False)
    console.print("Storage is billed only above the 20 GiB every task gets; a public IPv4 "
                  "address adds $0.005/h per task.", highlight=False, soft_wrap=True)
