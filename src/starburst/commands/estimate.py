"""``starburst estimate``: wall time and cost on Fargate (and GPUs) before anything runs."""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
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
    Estimate,
    OptionEstimate,
    SampleTiming,
    batch_model,
    estimate,
    format_dollars,
    format_duration,
    format_speedup,
    parse_gpus,
    time_sample,
)
from ..exceptions import ConfigurationError
from ..gpu import GPU_SPOT_DISCOUNT, known_gpus
from ..options import parse_memory
from ..pricing import SPOT_DISCOUNT
from ..pricing_cache import gpu_table_in_use, load, spot_table_in_use, table_in_use
from ..simulate import FargateModel
from ._common import checked_region, json_option

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


def _rates(pairs: tuple[str, ...], what: str) -> dict[str, float]:
    """``("g4dn.xlarge=0.6", ...)`` -> {instance type: dollars per hour}."""
    rates: dict[str, float] = {}
    for pair in pairs:
        itype, sep, value = pair.partition("=")
        try:
            rate = float(value)
        except ValueError:
            rate = math.nan
        if not sep or not itype.strip() or not rate > 0:
            raise click.BadParameter(
                f"{pair!r} is not INSTANCE_TYPE=DOLLARS_PER_HOUR (e.g. g4dn.xlarge=0.526)",
                param_hint=what)
        rates[itype.strip().lower()] = rate
    return rates


def _startup(o: OptionEstimate) -> str:
    low, high = o.startup_seconds
    if high >= 120:
        return f"{low / 60:g}-{high / 60:g} min"
    return f"{low:g}-{high:g} s"


def _task_time(o: OptionEstimate, est: Estimate) -> str:
    text = format_duration(o.task_seconds)
    if o.option.gpu is None:
        return text
    if est.gpu_speedup == 1:
        return f"{text} (same)"
    return f"{text} ({est.gpu_speedup:g}x)"


def _table(est: Estimate) -> Table:
    gpu = est.has_gpu
    where = "Fargate, GPU instances" if gpu else "Fargate"
    title = (f"{est.tasks:,} tasks x {format_duration(est.task_seconds)} on {where} "
             f"({est.region}) and here")
    caption = None
    if gpu:
        caption = ("GPU rows assume the same task time on GPU; pass --gpu-speedup"
                   if est.gpu_speedup == 1 else
                   f"GPU rows assume tasks {est.gpu_speedup:g}x faster on GPU (--gpu-speedup, "
                   "your figure)")
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    columns = [("option", "left"), ("workers", "right"), ("size", "left")]
    if gpu:
        # GPU and Fargate rows differ in what they assume: show it on each row.
        columns += [("task time", "right"), ("start-up", "right"), ("$/h each", "right")]
    columns += [("wall time", "right"), ("cost", "right"), ("vs local", "right")]
    for name, justify in columns:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    extra = [format_duration(est.task_seconds), "-", "-"] if gpu else []
    table.add_row(f"local ({est.local_cores} cores)", str(est.local_cores), "-", *extra,
                  format_duration(est.local_seconds), "$0", "-")
    choice = est.recommendation.choice
    for o in est.options:
        opt = o.option
        workers = f"{opt.workers}" if o.workers_running == opt.workers else \
            f"{o.workers_running} of {opt.workers} (quota)"
        speed = format_speedup(o.speedup)
        mark = " *" if o is choice else ""
        extra = [_task_time(o, est), _startup(o), format_dollars(o.worker_hourly)] if gpu else []
        table.add_row(f"{opt.label}{mark}", workers, opt.size, *extra,
                      format_duration(o.wall_seconds), format_dollars(o.cost), speed,
                      style="bold" if mark else None)
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
@click.option("--gpu", "gpu_text", default=None, metavar="GPU[,GPU...]",
              help="Also compare GPU workers on AWS Batch: GPU names "
                   f"({', '.join(known_gpus())}) or GPU instance types (g5.2xlarge), "
                   "comma-separated. With --spot, their Spot twins too.")
@click.option("--gpu-speedup", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True,
              help="How many times faster one task runs on the GPU than --task-seconds "
                   "(only you can know; 1 assumes the same time).")
@click.option("--gpu-rate", "gpu_rate_pairs", multiple=True, metavar="TYPE=DOLLARS",
              help="On-Demand dollars per instance-hour of a GPU instance type (repeatable); "
                   "overrides the price table.")
@click.option("--gpu-spot-rate", "gpu_spot_pairs", multiple=True, metavar="TYPE=DOLLARS",
              help="Spot dollars per instance-hour of a GPU instance type (repeatable); "
                   "overrides the assumed discount.")
@click.option("--gpu-spot-discount", type=click.FloatRange(0, 1, max_open=True),
              default=GPU_SPOT_DISCOUNT, show_default=True,
              help="GPU Spot's discount below On-Demand when no Spot rate is given.")
@click.option("--gpu-quota-vcpu", type=click.FloatRange(min=0, min_open=True), default=None,
              help="The account's EC2 GPU vCPU quota (Service Quotas, EC2: 'Running "
                   "On-Demand G and VT instances' or 'Running On-Demand P instances').  "
                   "[default: no limit]")
@json_option
def estimate_command(tasks: int | None, task_seconds: float | None, function: str | None,
                     sample: int, args_file: Path | None, workers_text: str, cpu_text: str,
                     memory_text: str | None, region: str | None, spot: bool,
                     spot_discount: float, spot_rates: str | None, arm: bool,
                     local_cores: int | None, quota_vcpu: float | None, no_public_ip: bool,
                     gpu_text: str | None, gpu_speedup: float, gpu_rate_pairs: tuple[str, ...],
                     gpu_spot_pairs: tuple[str, ...], gpu_spot_discount: float,
                     gpu_quota_vcpu: float | None, as_json: bool) -> None:
    """Estimate wall time and cost on Fargate (and GPUs) for several options, beside local.

    Give the per-task time (--task-seconds), or let starburst time your
    function on a few items here (--function module:fn --sample 5). Wall
    time comes from the scale model (the real scheduler on a model of
    Fargate: 30-90 s cold starts, launch pacing); cost from the price
    table in use (`starburst pricing show`), billed per second with a
    one-minute minimum. The recommendation is the cheapest option that
    finishes at least 2x sooner than your local cores, else "stay local".

    --gpu adds GPU workers on AWS Batch (one per GPU, minutes to start an
    instance), priced from EC2 instance prices. A GPU row assumes the same
    task time as here unless --gpu-speedup says how much faster it is.
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
    gpu_rates = _rates(gpu_rate_pairs, "--gpu-rate")
    gpu_spot_rates = _rates(gpu_spot_pairs, "--gpu-spot-rate")
    if (gpu_rates or gpu_spot_rates or gpu_quota_vcpu) and not gpu_text:
        raise click.UsageError("--gpu-rate, --gpu-spot-rate and --gpu-quota-vcpu go with --gpu")
    try:
        gpus = parse_gpus(gpu_text.split(",")) if gpu_text else []
        chosen = {g.instance_type for g in gpus}
        for hint, given in (("--gpu-rate", gpu_rates), ("--gpu-spot-rate", gpu_spot_rates)):
            stray = sorted(set(given) - chosen)
            if stray:
                raise click.BadParameter(
                    f"{', '.join(stray)} is not among the --gpu instance types "
                    f"({', '.join(sorted(chosen))}); add it to --gpu or fix the name",
                    param_hint=hint)
        memories = None if memory_text is None else \
            [parse_memory(m.strip()) for m in memory_text.split(",") if m.strip()]
        cache = load()
        est = estimate(
            tasks, task_seconds, workers=_ints(workers_text, "--workers"),
            cpus=_floats(cpu_text, "--cpu"), memories_mib=memories,
            region=checked_region(region or default_region()),
            archs=("x86_64", "arm64") if arm else ("x86_64",), spot=spot or rates is not None,
            spot_discount=spot_discount, spot_rates=rates,
            table=table_in_use(cache=cache), spot_table=spot_table_in_use(cache=cache),
            local_cores=local_cores, public_ip=not no_public_ip,
            model=FargateModel(quota_vcpu=quota_vcpu) if quota_vcpu else None,
            gpus=gpus, gpu_speedup=gpu_speedup, gpu_rates=gpu_rates,
            gpu_spot_rates=gpu_spot_rates, gpu_spot_discount=gpu_spot_discount,
            gpu_model=batch_model(gpu_quota_vcpu) if gpu_quota_vcpu else None,
            gpu_table=gpu_table_in_use(cache=cache))
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
    say(f"Rule: {est.rule} (* marks the pick).")
    say("Prices (USD):")
    for line in est.sources():
        say(f"  {line}")
    say("Assumptions:")
    for line in [*est.assumptions(), *est.notes]:
        say(f"  - {line}")
