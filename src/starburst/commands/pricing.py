"""``starburst pricing``: the Fargate price table in use, and refreshing it from AWS."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from ..exceptions import StarburstError
from ..gpu import GPU_PRICES, InstancePrice, gpu_instance
from ..pricing import PRICES, SPOT_DISCOUNT_SOURCE, FargatePrice, lookup, spot_price
from ..pricing_cache import cache_path, gpu_table_in_use, load, spot_table_in_use, table_in_use
from ._common import echo_json, json_option

__all__ = ["pricing"]

_ENDPOINTS = ("us-east-1", "eu-central-1", "ap-south-1")
#: The routes of --source (those of starburst.aws.price_refresh, which needs the aws extra).
SOURCES = ("auto", "bulk", "api")
#: Called with (phase, region, regions done, regions in the phase).
ProgressCallback = Callable[[str, str, int, int], None]


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 140, soft_wrap=False)


@click.group(short_help="Fargate and GPU prices: the tables in use; refresh them from AWS.")
def pricing() -> None:
    """Fargate and GPU instance prices: the tables in use, and refreshing them from AWS."""


def _progress_console() -> Console:
    """Where refresh progress is drawn (stderr, so stdout stays the report)."""
    return Console(stderr=True)


@contextmanager
def _progress(enabled: bool) -> Iterator[ProgressCallback | None]:
    """A rich bar per phase (Fargate, GPU), one step per region; nothing off a terminal."""
    console = _progress_console()
    if not enabled or not console.is_terminal:
        yield None
        return
    bars = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[region]}"), TimeElapsedColumn(),
                    console=console, transient=False)
    tasks: dict[str, TaskID] = {}

    def update(phase: str, region: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = bars.add_task(phase, total=total, region="")
        # Drawn at once: a region is one step, and steps may be quicker than a frame.
        bars.update(tasks[phase], completed=done, total=total, region=region, refresh=True)

    with bars:
        yield update


def _grouped(by_region: dict[str, str]) -> str:
    """``{"a": "x", "b": "y", "c": "x"}`` -> ``"x (a, c), y (b)"``."""
    groups: dict[str, list[str]] = {}
    for region, value in sorted(by_region.items()):
        groups.setdefault(value, []).append(region)
    return ", ".join(f"{value} ({', '.join(regions)})" for value, regions in sorted(groups.items()))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@pricing.command()
@click.option("--region", "regions", multiple=True, metavar="REGION",
              help="Region to fetch (repeatable).  [default: every region of the table in use]")
@click.option("--all-regions", is_flag=True,
              help="Every region the AWS Price List lists for Fargate (bulk offers only).")
@click.option("--source", type=click.Choice(SOURCES), default="auto", show_default=True,
              help="Where Fargate prices come from: bulk (the public offer files, no "
                   "credentials), api (GetProducts, credentials), auto (bulk, else api).")
@click.option("--gpu/--no-gpu", default=None,
              help="Fetch GPU instance prices (Pricing API, needs credentials).  "
                   "[default: when credentials are found]")
@click.option("--endpoint-region", type=click.Choice(_ENDPOINTS), default="us-east-1",
              show_default=True,
              help="Pricing API endpoint to ask (it exists only in these three regions).")
@json_option
def refresh(regions: tuple[str, ...], all_regions: bool, source: str, gpu: bool | None,
            endpoint_region: str, as_json: bool) -> None:
    """Fetch current Fargate and GPU instance prices from AWS into the local cache.

    `--region R` prices a region the shipped tables lack (repeatable).
    Fargate (Linux x86_64 and arm64 vCPU-hour, GB-hour and storage, and
    Fargate Spot when listed) comes from the AWS Price List bulk offer
    files, which are public: no AWS account or credentials needed. Each row
    cites its offer file and the date AWS published it. If those files
    cannot be reached, the Pricing API (GetProducts AmazonECS) is asked
    instead when credentials are found. STARBURST_PRICE_LIST_URL points at
    a mirror of the files.

    GPU instance prices (Linux, On-Demand, every catalogued type) come from
    the Pricing API only (GetProducts AmazonEC2), as the EC2 offer files are
    hundreds of MB per region: they need credentials with
    pricing:GetProducts and are skipped, saying so, without them.

    Estimates and sessions prefer the cached rows over the shipped tables;
    `starburst pricing show` (and `show --gpu`) lists each row's source and
    date. Needs the aws extra.
    """
    if all_regions and regions:
        raise click.UsageError("pass --all-regions or --region, not both")
    if all_regions and source == "api":
        raise click.UsageError("--all-regions needs the bulk offers' region list: use "
                               "--source bulk or auto, or name regions with --region")
    try:
        from ..aws.price_refresh import refresh as do_refresh
    except ImportError as exc:
        raise click.ClickException(
            f"`starburst pricing refresh` needs the aws extra ({exc}): "
            "pip install 'starburst-cloud[aws]'") from exc
    try:
        with _progress(not as_json) as progress:
            result = do_refresh(list(regions) or None, all_regions=all_regions, source=source,
                                gpu=gpu, endpoint_region=endpoint_region, progress=progress)
    except StarburstError as exc:
        raise click.ClickException(str(exc)) from exc
    cache = result.cache
    fetched = sorted({r for r, _ in cache.on_demand})
    spot_regions = sorted({r for r, _ in cache.spot})
    gpu_regions = sorted({r for _, r in cache.gpu})
    if as_json:
        echo_json({"regions": fetched, "spot_regions": spot_regions, "route": result.route,
                   "source": cache.source, "fetched": cache.fetched,
                   "published": result.published, "missing": result.missing,
                   "notes": result.notes, "cache": str(result.path),
                   "on_demand": [asdict(p) for _, p in sorted(cache.on_demand.items())],
                   "spot": [asdict(p) for _, p in sorted(cache.spot.items())],
                   "gpu_regions": gpu_regions, "gpu_skipped": result.gpu_skipped,
                   "gpu_missing": result.gpu_missing,
                   "gpu": [_gpu_json(p) for _, p in sorted(cache.gpu.items())]})
        return
    how = ("the AWS Price List bulk offers (no credentials needed)" if result.route == "bulk"
           else cache.source)
    click.echo(f"Fetched Fargate prices for {_plural(len(fetched), 'region')} "
               f"({', '.join(fetched)}) from {how} at {cache.fetched}.")
    if result.published:
        click.echo(f"Offer files published {_grouped(result.published)}.")
    if spot_regions:
        click.echo(f"Fargate Spot rates listed for: {', '.join(spot_regions)}.")
    else:
        click.echo("The Price List carried no Fargate Spot rates: Spot is "
                   f"{SPOT_DISCOUNT_SOURCE}.")
    if result.missing:
        click.echo(f"No Fargate price listed for: {', '.join(result.missing)} (not written).")
    if result.gpu_skipped is not None:
        click.echo(f"GPU instance prices were not refreshed: {result.gpu_skipped}.")
    else:
        types = {t for t, _ in cache.gpu}
        click.echo(f"Fetched GPU instance prices for {_plural(len(types), 'instance type')} "
                   f"in {_plural(len(gpu_regions), 'region')} ({', '.join(gpu_regions) or '-'}) "
                   "from the AWS Price List API (GetProducts AmazonEC2, endpoint "
                   f"{endpoint_region}).")
        for region, absent in sorted(result.gpu_missing.items()):
            click.echo(f"No GPU price listed in {region} for {_plural(len(absent), 'type')}: "
                       f"{', '.join(absent)}.")
    for note in result.notes:
        click.echo(f"note: {note}")
    click.echo(f"Wrote {result.path}")


def _gpu_json(p: InstancePrice) -> dict[str, Any]:
    return {"instance_type": p.instance_type, "region": p.region, "hourly": p.hourly,
            "source": p.source, "recorded": p.recorded}


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
@click.option("--gpu", "gpu", is_flag=True,
              help="Show the GPU instance prices (Linux, On-Demand) instead.")
@json_option
def show(regions: tuple[str, ...], gpu: bool, as_json: bool) -> None:
    """Print the Fargate price table in use, with the source and date of each row.

    Rows fetched by `starburst pricing refresh` replace the shipped ones.
    Spot rows come from the Price List when it carried them, else from the
    assumed discount (stated in the row's source). --gpu shows the GPU
    instance prices the same way.
    """
    if gpu:
        _show_gpu(regions, as_json)
        return
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


def _show_gpu(regions: tuple[str, ...], as_json: bool) -> None:
    """``pricing show --gpu``: the GPU instance price table in use, sources numbered."""
    cache = load()
    table = gpu_table_in_use(cache=cache)
    rows = [p for (_, region), p in sorted(table.items(), key=lambda kv: (kv[0][1], kv[0][0]))
            if not regions or region in regions]
    if regions and not rows:
        known = ", ".join(sorted({r for _, r in table}))
        raise click.ClickException(
            f"no GPU instance price is known for {', '.join(regions)}; known regions: {known}. "
            "Run `starburst pricing refresh --region REGION` with AWS credentials to fetch "
            "it (GetProducts AmazonEC2), or pass a rate (--gpu-rate, instance_rate=).")
    if as_json:
        echo_json({"currency": "USD", "cache": str(cache_path()),
                   "cache_fetched": cache.fetched if cache is not None else None,
                   "gpu_prices": [{**_gpu_json(p), "gpu": gpu_instance(p.instance_type).gpu,
                                   "gpus": gpu_instance(p.instance_type).gpus}
                                  for p in rows]})
        return
    out = Table(title="GPU instance prices in use (USD per instance-hour, Linux, On-Demand)",
                title_justify="left")
    for name, justify in (("region", "left"), ("instance type", "left"), ("GPU", "left"),
                          ("GPUs", "right"), ("per hour", "right"), ("recorded", "left"),
                          ("source", "left")):
        out.add_column(name, justify=justify)  # type: ignore[arg-type]
    sources: dict[str, int] = {}
    for p in rows:
        spec = gpu_instance(p.instance_type)
        source = p.source + (" (shipped with starburst)"
                             if GPU_PRICES.get((p.instance_type, p.region)) == p else "")
        number = sources.setdefault(source, len(sources) + 1)
        out.add_row(p.region, p.instance_type, spec.gpu, str(spec.gpus), f"{p.hourly:.6g}",
                    p.recorded, Text(f"[{number}]"))
    console = _console()
    console.print(out)
    for source, number in sources.items():
        console.print(f"[{number}] {source}", highlight=False, soft_wrap=True, markup=False)
    console.print("Spot is priced at an assumed discount below On-Demand unless you pass "
                  "a rate (--gpu-spot-rate).", highlight=False, soft_wrap=True)
