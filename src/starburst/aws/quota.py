"""The Fargate vCPU quota, live: what the account may run, what already runs, increases.

* :func:`read_quota`: Service Quotas ``fargate`` / ``L-3032A538``
  (On-Demand vCPU) or ``L-36FBB829`` (Spot vCPU). The applied value,
  else AWS's default. ``None`` when the identity may not read Service
  Quotas: the caller says so and proceeds (RunTask then decides).
  ``STARBURST_VCPU_QUOTA`` (On-Demand) and ``STARBURST_SPOT_VCPU_QUOTA``
  (Spot) replace the read (emulators, or a user who knows the quota but may
  not read Service Quotas). This is the one quota reader: the Fargate
  backend, ``starburst doctor`` and ``starburst quota`` all go through it,
  so they never disagree.
* :func:`vcpus_in_use`: the vCPUs of Fargate tasks not yet stopped in
  every cluster of the region (ListClusters, ListTasks, DescribeTasks,
  all paginated), On-Demand or Spot (``capacityProviderName``
  ``FARGATE_SPOT``).
* :func:`request_increase` and :func:`quota_requests`:
  RequestServiceQuotaIncrease and ListRequestedServiceQuotaChangeHistory.

The pure arithmetic (how many workers fit, how many waves) is
:func:`starburst.quota.plan_workers`; :func:`read_plan` joins the two, and
the Fargate backend can call it (or :func:`read_quota` alone) before a
launch.

Every function takes its clients from ``source``: a :class:`QuotaClients`
(tests and callers that already hold clients), a ``boto3.session.Session``,
or None for starburst's client factory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import boto3.session
from botocore.exceptions import ClientError

from ..exceptions import CloudError, ConfigurationError
from ..quota import QuotaPlan, plan_workers
from . import consistency
from .errors import error_code, translate_errors

if TYPE_CHECKING:
    from mypy_boto3_ecs.client import ECSClient
    from mypy_boto3_service_quotas.client import ServiceQuotasClient

__all__ = ["OPEN_STATUSES", "QUOTA_CODES", "QUOTA_ENV", "SERVICE_CODE", "QuotaClients",
           "QuotaRequest", "QuotaStatus", "env_quota", "quota_code", "quota_override",
           "quota_requests", "read_plan", "read_quota", "read_quota_from", "request_increase",
           "vcpus_in_use"]

log = logging.getLogger("starburst")

#: Service Quotas service code of Fargate.
SERVICE_CODE = "fargate"
#: Quota codes: False -> On-Demand vCPU, True -> Spot vCPU.
QUOTA_CODES = {False: "L-3032A538", True: "L-36FBB829"}
#: Environment variables that replace the Service Quotas read: False -> On-Demand,
#: True -> Spot (vCPUs).
QUOTA_ENV = {False: "STARBURST_VCPU_QUOTA", True: "STARBURST_SPOT_VCPU_QUOTA"}
#: Where a quota read from Service Quotas came from (``QuotaStatus.read_from``).
READ_FROM_SERVICE_QUOTAS = "Service Quotas"
#: Statuses of a quota increase request still being decided.
OPEN_STATUSES = frozenset({"PENDING", "CASE_OPENED"})
#: Task states that hold vCPUs against the quota (everything before STOPPED
#: that has capacity: provisioning, pending, activating, running, stopping).
_HOLDING = frozenset({"PROVISIONING", "PENDING", "ACTIVATING", "RUNNING", "DEACTIVATING",
                      "STOPPING", "DEPROVISIONING"})
_DENIED = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation",
                     "NoAuthorization"})


def quota_code(spot: bool = False) -> str:
    """The Service Quotas code of Fargate's On-Demand (or Spot) vCPU quota."""
    return QUOTA_CODES[spot]


@dataclass(frozen=True)
class QuotaClients:
    """The clients quota reading uses."""

    quotas: ServiceQuotasClient
    ecs: ECSClient

    @classmethod
    def create(cls, source: QuotaClients | boto3.session.Session | None = None,
               region: str | None = None) -> QuotaClients:
        """Clients from ``source`` (see the module docstring) for ``region``."""
        if isinstance(source, QuotaClients):
            return source
        quotas, ecs = quota_clients(source, region, "ecs")
        return cls(quotas=quotas, ecs=ecs)


def quota_clients(source: boto3.session.Session | None, region: str | None,
                  other: str) -> tuple[Any, Any]:
    """A Service Quotas client and an ``other`` client (``"ecs"``, ``"ec2"``) for ``region``.

    From ``source`` when it is a boto3 session, else from starburst's client
    factory (adaptive retries, ``AWS_ENDPOINT_URL``).
    """
    if source is not None:
        session: Any = source  # boto3's overloads want a literal service name
        with translate_errors(f"creating the Service Quotas and {other.upper()} clients"):
            return (session.client("service-quotas", region_name=region),
                    session.client(other, region_name=region))
    from .clients import client

    make: Callable[..., Any] = client  # the factory's overloads omit service-quotas
    return make("service-quotas", region=region), make(other, region=region)


Source = QuotaClients | boto3.session.Session | None


def is_denied(exc: ClientError) -> bool:
    """Whether ``exc`` is an access-denied answer (the caller may proceed without)."""
    return error_code(exc) in _DENIED


def read_service_quota(quotas: ServiceQuotasClient, service: str, code: str,
                       what: str) -> float | None:
    """The applied value of Service Quotas ``service``/``code``, else AWS's default.

    ``what`` names the quota in the warning logged when access is denied;
    the answer is then None, and the run proceeds (AWS decides at launch).

    Raises:
        CloudError: any other failure (the message says what to do).
    """
    with translate_errors(f"Service Quotas GetServiceQuota ({service} {code})"):
        try:
            return float(quotas.get_service_quota(
                ServiceCode=service, QuotaCode=code)["Quota"]["Value"])
        except ClientError as exc:
            if is_denied(exc):
                log.warning("cannot read %s (%s: no permission servicequotas:GetServiceQuota);"
                            " proceeding without it", what, error_code(exc))
                return None
            if error_code(exc) != "NoSuchResourceException":
                raise
        try:
            return float(quotas.get_aws_default_service_quota(
                ServiceCode=service, QuotaCode=code)["Quota"]["Value"])
        except ClientError as exc:
            if is_denied(exc):
                log.warning("cannot read %s (%s); proceeding without it", what, error_code(exc))
                return None
            raise


def env_quota(name: str, *, quota: str, example: int) -> float | None:
    """The vCPUs environment variable ``name`` sets in place of the ``quota`` read
    from Service Quotas, or None when it is unset (the Fargate and the GPU quotas).

    Raises:
        ConfigurationError: the variable is not a non-negative number; the
            message names ``quota`` and suggests ``example`` vCPUs.
    """
    injected = os.environ.get(name, "").strip()
    if not injected:
        return None
    try:
        value = float(injected)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ConfigurationError(
            f"{name}={injected!r} is not a number of vCPUs; set it to the {quota} (e.g. "
            f"{example}) or unset it to read the quota from Service Quotas")
    return value


def quota_override(spot: bool = False) -> float | None:
    """The vCPU quota set by ``STARBURST_VCPU_QUOTA`` (``..._SPOT_...``), or None when unset.

    Raises:
        ConfigurationError: the variable is not a non-negative number.
    """
    return env_quota(QUOTA_ENV[spot], example=256,
                     quota=f"Fargate {'Spot' if spot else 'On-Demand'} vCPU quota")


def read_quota_from(source: Source = None, region: str | None = None, *,
                    spot: bool = False) -> tuple[float | None, str]:
    """Fargate's vCPU quota in ``region`` and where it came from.

    ``STARBURST_VCPU_QUOTA`` / ``STARBURST_SPOT_VCPU_QUOTA`` when set (no
    AWS call at all), else Service Quotas: the applied value
    (GetServiceQuota), else AWS's default (GetAWSDefaultServiceQuota). The
    quota is None when Service Quotas may not be read (access denied is
    logged; the run proceeds and RunTask decides).

    Returns:
        ``(quota or None, source)``: source is the variable's name or
        ``"Service Quotas"``.

    Raises:
        ConfigurationError: the variable is set but not a number.
        CloudError: any other failure (the message says what to do).
    """
    injected = quota_override(spot)
    if injected is not None:
        return injected, QUOTA_ENV[spot]
    clients = QuotaClients.create(source, region)
    return (read_service_quota(clients.quotas, SERVICE_CODE, quota_code(spot),
                               "the Fargate vCPU quota"), READ_FROM_SERVICE_QUOTAS)


def read_quota(source: Source = None, region: str | None = None, *,
               spot: bool = False) -> float | None:
    """Fargate's vCPU quota in ``region``; None when Service Quotas may not be read.

    See :func:`read_quota_from` (this drops where the value came from).

    Raises:
        ConfigurationError: ``STARBURST_VCPU_QUOTA`` is set but not a number.
        CloudError: any other failure (the message says what to do).
    """
    return read_quota_from(source, region, spot=spot)[0]


def _task_arns(ecs: ECSClient) -> Iterator[tuple[str, list[str]]]:
    """(cluster ARN, task ARNs whose desired status is RUNNING), per page."""
    for clusters in ecs.get_paginator("list_clusters").paginate():
        for cluster in clusters.get("clusterArns", []):
            pages = ecs.get_paginator("list_tasks").paginate(cluster=cluster,
                                                             desiredStatus="RUNNING")
            for page in pages:
                arns = page.get("taskArns", [])
                if arns:
                    yield cluster, arns


def _task_vcpus(ecs: ECSClient, task: Any, definitions: dict[str, float]) -> float:
    """vCPUs of a task: its ``cpu`` (CPU units), else its task definition's."""
    units = task.get("cpu")
    if units:
        return float(units) / 1024
    arn = task.get("taskDefinitionArn", "")
    if arn not in definitions:
        definition = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
        definitions[arn] = float(definition.get("cpu") or 0) / 1024
    return definitions[arn]


def _is_fargate(task: Any) -> tuple[bool, bool]:
    """(is a Fargate task, is a Fargate Spot task)."""
    provider = task.get("capacityProviderName") or ""
    spot = provider == "FARGATE_SPOT"
    return task.get("launchType") == "FARGATE" or provider in ("FARGATE", "FARGATE_SPOT"), spot


def vcpus_in_use(source: Source = None, region: str | None = None, *,
                 spot: bool = False) -> float:
    """vCPUs of the Fargate On-Demand (or Spot) tasks not yet stopped in ``region``.

    Counts every cluster, every task whose desired status is RUNNING and
    whose last status still holds capacity.

    Raises:
        CloudError: an ECS call failed (the message says what to do).
    """
    clients = QuotaClients.create(source, region)
    ecs = clients.ecs
    total = 0.0
    definitions: dict[str, float] = {}
    with translate_errors("counting the vCPUs of running Fargate tasks "
                          "(ECS ListClusters/ListTasks/DescribeTasks)"):
        for cluster, arns in _task_arns(ecs):
            for task in consistency.describe_tasks(ecs, cluster, arns):
                fargate, is_spot = _is_fargate(task)
                if (fargate and is_spot == spot
                        and task.get("lastStatus", "RUNNING") in _HOLDING):
                    total += _task_vcpus(ecs, task, definitions)
    return total


@dataclass(frozen=True)
class QuotaStatus:
    """The quota, what runs, and the plan for ``workers`` workers of ``cpu`` vCPUs."""

    region: str | None
    spot: bool
    quota_vcpu: float | None
    in_use_vcpu: float
    plan: QuotaPlan
    in_use_note: str = ""
    #: Where the quota came from: "Service Quotas" or the variable that set it.
    read_from: str = READ_FROM_SERVICE_QUOTAS


def read_plan(workers: int, cpu: float, source: Source = None, region: str | None = None, *,
              spot: bool = False) -> QuotaStatus:
    """Read the quota and the vCPUs in use; fit ``workers`` workers of ``cpu`` vCPUs.

    The quota is read by :func:`read_quota_from` (``STARBURST_VCPU_QUOTA``
    first). When ECS may not be listed, the vCPUs in use count as 0 and
    ``in_use_note`` says so.
    """
    clients = QuotaClients.create(source, region)
    quota, read_from = read_quota_from(clients, region, spot=spot)
    note = ""
    try:
        in_use = vcpus_in_use(clients, region, spot=spot)
    except CloudError as exc:
        cause = exc.__cause__
        if not (isinstance(cause, ClientError) and is_denied(cause)):
            raise
        in_use = 0.0
        note = ("vCPUs in use could not be counted (no permission to list ECS tasks); "
                "counted as 0")
    return QuotaStatus(region=region, spot=spot, quota_vcpu=quota, in_use_vcpu=in_use,
                       plan=plan_workers(workers, cpu, quota, in_use), in_use_note=note,
                       read_from=read_from)


@dataclass(frozen=True)
class QuotaRequest:
    """One quota increase request and where it stands."""

    id: str
    quota_code: str
    desired: float
    status: str
    created: datetime | None = None
    case_id: str = ""

    @property
    def open(self) -> bool:
        """Whether AWS is still deciding."""
        return self.status in OPEN_STATUSES


def _request(item: Any) -> QuotaRequest:
    return QuotaRequest(id=str(item.get("Id", "")), quota_code=str(item.get("QuotaCode", "")),
                        desired=float(item.get("DesiredValue", 0.0)),
                        status=str(item.get("Status", "")), created=item.get("Created"),
                        case_id=str(item.get("CaseId", "") or ""))


def request_increase(desired: float, source: Source = None, region: str | None = None, *,
                     spot: bool = False, quota: tuple[str, str] | None = None) -> QuotaRequest:
    """Ask AWS to raise the Fargate vCPU quota to ``desired`` (RequestServiceQuotaIncrease).

    ``quota`` = ``(service code, quota code)`` names another quota (the EC2
    GPU ones); ``spot`` then plays no part.

    Raises:
        CloudError: the request failed; a request already open for this
            quota is ``ResourceAlreadyExistsException``, named in the message.
    """
    clients = QuotaClients.create(source, region)
    service, code = quota or (SERVICE_CODE, quota_code(spot))
    with translate_errors(f"Service Quotas RequestServiceQuotaIncrease ({service} {code} "
                          f"to {desired:g} vCPU)"):
        answer = clients.quotas.request_service_quota_increase(
            ServiceCode=service, QuotaCode=code, DesiredValue=float(desired))
    return _request(answer["RequestedQuota"])


def quota_requests(source: Source = None, region: str | None = None, *,
                   spot: bool = False, quota: tuple[str, str] | None = None,
                   ) -> list[QuotaRequest]:
    """Increase requests for the Fargate vCPU quota (or ``quota``), newest first."""
    clients = QuotaClients.create(source, region)
    service, code = quota or (SERVICE_CODE, quota_code(spot))
    found: list[QuotaRequest] = []
    with translate_errors(f"Service Quotas ListRequestedServiceQuotaChangeHistory "
                          f"({service})"):
        pages = clients.quotas.get_paginator(
            "list_requested_service_quota_change_history").paginate(ServiceCode=service)
        for page in pages:
            found.extend(_request(r) for r in page.get("RequestedQuotas", [])
                         if r.get("QuotaCode") == code)
    epoch = datetime.min
    found.sort(key=lambda r: (r.created.replace(tzinfo=None) if r.created else epoch),
               reverse=True)
    return found
