"""The EC2 GPU vCPU quota, live: how many GPU instances of a type may run now.

AWS Batch runs GPU workers on EC2 instances, which count against the EC2
vCPU quota of their family (Service Quotas, service ``ec2``; codes in
:func:`starburst.gpu.gpu_quota_code`): "Running On-Demand G and VT
instances", "Running On-Demand P instances" and their Spot counterparts.
New accounts often start these at 0, so the plan says so in words the
user can act on (the quota's name and code, and the vCPUs to ask for).

* :func:`read_gpu_quota`: the applied value (GetServiceQuota), else AWS's
  default (GetAWSDefaultServiceQuota); ``None`` when the identity may not
  read Service Quotas (the caller proceeds and AWS Batch decides).
* :func:`gpu_vcpus_in_use`: vCPUs of the family's pending and running
  instances in the region (EC2 DescribeInstances), On-Demand or Spot.
* :func:`read_gpu_plan`: both, fitted with
  :func:`starburst.quota.plan_workers` into a :class:`GpuQuotaStatus`.
  ``STARBURST_GPU_VCPU_QUOTA`` replaces the Service Quotas read (as
  ``STARBURST_VCPU_QUOTA`` does for Fargate): emulators use it, and so
  can a user who knows the quota but may not read Service Quotas.

Clients come from ``source`` as in :mod:`starburst.aws.quota`: a
:class:`GpuQuotaClients`, a ``boto3.session.Session``, or None for
starburst's client factory.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3.session
from botocore.exceptions import ClientError

from ..exceptions import CloudError, ConfigurationError
from ..gpu import GpuInstance, gpu_instance, gpu_quota_code, gpu_quota_name
from ..quota import QuotaPlan, plan_workers
from .errors import translate_errors
from .quota import env_quota, is_denied, quota_clients, read_service_quota

if TYPE_CHECKING:
    from mypy_boto3_ec2.client import EC2Client
    from mypy_boto3_service_quotas.client import ServiceQuotasClient

__all__ = ["GPU_QUOTA_ENV", "SERVICE_CODE", "GpuQuotaClients", "GpuQuotaStatus",
           "gpu_vcpus_in_use", "plan_gpu_instances", "quota_override", "read_gpu_plan",
           "read_gpu_quota"]


#: Service Quotas service code of the EC2 vCPU quotas.
SERVICE_CODE = "ec2"
#: Environment variable that replaces the Service Quotas read (vCPUs).
GPU_QUOTA_ENV = "STARBURST_GPU_VCPU_QUOTA"
#: Instance states that hold vCPUs against the quota.
_HOLDING = ["pending", "running"]
#: Instance type prefixes of each quota family ("G and VT" includes Gr and VT).
_FAMILY_PREFIXES = {"G": frozenset({"g", "gr", "vt"}), "P": frozenset({"p"})}
_PREFIX = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class GpuQuotaClients:
    """The clients GPU quota reading uses."""

    quotas: ServiceQuotasClient
    ec2: EC2Client

    @classmethod
    def create(cls, source: GpuQuotaClients | boto3.session.Session | None = None,
               region: str | None = None) -> GpuQuotaClients:
        """Clients from ``source`` (see the module docstring) for ``region``."""
        if isinstance(source, GpuQuotaClients):
            return source
        quotas, ec2 = quota_clients(source, region, "ec2")
        return cls(quotas=quotas, ec2=ec2)


Source = GpuQuotaClients | boto3.session.Session | None


def read_gpu_quota(family: str, source: Source = None, region: str | None = None, *,
                   spot: bool = False) -> float | None:
    """The EC2 vCPU quota of GPU ``family`` (``"G"``/``"P"``); None when it may not be read.

    The applied value, else AWS's default when none is applied. Access
    denied is logged and answered with None.

    Raises:
        ConfigurationError: ``family`` is neither "G" nor "P".
        CloudError: any other failure (the message says what to do).
    """
    code = gpu_quota_code(family, spot=spot)
    clients = GpuQuotaClients.create(source, region)
    return read_service_quota(clients.quotas, SERVICE_CODE, code,
                              f"the EC2 vCPU quota '{gpu_quota_name(family, spot=spot)}' ({code})")


def _family_of(instance_type: str) -> str | None:
    found = _PREFIX.match(instance_type)
    prefix = found.group(0) if found else ""
    return next((f for f, prefixes in _FAMILY_PREFIXES.items() if prefix in prefixes), None)


def _instance_vcpus(ec2: EC2Client, instance: Any, unknown: dict[str, int]) -> int:
    """vCPUs of a described instance: its CPU options, else the catalog, else EC2's spec."""
    options = instance.get("CpuOptions") or {}
    if options.get("CoreCount"):
        return int(options["CoreCount"]) * int(options.get("ThreadsPerCore", 1))
    itype = str(instance["InstanceType"])
    try:
        return gpu_instance(itype).vcpus
    except ConfigurationError:
        pass
    if itype not in unknown:
        types = ec2.describe_instance_types(InstanceTypes=[itype])["InstanceTypes"]  # type: ignore[list-item]
        unknown[itype] = int(types[0]["VCpuInfo"]["DefaultVCpus"]) if types else 0
    return unknown[itype]


def gpu_vcpus_in_use(family: str, source: Source = None, region: str | None = None, *,
                     spot: bool = False) -> float:
    """vCPUs of the pending and running On-Demand (or Spot) instances of ``family``.

    Raises:
        CloudError: an EC2 call failed (the message says what to do).
    """
    wanted = family.upper()
    clients = GpuQuotaClients.create(source, region)
    total = 0
    unknown: dict[str, int] = {}
    with translate_errors("counting the vCPUs of running GPU instances (EC2 DescribeInstances)"):
        pages = clients.ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "instance-state-name", "Values": _HOLDING}])
        for page in pages:
            for reservation in page.get("Reservations", []):
                for instance in reservation.get("Instances", []):
                    is_spot = instance.get("InstanceLifecycle") == "spot"
                    if is_spot == spot and _family_of(instance["InstanceType"]) == wanted:
                        total += _instance_vcpus(clients.ec2, instance, unknown)
    return float(total)


@dataclass(frozen=True)
class GpuQuotaStatus:
    """The EC2 GPU quota, what runs, and the plan for ``instances`` of one type.

    Attributes:
        instance: the GPU instance type planned for.
        region: AWS region (None: the default one).
        spot: whether the Spot quota applies.
        plan: :func:`starburst.quota.plan_workers` with one worker per
            instance and ``cpu`` = the instance's vCPUs.
        read_from: where the quota came from (Service Quotas, or the
            environment variable).
        in_use_note: why the vCPUs in use count as 0, when they could not be
            counted.
    """

    instance: GpuInstance
    region: str | None
    spot: bool
    plan: QuotaPlan
    read_from: str = "Service Quotas"
    in_use_note: str = ""

    @property
    def quota_code(self) -> str:
        """The Service Quotas code that limits these instances."""
        return gpu_quota_code(self.instance.family, spot=self.spot)

    @property
    def quota_name(self) -> str:
        """The quota's name in the Service Quotas console."""
        return gpu_quota_name(self.instance.family, spot=self.spot)

    @property
    def instances(self) -> int:
        """How many instances fit now."""
        return self.plan.workers

    def suggested_quota(self) -> int:
        """vCPUs to ask for so every requested instance fits beside those already running.

        Exactly what is needed (a multiple of the instance's vCPUs), not a
        round figure: GPU quota increases are reviewed by hand and small,
        justified requests are granted more readily.
        """
        need = self.plan.requested * self.instance.vcpus + self.plan.in_use_vcpu
        return math.ceil(need)

    def _increase(self) -> str:
        region = f" --region {self.region}" if self.region else ""
        return (f"request {self.suggested_quota()} vCPU in the Service Quotas console (EC2, "
                f"'{self.quota_name}'), or run `aws service-quotas "
                f"request-service-quota-increase --service-code {SERVICE_CODE} --quota-code "
                f"{self.quota_code} --desired-value {self.suggested_quota()}{region}`")

    def message(self) -> str:
        """One paragraph for the user (empty when nothing was cut)."""
        plan, itype = self.plan, self.instance.instance_type
        quota = f"the EC2 quota '{self.quota_name}' ({self.quota_code})"
        if plan.quota_vcpu is None:
            return (f"{quota[0].upper()}{quota[1:]} could not be read (no permission for "
                    f"Service Quotas); starting {plan.requested} {itype} instances and letting "
                    f"AWS Batch decide. Set {GPU_QUOTA_ENV} to the quota if you know it.")
        if not plan.limited:
            return ""
        have = (f"{plan.quota_vcpu:g} vCPU, {plan.in_use_vcpu:g} in use, "
                f"{self.instance.vcpus} per {itype}; from {self.read_from}")
        if plan.workers == 0:
            return (f"{quota[0].upper()}{quota[1:]} allows no {itype} instance ({have}). "
                    "New AWS accounts start GPU quotas at 0: "
                    f"{self._increase()}; or wait for running instances to end.")
        return (f"{quota[0].upper()}{quota[1:]} allows {plan.workers} {itype} instances "
                f"({have}); {plan.requested} requested: the work runs on {plan.workers} "
                f"(about {plan.waves} waves of your tasks). To run all of them, "
                f"{self._increase()}.")


def plan_gpu_instances(instance: GpuInstance, instances: int, quota_vcpu: float | None,
                       in_use_vcpu: float = 0.0, *, region: str | None = None,
                       spot: bool = False, read_from: str = "Service Quotas",
                       in_use_note: str = "") -> GpuQuotaStatus:
    """Fit ``instances`` of ``instance`` into what the quota leaves free. Pure."""
    return GpuQuotaStatus(instance=instance, region=region, spot=spot,
                          plan=plan_workers(instances, float(instance.vcpus), quota_vcpu,
                                            in_use_vcpu),
                          read_from=read_from, in_use_note=in_use_note)


def quota_override() -> float | None:
    """The vCPU quota set by ``STARBURST_GPU_VCPU_QUOTA``, or None when it is unset.

    Raises:
        ConfigurationError: the variable is not a non-negative number.
    """
    return env_quota(GPU_QUOTA_ENV, quota="EC2 GPU vCPU quota", example=16)


def read_gpu_plan(instance: GpuInstance, instances: int, source: Source = None,
                  region: str | None = None, *, spot: bool = False) -> GpuQuotaStatus:
    """Read the GPU quota and the vCPUs in use; fit ``instances`` of ``instance``.

    ``STARBURST_GPU_VCPU_QUOTA`` replaces the quota read. When EC2 may not
    be described, the vCPUs in use count as 0 and ``in_use_note`` says so.

    Raises:
        ConfigurationError: ``STARBURST_GPU_VCPU_QUOTA`` is not a number.
        CloudError: an AWS call failed for another reason than permissions.
    """
    clients = GpuQuotaClients.create(source, region)
    quota = quota_override()
    read_from = GPU_QUOTA_ENV if quota is not None else "Service Quotas"
    if quota is None:
        quota = read_gpu_quota(instance.family, clients, region, spot=spot)
    note = ""
    try:
        in_use = gpu_vcpus_in_use(instance.family, clients, region, spot=spot)
    except CloudError as exc:
        cause = exc.__cause__
        if not (isinstance(cause, ClientError) and is_denied(cause)):
            raise
        in_use = 0.0
        note = ("vCPUs in use could not be counted (no permission for EC2 "
                "DescribeInstances); counted as 0")
    return plan_gpu_instances(instance, instances, quota, in_use, region=region, spot=spot,
                              read_from=read_from, in_use_note=note)
