"""How long and how much a job would take on Fargate (or GPUs), before it runs, beside local.

Pure, apart from :func:`time_sample` (which times the user's function in
this process). The inputs are a per-task duration (measured with
:func:`time_sample`, or given) and the number of tasks; for each option
(worker count, size, x86_64/arm64, On-Demand/Spot) the wall time comes
from the scale model (:func:`starburst.simulate.simulate`: the real
scheduler on :class:`~starburst.simulate.FargateModel`, cold starts and
launch pacing included) and the cost from the price table, billed per
second with Fargate's one-minute minimum. Local time is
``tasks x seconds / local cores``.

The recommendation follows one rule (:data:`RULE`): among the Fargate
options that finish at least :data:`MIN_SPEEDUP` times sooner than the
local cores, the fastest of those costing within :data:`FASTER_WITHIN` of
the cheapest; if none finishes that much sooner, stay local. The
recommendation also names the cheapest and the fastest option when they
differ from the pick. Short jobs stay local (a worker needs 30-90 s before
its first task), long ones go to Fargate: the seed's crossover.

Dollars always come with the price source and the date it was recorded;
a Spot price without a known rate is an assumed discount, and says so.

GPU options (``gpus=``; ``starburst estimate --gpu nvidia-t4``) sit beside
the Fargate ones: AWS Batch on an EC2 GPU instance (:mod:`starburst.gpu`),
one worker per GPU, billed at the instance price (per second, one-minute
minimum) split between its GPUs. They run through the same scale model
with :func:`batch_model`: an EC2 instance takes minutes, not seconds, to
come up (:data:`BATCH_START_SOURCE`). starburst cannot know how much
faster a task is on a GPU: a GPU option runs the same per-task time as
here unless the caller gives ``gpu_speedup``, and the estimate says so.
"""

from __future__ import annotations

import itertools
import math
import os
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .aws.sizes import FARGATE_SIZES, valid_memory
from .cost import format_money
from .exceptions import ConfigurationError
from .gpu import (
    GPU_SPOT_DISCOUNT,
    GpuInstance,
    GpuPriceTable,
    InstancePrice,
    given_price,
    gpu_instance,
    instance_price,
    resolve_gpu,
)
from .gpu import spot_price as gpu_spot_price
from .pricing import (
    IPV4_PER_HOUR,
    SPOT_DISCOUNT,
    FargatePrice,
    PriceTable,
    hourly_rate,
    lookup,
    spot_price,
)
from .simulate import FargateModel, Workload, simulate

__all__ = ["BATCH_BILLED_FRACTION", "BATCH_START_MAX", "BATCH_START_MIN", "BATCH_START_SOURCE",
           "DEFAULT_WORKERS", "FASTER_WITHIN", "MIN_SPEEDUP", "RULE", "RULE_WITH_GPU", "Estimate",
           "Option", "OptionEstimate", "Recommendation", "SampleTiming", "batch_model",
           "default_memory", "demo_line", "estimate", "format_dollars", "format_duration",
           "format_size", "format_speedup", "gpu_options", "local_seconds", "options_grid",
           "parse_gpus", "recommend", "summarize_sample", "time_sample"]

#: Worker counts compared when none are given.
DEFAULT_WORKERS = (10, 50, 100)
#: How many times sooner than local a Fargate option must finish to be recommended.
MIN_SPEEDUP = 2.0
#: A faster option costing at most this fraction more than the cheapest one is
#: preferred: paying 10% more to finish (often many times) sooner is what a
#: user asks for; beyond that, the cheaper plan wins.
FASTER_WITHIN = 0.10
#: The recommendation rule, in words.
RULE = (f"of the Fargate options that finish at least {MIN_SPEEDUP:g}x sooner than the local "
        f"cores, the fastest costing within {FASTER_WITHIN:.0%} of the cheapest; if none "
        "does, stay local")
#: The same rule when GPU options are compared too.
RULE_WITH_GPU = (f"of the options (Fargate or GPU) that finish at least {MIN_SPEEDUP:g}x sooner "
                 f"than the local cores, the fastest costing within {FASTER_WITHIN:.0%} of the "
                 "cheapest; if none does, stay local")
#: Above this many tasks the model simulates this many longer tasks (same total work).
SIMULATED_TASKS_MAX = 1_000_000
_SPOT_ARCHS = ("x86_64",)
_SPOT_ARCH_NOTE = ("Fargate Spot runs x86_64 Linux tasks only (Amazon ECS developer guide, "
                   "'Fargate capacity providers'): arm64 Spot options left out")

#: Seconds from submitting an AWS Batch GPU job to its worker running, when
#: no instance is up yet: Batch scales the EC2 compute environment, the
#: instance boots (ECS GPU-optimized AMI), registers with ECS and pulls the
#: image. Assumed 2-4 min (see :data:`BATCH_START_SOURCE`); a large CUDA
#: image can add more.
BATCH_START_MIN = 120.0
#: Upper end of :data:`BATCH_START_MIN`'s range.
BATCH_START_MAX = 240.0
#: Share of that start-up EC2 bills: billing starts when the instance enters
#: the ``running`` state, after Batch's scaling decision and EC2's ``pending``.
BATCH_BILLED_FRACTION = 0.75
#: Where the GPU start-up figures come from.
BATCH_START_SOURCE = (
    f"assumed, not measured: a GPU worker starts {BATCH_START_MIN / 60:.0f}-"
    f"{BATCH_START_MAX / 60:.0f} min after its AWS Batch job is submitted (Batch scales the "
    "EC2 compute environment, the instance boots the ECS GPU-optimized AMI, registers with "
    "ECS and pulls the image; AWS Batch user guide, 'Compute environments'), the last "
    f"{BATCH_BILLED_FRACTION:.0%} of it billed (EC2 bills from the instance's 'running' state)")


# -- timing a sample --------------------------------------------------------


@dataclass(frozen=True)
class SampleTiming:
    """Seconds each sampled call took, and what the estimate uses.

    Attributes:
        seconds: one duration per call, in call order.
        per_task: seconds per task the estimate uses (the mean; without
            the first call when that one was a warm-up outlier).
        note: how the figure was obtained, for the user.
    """

    seconds: tuple[float, ...]
    per_task: float
    note: str

    @property
    def mean(self) -> float:
        """Mean of all calls."""
        return statistics.fmean(self.seconds)

    @property
    def median(self) -> float:
        """Median of all calls."""
        return statistics.median(self.seconds)


def summarize_sample(seconds: Sequence[float]) -> SampleTiming:
    """The :class:`SampleTiming` of measured ``seconds`` (pure).

    The first call of a function often pays for imports and caches. When
    at least three calls ran and the first took longer than any other, over
    3x their median and 50 ms more, it is left out of ``per_task``.
    """
    if not seconds:
        raise ValueError("no calls were timed")
    durations = tuple(max(0.0, float(s)) for s in seconds)
    n = len(durations)
    what = f"timed {n} call{'s' if n != 1 else ''} in this process"
    per_task = statistics.fmean(durations)
    note = f"{what}: mean {format_duration(per_task)}, median " \
           f"{format_duration(statistics.median(durations))}"
    if n >= 3:
        rest = durations[1:]
        typical = statistics.median(rest)
        if (durations[0] > max(rest) and durations[0] > 3 * typical
                and durations[0] - typical > 0.05):
            per_task = statistics.fmean(rest)
            note = (f"{what}: the first took {format_duration(durations[0])} (warm-up: "
                    f"imports, caches) and is left out; mean of the others "
                    f"{format_duration(per_task)}, median {format_duration(typical)}")
    return SampleTiming(seconds=durations, per_task=per_task, note=note)


def time_sample(fn: Callable[[Any], object], items: Iterable[Any], k: int = 5, *,
                clock: Callable[[], float] = time.perf_counter) -> SampleTiming:
    """Run ``fn`` on the first ``k`` of ``items`` here, one at a time, and time each call.

    Exceptions from ``fn`` propagate. The calls run in this process, on
    one core, as a Fargate worker runs one task at a time.
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    seconds: list[float] = []
    for item in itertools.islice(items, k):
        started = clock()
        fn(item)
        seconds.append(clock() - started)
    if not seconds:
        raise ValueError("no items to time: the sample is empty")
    return summarize_sample(seconds)


# -- formatting -------------------------------------------------------------


def format_duration(seconds: float) -> str:
    """``0.006 s``, ``4.2 s``, ``95 s``, ``12.5 min``, ``3.1 h``."""
    if seconds < 0.1:
        return f"{seconds:.3f} s"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def format_dollars(amount: float) -> str:
    """``$0.0072``, ``$1.42``, ``$1,234``."""
    if amount < 0.1:
        return format_money(amount)
    if amount < 1000:
        return f"${amount:,.2f}"
    return f"${amount:,.0f}"


def format_speedup(speedup: float) -> str:
    """``4.6x sooner`` or ``6.0x later`` than local."""
    if speedup >= 1:
        return f"{speedup:.1f}x sooner"
    return f"{1 / speedup:.1f}x later" if speedup > 0 else "never"


def format_size(cpu: float, memory_mib: int) -> str:
    """``1 vCPU/2 GiB``."""
    return f"{cpu:g} vCPU/{memory_mib / 1024:g} GiB"


# -- options ----------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One way to run the job: on Fargate, or on GPU instances when ``gpu`` is set.

    A GPU option's ``cpu``, ``memory_mib`` and ``arch`` are one worker's share
    of the instance (one worker per GPU); build it with :meth:`on_gpu`.
    """

    workers: int
    cpu: float = 1.0
    memory_mib: int = 2048
    arch: str = "x86_64"
    spot: bool = False
    gpu: GpuInstance | None = None

    @classmethod
    def on_gpu(cls, workers: int, instance: GpuInstance, *, spot: bool = False) -> Option:
        """``workers`` GPU workers on ``instance`` (one per GPU)."""
        return cls(workers, instance.vcpus / instance.gpus, instance.memory_mib // instance.gpus,
                   instance.arch, spot, instance)

    @property
    def backend(self) -> str:
        """``fargate``, or ``batch`` for a GPU option."""
        return "fargate" if self.gpu is None else "batch"

    @property
    def capacity(self) -> str:
        """``On-Demand`` or ``Spot``."""
        return "Spot" if self.spot else "On-Demand"

    @property
    def label(self) -> str:
        """``x86_64 On-Demand``, or ``nvidia-t4 On-Demand`` for a GPU option."""
        return f"{self.arch if self.gpu is None else self.gpu.gpu} {self.capacity}"

    @property
    def size(self) -> str:
        """``1 vCPU/2 GiB``, or the instance type (and the worker's GPU share)."""
        if self.gpu is None:
            return format_size(self.cpu, self.memory_mib)
        share = "" if self.gpu.gpus == 1 else f", 1 of {self.gpu.gpus} GPUs"
        return f"{self.gpu.instance_type}{share}"


def default_memory(cpu: float) -> int:
    """The smallest memory Fargate pairs with ``cpu`` (2 GiB per vCPU; 0.5 GiB for 0.25)."""
    sizes = valid_memory(cpu)
    if not sizes:
        choices = ", ".join(f"{c:g}" for c in FARGATE_SIZES)
        raise ConfigurationError(f"cpu={cpu:g} is not a Fargate size; choose one of {choices}")
    return sizes[0]


def options_grid(workers: Sequence[int], cpus: Sequence[float],
                 memories_mib: Sequence[int] | None = None, *,
                 archs: Sequence[str] = ("x86_64",), spot: bool = False,
                 ) -> tuple[list[Option], list[str]]:
    """Every valid combination, and notes on what was left out.

    Memory sizes a CPU size does not take are skipped (noted); without
    ``memories_mib`` each CPU size gets its smallest memory. ``spot`` adds
    a Spot twin to each On-Demand option (x86_64 only: Fargate Spot does
    not run arm64).

    Raises:
        ConfigurationError: a worker count below 1, an unknown CPU size or
            architecture, or no valid combination at all.
    """
    if not workers or min(workers) < 1:
        raise ConfigurationError("worker counts must be whole numbers >= 1")
    for arch in archs:
        if arch not in ("x86_64", "arm64"):
            raise ConfigurationError(f"architecture {arch!r} is not x86_64 or arm64")
    notes: list[str] = []
    sizes: list[tuple[float, int]] = []
    for cpu in cpus:
        mems = [default_memory(cpu)] if not memories_mib else list(memories_mib)
        for mem in mems:
            if mem in valid_memory(cpu):
                sizes.append((float(cpu), int(mem)))
            else:
                low, high, _ = FARGATE_SIZES[cpu]
                notes.append(f"{format_size(cpu, mem)} is not a Fargate size (with {cpu:g} "
                             f"vCPU: {low / 1024:g}-{high / 1024:g} GiB): left out")
    if not sizes:
        raise ConfigurationError("no valid Fargate size among the cpu and memory given: "
                                 + "; ".join(notes))
    options: list[Option] = []
    for arch, (cpu, mem), count in itertools.product(archs, dict.fromkeys(sizes),
                                                     dict.fromkeys(workers)):
        options.append(Option(count, cpu, mem, arch))
        if spot and arch in _SPOT_ARCHS:
            options.append(Option(count, cpu, mem, arch, spot=True))
    if spot and any(a not in _SPOT_ARCHS for a in archs):
        notes.append(_SPOT_ARCH_NOTE)
    return options, notes


def parse_gpus(names: Iterable[str]) -> list[GpuInstance]:
    """GPU names (default instance) or catalogued instance types -> instances, in order.

    ``["nvidia-t4", "g5.2xlarge"]`` -> g4dn.xlarge and g5.2xlarge.

    Raises:
        ConfigurationError: a name is neither a known GPU nor a GPU instance type.
    """
    found: list[GpuInstance] = []
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        if "." in name:
            found.append(gpu_instance(name))
        else:
            found.append(resolve_gpu(name))
    return list(dict.fromkeys(found))


def gpu_options(workers: Sequence[int], instances: Sequence[GpuInstance], *,
                spot: bool = False) -> tuple[list[Option], list[str]]:
    """A GPU option per instance type and worker count (a Spot twin with ``spot``), and notes.

    One worker per GPU: a worker count that leaves GPUs of the last
    instance idle is rounded up to whole instances (noted), since the
    instance is billed whole.

    Raises:
        ConfigurationError: a worker count below 1.
    """
    if not workers or min(workers) < 1:
        raise ConfigurationError("worker counts must be whole numbers >= 1")
    options: list[Option] = []
    notes: list[str] = []
    for instance in instances:
        for count in dict.fromkeys(workers):
            whole = math.ceil(count / instance.gpus) * instance.gpus
            if whole != count:
                notes.append(f"{count} workers on {instance.instance_type} ({instance.gpus} "
                             f"GPUs each) rounded up to {whole}: the instance is billed whole")
            options.append(Option.on_gpu(whole, instance))
            if spot:
                options.append(Option.on_gpu(whole, instance, spot=True))
    return list(dict.fromkeys(options)), list(dict.fromkeys(notes))


def batch_model(quota_vcpu: float = math.inf) -> FargateModel:
    """The scale model's parameters for GPU workers on AWS Batch.

    Start-up :data:`BATCH_START_MIN`-:data:`BATCH_START_MAX` s, the last
    :data:`BATCH_BILLED_FRACTION` of it billed; one job per SubmitJob call at
    the same request rates as Fargate; ``quota_vcpu`` is the EC2 GPU vCPU
    quota (:func:`starburst.gpu.gpu_quota_code`).
    """
    return FargateModel(cold_start_min=BATCH_START_MIN, cold_start_max=BATCH_START_MAX,
                        pull_fraction=BATCH_BILLED_FRACTION, tasks_per_call=1,
                        quota_vcpu=quota_vcpu)


# -- the estimate -----------------------------------------------------------


@dataclass(frozen=True)
class OptionEstimate:
    """What one option would take.

    Attributes:
        option: the option.
        workers_running: workers that run at once (the quota may cut them).
        wall_seconds: from submitting the work to the last result (scale model).
        cost: dollars billed for the workers (per second, one-minute minimum).
        worker_hourly: dollars per worker-hour (public IPv4 included when used).
        speedup: local time over ``wall_seconds`` (above 1: the option is sooner).
        price: the price used, with its source and date: a Fargate price, or
            the GPU instance's hourly price.
        lower_bound_seconds: the soonest any scheduler could finish.
        task_seconds: seconds per task this option assumes (a GPU option's
            is the local figure divided by the speed-up given).
        startup_seconds: the range of seconds a worker needs before its first task.
    """

    option: Option
    workers_running: int
    wall_seconds: float
    cost: float
    worker_hourly: float
    speedup: float
    price: FargatePrice | InstancePrice
    lower_bound_seconds: float
    task_seconds: float = math.nan
    startup_seconds: tuple[float, float] = (math.nan, math.nan)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        o = self.option
        price: dict[str, Any] = {"region": self.price.region, "source": self.price.source,
                                 "recorded": self.price.recorded}
        if isinstance(self.price, FargatePrice):
            price.update(vcpu_hour=self.price.vcpu_hour, gib_hour=self.price.gib_hour)
        else:
            price.update(instance_type=self.price.instance_type,
                         instance_hourly=self.price.hourly, spot=self.price.spot)
        gpu = None if o.gpu is None else {
            "name": o.gpu.gpu, "instance_type": o.gpu.instance_type, "gpus": o.gpu.gpus,
            "vcpus": o.gpu.vcpus, "memory_mib": o.gpu.memory_mib,
            "instances": math.ceil(o.workers / o.gpu.gpus)}
        return {"label": o.label, "backend": o.backend, "arch": o.arch,
                "capacity": o.capacity, "workers": o.workers,
                "workers_running": self.workers_running, "cpu": o.cpu,
                "memory_mib": o.memory_mib, "gpu": gpu,
                "task_seconds": _finite(self.task_seconds),
                "startup_seconds": [_finite(s) for s in self.startup_seconds],
                "wall_seconds": round(self.wall_seconds, 3),
                "cost_usd": round(self.cost, 6), "worker_hourly_usd": round(self.worker_hourly, 6),
                "speedup_vs_local": round(self.speedup, 4),
                "lower_bound_seconds": round(self.lower_bound_seconds, 3),
                "price": price}


def _finite(value: float) -> float | None:
    return round(value, 6) if math.isfinite(value) else None


@dataclass(frozen=True)
class Recommendation:
    """The option :data:`RULE` picks (None: stay local), and why, in words.

    Attributes:
        choice: the pick, or None (stay local).
        text: the pick and the reason, naming the cheapest and the fastest
            option when they differ from it.
        cheapest: the cheapest option at least :data:`MIN_SPEEDUP` x sooner
            than local (None when none is).
        fastest: the option that finishes soonest (None when none was compared).
    """

    choice: OptionEstimate | None
    text: str
    cheapest: OptionEstimate | None = None
    fastest: OptionEstimate | None = None


@dataclass(frozen=True)
class Estimate:
    """Every option's wall time and cost beside local, and the recommendation."""

    tasks: int
    task_seconds: float
    region: str
    local_cores: int
    local_seconds: float
    options: tuple[OptionEstimate, ...]
    recommendation: Recommendation
    notes: tuple[str, ...] = ()
    model: FargateModel = field(default_factory=FargateModel)
    public_ip: bool = True
    gpu_speedup: float = 1.0
    gpu_model: FargateModel = field(default_factory=batch_model)

    @property
    def has_gpu(self) -> bool:
        """Whether GPU options are compared."""
        return any(o.option.gpu is not None for o in self.options)

    @property
    def rule(self) -> str:
        """The recommendation rule that applied (:data:`RULE` or :data:`RULE_WITH_GPU`)."""
        return RULE_WITH_GPU if self.has_gpu else RULE

    def sources(self) -> list[str]:
        """Each distinct price source used, with its date."""
        seen = dict.fromkeys(f"{o.price.source}, recorded {o.price.recorded}"
                             for o in self.options)
        return list(seen)

    def assumptions(self) -> list[str]:
        """What the scale model assumes, in words."""
        m = self.model
        lines = [
            f"scale model: each worker starts {m.cold_start_min:.0f}-{m.cold_start_max:.0f} s "
            f"after RunTask ({m.pull_fraction:.0%} of it image pull, billed); RunTask "
            f"{m.tasks_per_call} tasks/call, launches {m.launches_per_second:g}/s (burst "
            f"{m.launch_burst:g}); {m.chunk_overhead:g} s of queue traffic per chunk",
            "each worker runs one task at a time, as fast as the local core that was timed "
            "(more vCPU helps only a function that uses several cores itself)",
            f"local: {self.tasks:,} x {format_duration(self.task_seconds)} / "
            f"{self.local_cores} cores, no overhead",
            "not included: building and uploading the environment image on a first run, "
            "data transfer, S3/SQS requests, Spot interruptions",
        ]
        if self.public_ip:
            lines.append(f"each worker's public IPv4 address (${IPV4_PER_HOUR}/h) is included")
        if math.isfinite(m.quota_vcpu):
            lines.append(f"vCPU quota: {m.quota_vcpu:g} (workers beyond it run in waves)")
        if self.has_gpu:
            lines.extend(self._gpu_assumptions())
        return lines

    def _gpu_assumptions(self) -> list[str]:
        lines = [
            "GPU options: " + (
                "assume the same task time on GPU as here; pass --gpu-speedup (gpu_speedup=) "
                "with how many times faster your task runs on that GPU"
                if self.gpu_speedup == 1 else
                f"each task {self.gpu_speedup:g}x faster on the GPU than here, your figure "
                "(--gpu-speedup), not measured"),
            f"GPU start-up: {BATCH_START_SOURCE}",
            "GPU billing: the instance's On-Demand or Spot price per second (one-minute "
            "minimum), split between its GPUs (one worker per GPU); Batch's scale-down "
            "after the last job (idle instance minutes) is not included",
        ]
        if math.isfinite(self.gpu_model.quota_vcpu):
            lines.append(f"EC2 GPU vCPU quota: {self.gpu_model.quota_vcpu:g} (instances beyond "
                         "it run in waves)")
        return lines

    def to_json(self) -> dict[str, Any]:
        """One JSON-ready object: inputs, local, options, recommendation, sources, notes."""
        choice = self.recommendation.choice
        return {
            "tasks": self.tasks, "task_seconds": self.task_seconds, "region": self.region,
            "local": {"cores": self.local_cores, "seconds": round(self.local_seconds, 3)},
            "options": [o.to_json() for o in self.options],
            "recommendation": {
                "option": None if choice is None else self.options.index(choice),
                "cheapest": self._index(self.recommendation.cheapest),
                "fastest": self._index(self.recommendation.fastest),
                "stay_local": choice is None, "text": self.recommendation.text,
                "rule": self.rule},
            "gpu_speedup": self.gpu_speedup if self.has_gpu else None,
            "price_sources": self.sources(), "assumptions": self.assumptions(),
            "notes": list(self.notes), "currency": "USD",
        }


    def _index(self, option: OptionEstimate | None) -> int | None:
        return None if option is None else self.options.index(option)


def local_seconds(tasks: int, task_seconds: float, cores: int) -> float:
    """Ideal local wall time: every core busy, no overhead."""
    if cores < 1:
        raise ValueError("cores must be >= 1")
    return tasks * task_seconds / cores


def _described(option: OptionEstimate) -> str:
    o = option.option
    return f"{o.workers} workers of {o.size} ({o.label})"


def recommend(options: Sequence[OptionEstimate], local: float, *,
              min_speedup: float = MIN_SPEEDUP, local_cores: int | None = None,
              faster_within: float = FASTER_WITHIN) -> Recommendation:
    """Apply :data:`RULE`: of the options at least ``min_speedup`` x sooner than local, the
    fastest costing within ``faster_within`` of the cheapest; else stay local.

    The text names the cheapest and the fastest option too when they are not the pick,
    so the user sees the trade-off.
    """
    here = f"{local_cores} local cores" if local_cores else "local"
    if not options:
        return Recommendation(None, "Stay local: no Fargate option to compare.")
    gpu = any(o.option.gpu is not None for o in options)
    good = [o for o in options if o.speedup >= min_speedup]
    fastest = min(options, key=lambda o: (o.wall_seconds, o.cost))
    f = fastest.option
    if good:
        cheapest = min(good, key=lambda o: (o.cost, o.wall_seconds))
        near = [o for o in good if o.cost <= cheapest.cost * (1 + faster_within)]
        best = min(near, key=lambda o: (o.wall_seconds, o.cost))
        o = best.option
        why = (f"the cheapest option at least {min_speedup:g}x sooner than local"
               if best is cheapest else
               f"the fastest option at least {min_speedup:g}x sooner than local that costs "
               f"within {faster_within:.0%} of the cheapest")
        also = ""
        if best is not cheapest:
            also += (f" The cheapest, {_described(cheapest)}, needs ~"
                     f"{format_duration(cheapest.wall_seconds)} for ~"
                     f"{format_dollars(cheapest.cost)}.")
        if fastest.wall_seconds < best.wall_seconds:
            also += (f" The fastest option, {f.workers} workers of {f.size} ({f.label}), "
                     f"needs ~{format_duration(fastest.wall_seconds)} for ~"
                     f"{format_dollars(fastest.cost)}.")
        where = "Fargate" if o.gpu is None else "GPU (AWS Batch)"
        return Recommendation(best, (
            f"{where}: {o.workers} workers of {o.size} ({o.label}), ~"
            f"{format_duration(best.wall_seconds)} instead of ~{format_duration(local)} on "
            f"{here} ({format_speedup(best.speedup)}) for ~{format_dollars(best.cost)}: "
            f"{why}.{also}"), cheapest=cheapest, fastest=fastest)
    kinds = "Fargate or GPU" if gpu else "Fargate"
    return Recommendation(None, (
        f"Stay local: no {kinds} option finishes {min_speedup:g}x sooner than {here} "
        f"(~{format_duration(local)}); the fastest, {f.workers} workers of {f.size} "
        f"({f.label}), needs ~{format_duration(fastest.wall_seconds)} "
        f"({format_speedup(fastest.speedup)}) for ~{format_dollars(fastest.cost)}. A Fargate "
        "worker needs 30-90 s before its first task"
        + (f" (a GPU instance {BATCH_START_MIN / 60:.0f}-{BATCH_START_MAX / 60:.0f} min)"
           if gpu else "") + ", so short jobs finish sooner here."), fastest=fastest)


@dataclass(frozen=True)
class _PricedWorkload(Workload):
    """A workload whose rate is given (the price in use, Spot, public IPv4), not looked up."""

    dollars_per_second: float = 0.0

    def rate_per_second(self) -> float:
        return self.dollars_per_second


def _price_for(option: Option, region: str, table: PriceTable | None,
               spot_table: PriceTable | None, spot_discount: float,
               spot_rates: tuple[float, float] | None) -> FargatePrice:
    on_demand = lookup(region, option.arch, table)
    if not option.spot:
        return on_demand
    if spot_rates is not None:
        vcpu, gib = spot_rates
        if vcpu < 0 or gib < 0:
            raise ConfigurationError("Spot rates must be >= 0 dollars per hour")
        return FargatePrice(region, option.arch, vcpu, gib, on_demand.storage_gib_hour,
                            source="Spot rates you gave", recorded=time.strftime("%Y-%m-%d"))
    known = (spot_table or {}).get((region, option.arch))
    return known if known is not None else spot_price(on_demand, spot_discount)


def _gpu_price(instance: GpuInstance, spot: bool, region: str,
               rates: Mapping[str, float], spot_rates: Mapping[str, float],
               discount: float, table: GpuPriceTable | None) -> InstancePrice:
    """The hourly price of one GPU instance: the caller's rate first, else the table.

    A Spot price without a Spot rate is the On-Demand price (the caller's,
    or the table's) less ``discount``, and its source says so.
    """
    itype = instance.instance_type
    today = time.strftime("%Y-%m-%d")
    if spot and itype in spot_rates:
        return given_price(itype, region, spot_rates[itype], spot=True, recorded=today)
    if itype not in rates:
        return instance_price(itype, region, spot=spot, discount=discount, table=table)
    on_demand = given_price(itype, region, rates[itype], recorded=today)
    return gpu_spot_price(on_demand, discount) if spot else on_demand


def estimate(tasks: int, task_seconds: float, *, workers: Sequence[int] = DEFAULT_WORKERS,
             cpus: Sequence[float] = (1.0,), memories_mib: Sequence[int] | None = None,
             region: str = "us-east-1", archs: Sequence[str] = ("x86_64",),
             spot: bool = False, spot_discount: float = SPOT_DISCOUNT,
             spot_rates: tuple[float, float] | None = None,
             table: PriceTable | None = None, spot_table: PriceTable | None = None,
             local_cores: int | None = None, model: FargateModel | None = None,
             public_ip: bool = True, min_speedup: float = MIN_SPEEDUP,
             options: Sequence[Option] | None = None, seed: int = 0,
             gpus: Sequence[GpuInstance | str] = (), gpu_speedup: float = 1.0,
             gpu_rates: Mapping[str, float] | None = None,
             gpu_spot_rates: Mapping[str, float] | None = None,
             gpu_spot_discount: float = GPU_SPOT_DISCOUNT,
             gpu_model: FargateModel | None = None,
             gpu_table: GpuPriceTable | None = None) -> Estimate:
    """Wall time and cost of each option on Fargate (and GPUs), beside local, and a pick.

    Args:
        tasks: number of tasks.
        task_seconds: seconds one task takes on one core (e.g. from :func:`time_sample`).
        workers, cpus, memories_mib, archs, spot: the options compared
            (:func:`options_grid`); or ``options`` directly.
        region: the AWS region whose prices apply.
        spot_discount: Spot's discount below On-Demand, used when neither
            ``spot_rates`` (dollars per vCPU-hour, per GiB-hour) nor
            ``spot_table`` has a Spot rate for the region.
        table: the On-Demand price table (default: the shipped one; pass
            :func:`starburst.pricing_cache.table_in_use` to prefer fetched prices).
        local_cores: cores here (default: ``os.cpu_count()``).
        model: the Fargate model (default :class:`FargateModel`; ``quota_vcpu``
            caps concurrent workers).
        public_ip: count a public IPv4 address per worker (starburst's default).
        min_speedup: how much sooner than local an option must finish.
        seed: the scale model's seed (cold starts).
        gpus: GPU names or GPU instance types (:func:`parse_gpus`) to compare
            beside Fargate, each with every worker count (and Spot with ``spot``).
        gpu_speedup: how many times faster a task runs on the GPU than the
            ``task_seconds`` given; only the caller can know (default 1: the
            same time, and the estimate says so).
        gpu_rates, gpu_spot_rates: dollars per instance-hour by instance type,
            On-Demand and Spot, overriding the table and the Spot assumption.
        gpu_spot_discount: the discount assumed for GPU Spot without a Spot rate.
        gpu_model: the scale model of GPU workers (default :func:`batch_model`).
        gpu_table: the GPU instance price table (default: the shipped one; pass
            :func:`starburst.pricing_cache.gpu_table_in_use` to prefer fetched prices).

    Raises:
        ConfigurationError: a bad input, or no price for ``region`` (or a GPU
            instance type there).
    """
    if tasks < 1:
        raise ConfigurationError("tasks must be >= 1")
    if not (math.isfinite(task_seconds) and task_seconds >= 0):
        raise ConfigurationError("task seconds must be a finite number >= 0")
    if not (math.isfinite(gpu_speedup) and gpu_speedup > 0):
        raise ConfigurationError(f"gpu speed-up must be a positive number (how many times "
                                 f"faster a task runs on the GPU), got {gpu_speedup!r}")
    model = model or FargateModel()
    gpu_model = gpu_model or batch_model()
    cores = local_cores or os.cpu_count() or 1
    notes: list[str] = []
    if options is None:
        grid, notes = options_grid(workers, cpus, memories_mib, archs=archs, spot=spot)
        instances = parse_gpus(g if isinstance(g, str) else g.instance_type for g in gpus)
        more, gpu_notes = gpu_options(workers, instances, spot=spot)
        grid += more
        notes += gpu_notes
    else:
        grid = list(options)
    local = local_seconds(tasks, task_seconds, cores)
    sim_tasks, sim_seconds = tasks, task_seconds
    if tasks > SIMULATED_TASKS_MAX:
        sim_tasks = SIMULATED_TASKS_MAX
        sim_seconds = task_seconds * tasks / SIMULATED_TASKS_MAX
        notes.append(f"simulated as {sim_tasks:,} tasks of {format_duration(sim_seconds)} "
                     "(the same total work)")
    rates = {k.strip().lower(): v for k, v in (gpu_rates or {}).items()}
    spot_rates_by_type = {k.strip().lower(): v for k, v in (gpu_spot_rates or {}).items()}
    results: list[OptionEstimate] = []
    for option in grid:
        price: FargatePrice | InstancePrice
        if option.gpu is None:
            price = _price_for(option, region, table, spot_table, spot_discount, spot_rates)
            rate = hourly_rate(price, option.cpu, option.memory_mib, public_ip=public_ip)
            used, per_task, sim_per_task = model, task_seconds, sim_seconds
        else:
            price = _gpu_price(option.gpu, option.spot, region, rates, spot_rates_by_type,
                               gpu_spot_discount, gpu_table)
            # One worker per GPU: each pays its share of the instance (and its IPv4).
            rate = (price.hourly + (IPV4_PER_HOUR if public_ip else 0.0)) / option.gpu.gpus
            used = gpu_model
            per_task, sim_per_task = task_seconds / gpu_speedup, sim_seconds / gpu_speedup
        workload = _PricedWorkload(tasks=sim_tasks, task_seconds=sim_per_task,
                                   workers=option.workers, cpu=option.cpu,
                                   memory_mib=option.memory_mib, region=region,
                                   arch=option.arch, dollars_per_second=rate / 3600)
        sim = simulate(workload, used, seed=seed)
        wall = sim.makespan
        speedup = local / wall if wall > 0 else math.inf
        results.append(OptionEstimate(
            option=option, workers_running=workload.effective_workers(used),
            wall_seconds=wall, cost=sim.cost, worker_hourly=rate, speedup=speedup,
            price=price, lower_bound_seconds=sim.lower_bound_makespan,
            task_seconds=per_task, startup_seconds=(used.cold_start_min, used.cold_start_max)))
    rec = recommend(results, local, min_speedup=min_speedup, local_cores=cores)
    return Estimate(tasks=tasks, task_seconds=task_seconds, region=region, local_cores=cores,
                    local_seconds=local, options=tuple(results), recommendation=rec,
                    notes=tuple(notes), model=model, public_ip=public_ip,
                    gpu_speedup=gpu_speedup, gpu_model=gpu_model)


def demo_line(tasks: int, task_seconds: float, *, region: str = "us-east-1",
              workers: int = 10, cpu: float = 1.0, memory_mib: int = 2048,
              table: PriceTable | None = None, local_cores: int | None = None,
              local_wall: float | None = None) -> str:
    """One line: what the same work would take on Fargate (``starburst demo`` prints it).

    It ends with the verdict :func:`recommend` gives (the rule of ``starburst
    estimate``), against ``local_wall`` (the run's measured wall time) when
    given, else the ideal local time on ``local_cores``: whether staying
    local is faster, or how much sooner Fargate would finish.
    """
    est = estimate(tasks, task_seconds, options=[Option(workers, cpu, memory_mib)],
                   region=region, table=table, local_cores=local_cores)
    (only,) = est.options
    local = est.local_seconds if local_wall is None else local_wall
    here = f"here on {est.local_cores} core{'s' if est.local_cores != 1 else ''}"
    if only.wall_seconds >= local:
        verdict = (f"Staying local is faster: ~{format_duration(local)} {here}; a Fargate "
                   "worker needs 30-90 s before its first task.")
    else:
        speedup = local / only.wall_seconds if only.wall_seconds > 0 else math.inf
        rec = recommend([replace(only, speedup=speedup)], local,
                        local_cores=est.local_cores)
        worth = ("" if rec.choice is not None else
                 f"; less than {MIN_SPEEDUP:g}x sooner, so `starburst estimate` would stay "
                 "local")
        verdict = (f"That is {format_speedup(speedup)} than {here} "
                   f"(~{format_duration(local)}){worth}.")
    return (f"On Fargate ({region}, {format_size(cpu, memory_mib)}, {workers} workers): "
            f"~{format_duration(only.wall_seconds)}, ~{format_dollars(only.cost)} (estimate "
            f"from the scale model; prices recorded {only.price.recorded} from "
            f"{only.price.source}). {verdict} `starburst estimate --tasks {tasks} "
            f"--task-seconds {task_seconds:.3g}` compares more options.")
