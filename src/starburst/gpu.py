"""GPU instances, their prices and their EC2 quotas. Pure data, no I/O, no boto3.

Fargate has no GPUs, so ``gpu="nvidia-t4"`` runs the worker protocol on
AWS Batch with an EC2 compute environment. This module is the catalog
that choice needs:

- **Instances.** :func:`resolve_gpu` turns a ``gpu=`` name (and an
  optional ``instance_type=``) into a :class:`GpuInstance`: the EC2 type,
  GPUs, vCPUs and memory (from the EC2 instance type specifications,
  https://aws.amazon.com/ec2/instance-types/), and which EC2 vCPU quota
  family ("G" or "P") it draws on. Each GPU name defaults to its smallest
  instance (one GPU), the cheapest way to run one worker per GPU.
- **Prices.** :func:`instance_price` gives the Linux On-Demand price of
  an instance with its source and the date it was recorded, like
  :mod:`starburst.pricing` does for Fargate: from :data:`GPU_PRICES` (the
  shipped table), or from the table a caller passes, normally
  :func:`starburst.pricing_cache.gpu_table_in_use` (the shipped rows with
  those ``starburst pricing refresh`` fetched on top; this module never
  touches the disk). A type or region without a recorded price is a
  :class:`~starburst.exceptions.ConfigurationError`, never a guess: the
  user refreshes the prices or passes a rate (:func:`given_price`).
  EC2 Spot has no fixed price; without a user's rate, a Spot price is
  the On-Demand price less :data:`GPU_SPOT_DISCOUNT`, an assumption the
  price's ``source`` states.
- **Quotas.** GPU instances are limited by the EC2 *vCPU* quotas of
  their family (Service Quotas, service code ``ec2``), one for On-Demand
  and one for Spot: :func:`gpu_quota_code` names them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .exceptions import ConfigurationError

__all__ = [
    "GPU_PRICES",
    "GPU_SOURCE",
    "GPU_SPOT_DISCOUNT",
    "GPU_SPOT_DISCOUNT_SOURCE",
    "GpuInstance",
    "GpuPriceTable",
    "InstancePrice",
    "given_price",
    "gpu_instance",
    "gpu_instances",
    "gpu_quota_code",
    "gpu_quota_name",
    "instance_price",
    "known_gpus",
    "priced_regions",
    "resolve_gpu",
    "spot_price",
]

#: Where the On-Demand instance prices of the shipped table come from.
GPU_SOURCE = "https://aws.amazon.com/ec2/pricing/on-demand/ (Linux, On-Demand)"
_RECORDED = "2026-11-28"

#: The discount below On-Demand assumed for an EC2 GPU Spot instance when no
#: Spot rate is given. AWS advertises Spot "up to 90%" off On-Demand; GPU
#: instances are in demand and their Spot prices usually sit well above that
#: floor, so a rounder, more cautious figure is assumed. Real Spot prices vary
#: by instance type, Availability Zone and hour.
GPU_SPOT_DISCOUNT = 0.60
#: Where :data:`GPU_SPOT_DISCOUNT` comes from.
GPU_SPOT_DISCOUNT_SOURCE = (
    "assumed 60% below On-Demand: AWS advertises EC2 Spot at 'up to 90%' off "
    "(https://aws.amazon.com/ec2/spot/pricing/), GPU Spot prices usually sit well above "
    "that floor; real Spot prices vary by instance type, zone and hour")


@dataclass(frozen=True)
class GpuInstance:
    """One EC2 instance type with GPUs.

    Attributes:
        instance_type: EC2 instance type, e.g. ``g4dn.xlarge``.
        gpu: canonical accelerator name, e.g. ``nvidia-t4``.
        gpus: GPUs per instance.
        vcpus: vCPUs per instance (what the EC2 vCPU quota counts).
        memory_mib: instance memory in MiB.
        family: ``"G"`` or ``"P"``: which EC2 vCPU quota applies.
        arch: ``x86_64``, or ``arm64`` for the Graviton-based ``g5g``.
    """

    instance_type: str
    gpu: str
    gpus: int
    vcpus: int
    memory_mib: int
    family: str
    arch: str = "x86_64"


@dataclass(frozen=True)
class InstancePrice:
    """The hourly price of one instance type in one region.

    Attributes:
        instance_type: EC2 instance type.
        region: AWS region.
        hourly: dollars per instance-hour.
        spot: whether this is a Spot price.
        source: where the figure comes from (a URL, or the assumption made).
        recorded: when it was recorded (ISO date).
    """

    instance_type: str
    region: str
    hourly: float
    spot: bool
    source: str
    recorded: str


def _catalog() -> dict[str, GpuInstance]:
    # instance type, GPU, GPUs, vCPUs, memory GiB, arch. The first type of each
    # GPU is its default (the smallest, one GPU).
    rows: list[tuple[str, str, int, int, float, str]] = [
        ("g4dn.xlarge", "nvidia-t4", 1, 4, 16, "x86_64"),
        ("g4dn.2xlarge", "nvidia-t4", 1, 8, 32, "x86_64"),
        ("g4dn.4xlarge", "nvidia-t4", 1, 16, 64, "x86_64"),
        ("g4dn.8xlarge", "nvidia-t4", 1, 32, 128, "x86_64"),
        ("g4dn.12xlarge", "nvidia-t4", 4, 48, 192, "x86_64"),
        ("g4dn.16xlarge", "nvidia-t4", 1, 64, 256, "x86_64"),
        ("g5.xlarge", "nvidia-a10g", 1, 4, 16, "x86_64"),
        ("g5.2xlarge", "nvidia-a10g", 1, 8, 32, "x86_64"),
        ("g5.4xlarge", "nvidia-a10g", 1, 16, 64, "x86_64"),
        ("g5.8xlarge", "nvidia-a10g", 1, 32, 128, "x86_64"),
        ("g5.12xlarge", "nvidia-a10g", 4, 48, 192, "x86_64"),
        ("g5.16xlarge", "nvidia-a10g", 1, 64, 256, "x86_64"),
        ("g5.24xlarge", "nvidia-a10g", 4, 96, 384, "x86_64"),
        ("g5.48xlarge", "nvidia-a10g", 8, 192, 768, "x86_64"),
        ("g6.xlarge", "nvidia-l4", 1, 4, 16, "x86_64"),
        ("g6.2xlarge", "nvidia-l4", 1, 8, 32, "x86_64"),
        ("g6.4xlarge", "nvidia-l4", 1, 16, 64, "x86_64"),
        ("g6.8xlarge", "nvidia-l4", 1, 32, 128, "x86_64"),
        ("g6.12xlarge", "nvidia-l4", 4, 48, 192, "x86_64"),
        ("g6.16xlarge", "nvidia-l4", 1, 64, 256, "x86_64"),
        ("g6.24xlarge", "nvidia-l4", 4, 96, 384, "x86_64"),
        ("g6.48xlarge", "nvidia-l4", 8, 192, 768, "x86_64"),
        ("g6e.xlarge", "nvidia-l40s", 1, 4, 32, "x86_64"),
        ("g6e.2xlarge", "nvidia-l40s", 1, 8, 64, "x86_64"),
        ("g6e.4xlarge", "nvidia-l40s", 1, 16, 128, "x86_64"),
        ("g6e.8xlarge", "nvidia-l40s", 1, 32, 256, "x86_64"),
        ("g6e.12xlarge", "nvidia-l40s", 4, 48, 384, "x86_64"),
        ("g6e.16xlarge", "nvidia-l40s", 1, 64, 512, "x86_64"),
        ("g6e.24xlarge", "nvidia-l40s", 4, 96, 768, "x86_64"),
        ("g6e.48xlarge", "nvidia-l40s", 8, 192, 1536, "x86_64"),
        ("g5g.xlarge", "nvidia-t4g", 1, 4, 8, "arm64"),
        ("g5g.2xlarge", "nvidia-t4g", 1, 8, 16, "arm64"),
        ("g5g.4xlarge", "nvidia-t4g", 1, 16, 32, "arm64"),
        ("g5g.8xlarge", "nvidia-t4g", 1, 32, 64, "arm64"),
        ("g5g.16xlarge", "nvidia-t4g", 2, 64, 128, "arm64"),
        ("p3.2xlarge", "nvidia-v100", 1, 8, 61, "x86_64"),
        ("p3.8xlarge", "nvidia-v100", 4, 32, 244, "x86_64"),
        ("p3.16xlarge", "nvidia-v100", 8, 64, 488, "x86_64"),
        ("p4d.24xlarge", "nvidia-a100", 8, 96, 1152, "x86_64"),
        ("p5.48xlarge", "nvidia-h100", 8, 192, 2048, "x86_64"),
    ]
    return {t: GpuInstance(instance_type=t, gpu=g, gpus=n, vcpus=c, memory_mib=int(m * 1024),
                           family=t[0].upper(), arch=a)
            for t, g, n, c, m, a in rows}


_CATALOG: dict[str, GpuInstance] = _catalog()

# Linux On-Demand dollars per instance-hour, recorded 2026-11-28 from
# https://aws.amazon.com/ec2/pricing/on-demand/ and cross-checked against
# instances.vantage.sh. p4d/p5 carry the prices after AWS's June 2025 cut.
# Types and regions left out could not be confirmed; they raise rather than guess.
# No official per-region figures for other regions were found in stored sources
# on 2026-12-04 (the EC2 pricing page renders its figures with JavaScript).
# Each row is (dollars per hour, source, recorded date), so a row added from
# another source keeps its own provenance.
_ON_DEMAND: dict[tuple[str, str], tuple[float, str, str]] = {
    (t, "us-east-1"): (rate, f"{GPU_SOURCE}, us-east-1", _RECORDED) for t, rate in [
        ("g4dn.xlarge", 0.526), ("g4dn.2xlarge", 0.752), ("g4dn.4xlarge", 1.204),
        ("g4dn.8xlarge", 2.176), ("g4dn.12xlarge", 3.912), ("g4dn.16xlarge", 4.352),
        ("g5.xlarge", 1.006), ("g5.2xlarge", 1.212), ("g5.4xlarge", 1.624),
        ("g5.8xlarge", 2.448), ("g5.12xlarge", 5.672), ("g5.16xlarge", 4.096),
        ("g5.24xlarge", 8.144), ("g5.48xlarge", 16.288),
        ("g6.xlarge", 0.8048), ("g6.2xlarge", 0.9776), ("g6.4xlarge", 1.3232),
        ("g6.8xlarge", 2.0144), ("g6.12xlarge", 4.6016), ("g6.16xlarge", 3.3968),
        ("g6.24xlarge", 6.6752), ("g6.48xlarge", 13.3504),
        ("g6e.xlarge", 1.861), ("g6e.2xlarge", 2.24208), ("g6e.4xlarge", 3.00424),
        ("g6e.8xlarge", 4.52856), ("g6e.16xlarge", 7.57719), ("g6e.24xlarge", 15.06559),
        ("g6e.48xlarge", 30.13118),
        ("g5g.xlarge", 0.42),
        ("p3.2xlarge", 3.06), ("p3.8xlarge", 12.24), ("p3.16xlarge", 24.48),
        ("p4d.24xlarge", 21.95764), ("p5.48xlarge", 55.04),
    ]
}

#: A GPU price table: (instance type, region) -> Linux On-Demand price.
GpuPriceTable = dict[tuple[str, str], InstancePrice]

#: The shipped GPU price table, keyed by (instance type, region).
GPU_PRICES: GpuPriceTable = {
    key: InstancePrice(key[0], key[1], hourly, False, source, recorded)
    for key, (hourly, source, recorded) in _ON_DEMAND.items()}

# Service Quotas codes (service "ec2"): vCPUs of running instances per family.
_QUOTAS: dict[tuple[str, bool], tuple[str, str]] = {
    ("G", False): ("L-DB2E81BA", "Running On-Demand G and VT instances"),
    ("G", True): ("L-3819A6DF", "All G and VT Spot Instance Requests"),
    ("P", False): ("L-417A185B", "Running On-Demand P instances"),
    ("P", True): ("L-7212CCBC", "All P Spot Instance Requests"),
}


def known_gpus() -> list[str]:
    """The accepted ``gpu=`` names, sorted (``nvidia-a100``, ``nvidia-t4``, ...)."""
    return sorted({i.gpu for i in _CATALOG.values()})


def gpu_instances(gpu: str) -> list[GpuInstance]:
    """Every catalogued instance type carrying ``gpu``, its default (smallest) first.

    Raises:
        ConfigurationError: ``gpu`` is not a known GPU name.
    """
    name = _canonical(gpu)
    return [i for i in _CATALOG.values() if i.gpu == name]


def gpu_instance(instance_type: str) -> GpuInstance:
    """The catalogued GPU instance ``instance_type`` (``g5.2xlarge``).

    Raises:
        ConfigurationError: the type is not in the catalog.
    """
    try:
        return _CATALOG[instance_type.strip().lower()]
    except KeyError:
        raise ConfigurationError(
            f"{instance_type!r} is not a GPU instance type starburst knows; known types: "
            f"{', '.join(sorted(_CATALOG))}. Pick one of them, or leave instance_type= "
            "unset to get the default size for your gpu=.") from None


def resolve_gpu(gpu: str, instance_type: str | None = None) -> GpuInstance:
    """The instance that runs ``gpu``: its default size, or ``instance_type``.

    ``gpu`` is matched case-insensitively and the ``nvidia-`` prefix may be
    left out (``"T4"`` is ``nvidia-t4``). Without ``instance_type`` the
    smallest instance with that GPU is chosen (``nvidia-t4`` ->
    ``g4dn.xlarge``); with it, that type must carry the GPU.

    Raises:
        ConfigurationError: ``gpu`` is unknown, ``instance_type`` is unknown,
            or ``instance_type`` does not carry ``gpu``; the message lists the
            valid choices.
    """
    choices = gpu_instances(gpu)
    if instance_type is None:
        return choices[0]
    chosen = gpu_instance(instance_type)
    if chosen.gpu != choices[0].gpu:
        raise ConfigurationError(
            f"instance type {chosen.instance_type} carries {chosen.gpu}, not {choices[0].gpu}; "
            f"instance types with {choices[0].gpu}: "
            f"{', '.join(i.instance_type for i in choices)}. Pass one of them, or "
            f"gpu={chosen.gpu!r} to keep {chosen.instance_type}.")
    return chosen


def _canonical(gpu: str) -> str:
    name = gpu.strip().lower()
    if not name.startswith("nvidia-"):
        name = f"nvidia-{name}"
    if name not in {i.gpu for i in _CATALOG.values()}:
        raise ConfigurationError(
            f"unknown gpu {gpu!r}; known GPUs: {', '.join(known_gpus())}. "
            "Pass one of them (e.g. gpu='nvidia-t4'), and instance_type= for another size.")
    return name


def priced_regions(instance_type: str, table: GpuPriceTable | None = None) -> list[str]:
    """The regions with a recorded On-Demand price for ``instance_type`` in ``table``
    (default: the shipped table), sorted."""
    prices = GPU_PRICES if table is None else table
    return sorted(r for t, r in prices if t == instance_type)


def instance_price(instance_type: str, region: str, *, spot: bool = False,
                   discount: float = GPU_SPOT_DISCOUNT,
                   table: GpuPriceTable | None = None) -> InstancePrice:
    """The Linux hourly price of ``instance_type`` in ``region``.

    The On-Demand price comes from ``table`` (default: the shipped
    :data:`GPU_PRICES`; pass :func:`starburst.pricing_cache.gpu_table_in_use`
    to prefer prices fetched with ``starburst pricing refresh``). A Spot
    price is the On-Demand price less ``discount`` (default
    :data:`GPU_SPOT_DISCOUNT`), with the assumption stated in ``source``;
    a user who knows the Spot rate uses :func:`given_price` instead.

    Raises:
        ConfigurationError: no price is recorded for this type and region
            (the message says how to fetch one or pass a rate), or
            ``discount`` is not in [0, 1).
    """
    itype = gpu_instance(instance_type).instance_type
    prices = GPU_PRICES if table is None else table
    try:
        on_demand = prices[(itype, region)]
    except KeyError:
        regions = priced_regions(itype, prices)
        raise ConfigurationError(
            f"no On-Demand price is recorded for {itype} in {region!r} (recorded for: "
            f"{', '.join(regions) or 'no region'}). Look it up on "
            "https://aws.amazon.com/ec2/pricing/on-demand/ and pass it as a rate "
            f"(`starburst estimate --gpu-rate {itype}=DOLLARS_PER_HOUR`; in Python, "
            "starburst.gpu.given_price), or choose a priced instance type or region; "
            f"`starburst pricing refresh --region {region}` fetches the GPU prices of "
            "that region from the AWS Pricing API (needs AWS credentials).") from None
    return spot_price(on_demand, discount) if spot else on_demand


def spot_price(on_demand: InstancePrice, discount: float = GPU_SPOT_DISCOUNT) -> InstancePrice:
    """An assumed Spot price: ``on_demand`` less ``discount``, the assumption in ``source``.

    Raises:
        ConfigurationError: ``discount`` is not in [0, 1).
    """
    if not 0.0 <= discount < 1.0:
        raise ConfigurationError(
            f"spot discount {discount!r} must be a fraction in [0, 1), e.g. 0.6 for 60% off")
    note = (GPU_SPOT_DISCOUNT_SOURCE if discount == GPU_SPOT_DISCOUNT else
            f"assumed {discount:.0%} below On-Demand (your figure)")
    return InstancePrice(on_demand.instance_type, on_demand.region,
                         on_demand.hourly * (1.0 - discount), True,
                         f"{note}; On-Demand: {on_demand.source}", on_demand.recorded)


def given_price(instance_type: str, region: str, hourly: float, *, spot: bool = False,
                recorded: str = _RECORDED) -> InstancePrice:
    """A price the user states (``--gpu-rate TYPE=DOLLARS``); it overrides table and assumption.

    Raises:
        ConfigurationError: ``hourly`` is not a positive number.
    """
    if not hourly > 0:
        raise ConfigurationError(
            f"an instance rate must be a positive number of dollars per hour, got {hourly!r}")
    what = "Spot" if spot else "On-Demand"
    return InstancePrice(instance_type, region, float(hourly), spot,
                         f"your {what} rate for {instance_type}", recorded)


def gpu_quota_code(family: str, *, spot: bool) -> str:
    """The Service Quotas code (service ``ec2``) of ``family``'s vCPU quota.

    ``"G"``: Running On-Demand G and VT instances (``L-DB2E81BA``) or All G
    and VT Spot Instance Requests (``L-3819A6DF``); ``"P"``: Running
    On-Demand P instances (``L-417A185B``) or All P Spot Instance Requests
    (``L-7212CCBC``).

    Raises:
        ConfigurationError: ``family`` is neither ``"G"`` nor ``"P"``.
    """
    return _quota(family, spot)[0]


def gpu_quota_name(family: str, *, spot: bool) -> str:
    """The Service Quotas console name of the quota :func:`gpu_quota_code` returns."""
    return _quota(family, spot)[1]


def _quota(family: str, spot: bool) -> tuple[str, str]:
    try:
        return _QUOTAS[(family.upper(), bool(spot))]
    except KeyError:
        raise ConfigurationError(
            f"unknown EC2 GPU instance family {family!r}; expected 'G' (g4dn, g5, g5g, g6, g6e) "
            "or 'P' (p3, p4d, p5)") from None
