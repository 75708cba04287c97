"""``starburst estimate``: wall time and cost on Fargate before anything runs, beside local."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ..estimate import (
    DEFAULT_WORKERS,
    RULE,
    Estimate,
    SampleTiming,
    estimate,
    format_dollars,
    format_duration,
    format_speedup,
    time_sample,
)
from ..exceptions import ConfigurationError
from ..options import parse_memory
from ..pricing import SPOT_DISCOUNT
from ..pricing_cache import load, spot_table_in_use, table_in_use
from ..simulate import FargateModel

__all__ = ["default_region", "estimate_command", "load_function", "read_items"]

_REGION_VARS = ("STARBURST_REGION", "AWS_REGION", "AWS_DEFAULT_REGION")


def default_region() -> str:
    """``STARBURST_REGION`` > ``AWS_REGION`` > ``AWS_DEFAULT_REGION`` > ``us-east-1``."""
    for name in _REGION_VARS:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return "us-east-1"


def _floats(text: str, what: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers",
                                 param_hint=what) from None
    if not values:
        raise click.BadParameter("give at least one value", param_hint=what)
    return values


def _ints(text: str, what: str) -> list[int]:
    values = _floats(text, what)
    if any(v != int(v) or v < 1 for v in values):
        raise click.BadParameter(f"{text!r}: whole numbers >= 1 only", param_hint=what)
    return [int(v) for v in values]


def load_function(spec: str) -> Callable[[Any], object]:
    """``module:function`` or ``path/to/file.py:function`` -> the function.

    Modules are imported with the current directory on ``sys.path``, as
    ``python -c`` would.
    """
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise click.BadParameter(f"{spec!r} is not module:function", param_hint="--function")
    try:
        if target.endswith(".py") or os.sep in target:
            path = Path(target).resolve()
            module_spec = importlib.util.spec_from_file_location(path.stem, path)
            if module_spec is None or module_spec.loader is None:
                raise ImportError(f"cannot load {path}")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules.setdefault(path.stem, module)
            module_spec.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(target)
    except (ImportError, OSError) as exc:
        raise click.BadParameter(f"cannot import {target!r}: {exc}",
                                 param_hint="--function") from exc
    fn = getattr(module, name, None)
    if not callable(fn):
        raise click.BadParameter(f"{target!r} has no function {name!r}",
                                 param_hint="--function")
    return fn  # type: ignore[no-any-return]


def read_items(path: Path) -> list[Any]:
    """The items of an ``--args-file``: a JSON list, or one JSON value per line."""
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    else:
        if isinstance(data, list):
            return data
    try:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError as exc:
        raise click.BadParameter(f"{path} is neither a JSON list nor JSON lines: {exc}",
                                 param_hint="--args-file") from exc


def _table(est: Estimate) -> Table:
    title = (f"{est.tasks:,} tasks x {format_duration(est.task_seconds)} on Fargate "
             f"({est.region}) and here")
    table = Table(title=title, title_justify="left")
    for name, justify in (("option", "left"), ("workers", "right"), ("size", "left"),
                          ("wall time", "right"), ("cost", "right"), ("vs local", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    table.add_row(f"local ({est.local_cores} cores)", str(est.local_cores), "-",
                  format_duration(est.local_seconds), "$0", "-")
    choice = est.recommendation.choice
    for o in est.options:
        opt = o.option
        workers = f"{opt.workers}" if o.workers_running == opt.workers else \
            f"{o.workers_running} of {opt.workers} (quota)"
        speed = format_speedup(o.speedup)
        mark = " *" if o is choice else ""
        table.add_row(f"{opt.label}{mark}", workers, opt.size, format_duration(o.wall_seconds),
                      format_dollars(o.cost), speed, style="bold" if mark else None)
    return table


@click.command("estimate",
               short_help="Wall time and cost on Fargate, before running, beside local.")
@click.option("--tasks", type=click.IntRange(min=1), default=None,
              help="Number of tasks.  [default: the number of items in --args-file]")
@click.option("--task-seconds", type=click.FloatRange(min=0), default=None,
              help="Seconds one task takes on one core.")
@click.option("--function", "function", metavar="MODULE:FN", default=None,
              help="Time this function on a sample instead of --task-seconds.")
@click.option("--sample", type=click.IntRange(min=1), default=5, show_default=True,
              help="Items to time with --function (run here, one after another).")
@click.option("--args-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Items for --function: a JSON list or JSON lines; each is "
                                 "the one argument, as in map(fn, items).  [default: 0, 1, 2...]")
@click.option("--workers", "workers_text", default=",".join(map(str, DEFAULT_WORKERS)),
              show_default=True, help="Worker counts to compare (comma-separated).")
@click.option("--cpu", "cpu_text", default="1", show_default=True,
              help="vCPUs per worker to compare (comma-separated: 0.25,0.5,1,2,4,8,16).")
@click.option("--memory", "memory_text", default=None,
              help="Memory per worker to compare (comma-separated, e.g. 2GB,8GB).  "
                   "[default: the smallest each cpu takes]")
@click.option("--region", default=None,
              help="AWS region whose prices apply.  [default: STARBURST_REGION, AWS_REGION, "
                   "else us-east-1]")
@click.option("--spot", is_flag=True, help="Also compare Fargate Spot (x86_64).")
@click.option("--spot-discount", type=click.FloatRange(0, 1, max_open=True),
              default=SPOT_DISCOUNT, show_default=True,
              help="Spot's discount below On-Demand when no Spot rate is known.")
@click.option("--spot-rates", default=None, metavar="VCPU_HOUR,GIB_HOUR",
              help="Spot dollars per vCPU-hour and per GiB-hour (overrides the discount).")
@click.option("--arm", is_flag=True, help="Also compare arm64 (Graviton).")
@click.option("--local-cores", type=click.IntRange(min=1), default=None,
              help="Cores here.  [default: all of this machine's]")
@click.option("--quota-vcpu", type=click.FloatRange(min=0, min_open=True), default=None,
              help="The account's Fargate vCPU quota (see `starburst quota`).  "
                   "[default: no limit]")
@click.option("--no-public-ip", is_flag=True,
              help="Workers have no public IPv4 address (private subnets with NAT).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def estimate_command(tasks: int | None, task_seconds: float | None, function: str | None,
                     sample: int, args_file: Path | None, workers_text: str, cpu_text: str,
                     memory_text: str | None, region: str | None, spot: bool,
                     spot_discount: float, spot_rates: str | None, arm: bool,
                     local_cores: int | None, quota_vcpu: float | None, no_public_ip: bool,
                     as_json: bool) -> None:
    """Estimate wall time and cost on Fargate for several options, beside local.

    Give the per-task time (--task-seconds), or let starburst time your
    function on a few items here (--function module:fn --sample 5). Wall
    time comes from the scale model (the real scheduler on a model of
    Fargate: 30-90 s cold starts, launch pacing); cost from the price
    table in use (`starburst pricing show`), billed per second with a
    one-minute minimum. The recommendation is the cheapest option that
    finishes at least 2x sooner than your local cores, else "stay local".
    """
    if (task_seconds is None) == (function is None):
        raise click.UsageError("give exactly one of --task-seconds and --function")
    timing: SampleTiming | None = None
    if function is not None:
        fn = load_function(function)
        items: list[Any] | range
        if args_file is not None:
            items = read_items(args_file)
            if not items:
                raise click.BadParameter(f"{args_file} holds no items", param_hint="--args-file")
            tasks = tasks or len(items)
        else:
            if tasks is None:
                raise click.UsageError("give --tasks (or --args-file)")
            items = range(tasks)
        try:
            timing = time_sample(fn, items, sample)
        except Exception as exc:
            raise click.ClickException(
                f"the sample failed: {function} raised {type(exc).__name__}: {exc}") from exc
        task_seconds = timing.per_task
    elif args_file is not None:
        raise click.UsageError("--args-file goes with --function")
    if tasks is None:
        raise click.UsageError("give --tasks")
    assert task_seconds is not None
    rates: tuple[float, float] | None = None
    if spot_rates is not None:
        values = _floats(spot_rates, "--spot-rates")
        if len(values) != 2:
            raise click.BadParameter("give two numbers: VCPU_HOUR,GIB_HOUR",
                                     param_hint="--spot-rates")
        rates = (values[0], values[1])
    try:
        memories = None if memory_text is None else \
            [parse_memory(m.strip()) for m in memory_text.split(",") if m.strip()]
        cache = load()
        est = estimate(
            tasks, task_seconds, workers=_ints(workers_text, "--workers"),
            cpus=_floats(cpu_text, "--cpu"), memories_mib=memories,
            region=region or default_region(),
            archs=("x86_64", "arm64") if arm else ("x86_64",), spot=spot or rates is not None,
            spot_discount=spot_discount, spot_rates=rates,
            table=table_in_use(cache=cache), spot_table=spot_table_in_use(cache=cache),
            local_cores=local_cores, public_ip=not no_public_ip,
            model=FargateModel(quota_vcpu=quota_vcpu) if quota_vcpu else None)
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        data = est.to_json()
        if timing is not None:
            data["sample"] = {"function": function, "seconds": list(timing.seconds),
                              "mean": timing.mean, "median": timing.median,
                              "per_task": timing.per_task, "note": timing.note}
        click.echo(json.dumps(data, indent=2))
        return
    console = Console(width=None if sys.stdout.isatty() else 120)

    def say(text: str) -> None:
        console.print(text, highlight=False, soft_wrap=True, markup=False)

    if timing is not None:
        say(f"{function}: {timing.note}")
    console.print(_table(est))
    say(est.recommendation.text)
    say(f"Rule: {RULE} (* marks the pick).")
    say("Prices (USD):")
    for line in est.sources():
        say(f"  {line}")
    say("Assumptions:")
    for line in [*est.assumptions(), *est.notes]:
        say(f"  - {line}")
