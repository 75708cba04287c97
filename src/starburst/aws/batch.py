"""The AWS Batch resources of GPU workers: created idempotently, tagged, removable.

Fargate has no GPUs, so a session with ``gpu=`` runs the same worker on
AWS Batch with an EC2 (optionally Spot) compute environment::

    instance profile starburst-ecs-instance   (role: join the ECS cluster, pull, log)
    Batch service-linked role                 (AWSServiceRoleForBatch, AWS's own)
    compute environment starburst-gpu-<type>[-spot]
        MANAGED, EC2 | SPOT, instanceTypes [<type>], minvCpus 0, maxvCpus <quota>
        ec2Configuration imageType ECS_AL2023_NVIDIA (NVIDIA driver + container runtime)
    job queue starburst-gpu-<type>[-spot]     (priority 1, that compute environment)
    job definition starburst-gpu-<type>-<digest>
        container: image, python -m starburst.worker, job role = starburst-task,
        execution role = starburst-execution, awslogs into the starburst log group,
        resourceRequirements GPU / VCPU / MEMORY of one worker

``minvCpus`` is 0, so nothing runs (or bills) while no job is queued: Batch
starts instances for RUNNABLE jobs and ends them when they are idle.
Everything carries ``starburst:managed=true`` (the service-linked role is
AWS's and shared with any other Batch use of the account, so it is created
when missing and never deleted).

The GPU AMI (``ECS_AL2023_NVIDIA``) brings the driver and the NVIDIA container
runtime; the worker image only needs CUDA-enabled wheels (torch's CUDA
builds carry their CUDA runtime libraries), not a CUDA base image.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ..exceptions import CloudError
from . import policies
from .clients import account_id, client, partition
from .errors import error_code, translate_errors
from .propagation import PROPAGATION_WAIT_S
from .provision import LOG_STREAM_PREFIX, MANAGED_TAG, Network, Roles

log = logging.getLogger("starburst")

if TYPE_CHECKING:
    from mypy_boto3_batch.client import BatchClient
    from mypy_boto3_batch.type_defs import JobDefinitionTypeDef

    from ..gpu import GpuInstance

__all__ = [
    "GPU_IMAGE_TYPE",
    "GPU_PREFIX",
    "INSTANCE_ROLE",
    "GpuQueue",
    "GpuResources",
    "default_max_vcpus",
    "delete_compute_environment",
    "delete_gpu_resources",
    "delete_instance_profile",
    "delete_queue",
    "ensure_compute_environment",
    "ensure_gpu_queue",
    "ensure_instance_profile",
    "ensure_job_definition",
    "ensure_job_queue",
    "ensure_service_role",
    "find_compute_environment",
    "find_job_definition",
    "find_job_queue",
    "find_service_role",
    "list_gpu_resources",
    "resource_name",
    "worker_share",
]

#: Names of every starburst Batch resource start with this.
GPU_PREFIX = "starburst-gpu-"
#: Batch job states in which a job may still start or run (and bill).
ACTIVE_JOB_STATES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
#: The EC2 instance role (and instance profile) of the GPU instances.
INSTANCE_ROLE = "starburst-ecs-instance"
#: The AMI type of the compute environment: Amazon Linux 2023 with the NVIDIA
#: driver and container runtime (Batch picks the current AMI of that type).
#: Not ``ECS_AL2_NVIDIA``: Amazon Linux 2 is being retired and new compute
#: environments default to AL2023.
GPU_IMAGE_TYPE = "ECS_AL2023_NVIDIA"
#: What an INVALID compute environment's statusReason says when the instance
#: profile it names had not reached EC2 yet (IAM is eventually consistent).
_PROFILE_NOT_READY = re.compile(r"instance ?profile|iaminstanceprofile|instancerole",
                                re.IGNORECASE)
_BATCH_SERVICE = "batch.amazonaws.com"
_SERVICE_ROLE_PATH = f"/aws-service-role/{_BATCH_SERVICE}/"
#: Memory an instance keeps for the OS and the ECS agent: a job asking for the
#: whole instance memory is never placed (it stays RUNNABLE forever).
_RESERVED_MEMORY_FRACTION = 0.10
#: Compute environment maxvCpus when the GPU quota is unknown: 16 instances.
_DEFAULT_INSTANCES = 16
#: How long to wait for a compute environment or queue to settle (create/disable/delete).
_SETTLE_TIMEOUT = 300.0
_SETTLE_POLL = 2.0
_TRUST_EC2 = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
    "Action": "sts:AssumeRole"}]})


@dataclass(frozen=True, slots=True)
class GpuQueue:
    """The job queue GPU workers are submitted to, and what backs it."""

    name: str
    queue_arn: str
    compute_environment_arn: str
    instance_type: str
    spot: bool
    max_vcpus: int


def resource_name(instance_type: str, *, spot: bool) -> str:
    """``starburst-gpu-g4dn-xlarge`` (``-spot``): the compute environment's and queue's name.

    Batch names allow letters, digits, ``-`` and ``_`` only, so the dot of
    the instance type becomes ``-``.
    """
    return f"{GPU_PREFIX}{instance_type.replace('.', '-')}{'-spot' if spot else ''}"


def worker_share(instance: GpuInstance) -> tuple[int, int]:
    """(vCPUs, MiB) one worker asks for: one GPU's share of the instance.

    One worker per GPU: a worker runs one chunk at a time, so a worker
    holding several GPUs would leave all but one idle unless the user's
    code spreads itself over them. Batch packs ``gpus`` workers onto a
    multi-GPU instance. The memory share leaves room for the OS and the
    ECS agent (rounded down to 256 MiB), or the job would never be placed.
    """
    vcpus = max(1, instance.vcpus // instance.gpus)
    usable = instance.memory_mib * (1.0 - _RESERVED_MEMORY_FRACTION) / instance.gpus
    return vcpus, max(256, int(usable) // 256 * 256)


def _batch(region: str) -> BatchClient:
    return client("batch", region=region)


def _wait(what: str, done: Callable[[], bool]) -> None:
    """Poll ``done`` until it holds; CloudError naming ``what`` after the settle timeout."""
    deadline = time.monotonic() + _SETTLE_TIMEOUT
    while not done():
        if time.monotonic() > deadline:
            raise CloudError(
                f"AWS Batch: {what} did not settle within {_SETTLE_TIMEOUT:.0f} s; look at it "
                "in the Batch console (its statusReason says why) and run the command again")
        time.sleep(_SETTLE_POLL)


def find_service_role(*, region: str) -> str | None:
    """The ARN of Batch's service-linked role, or None when the account has none yet.

    Found by its path (``/aws-service-role/batch.amazonaws.com/``), not by
    name: the name's spelling is AWS's to choose.
    """
    iam = client("iam", region=region)
    with translate_errors("IAM service-linked role of AWS Batch"):
        pages = iam.get_paginator("list_roles").paginate(PathPrefix=_SERVICE_ROLE_PATH)
        for page in pages:
            for role in page.get("Roles", []):
                return role["Arn"]
    return None


def ensure_service_role(*, region: str) -> str:
    """The ARN of Batch's service-linked role, created when missing.

    AWS recommends the service-linked role over a custom service role; it
    belongs to AWS Batch and other Batch users of the account, so starburst
    never deletes it.
    """
    found = find_service_role(region=region)
    if found is not None:
        return found
    iam = client("iam", region=region)
    with translate_errors("IAM service-linked role of AWS Batch"):
        try:
            return iam.create_service_linked_role(AWSServiceName=_BATCH_SERVICE)["Role"]["Arn"]
        except ClientError as exc:
            if error_code(exc) not in ("InvalidInput", "EntityAlreadyExists"):
                raise
    found = find_service_role(region=region)  # created meanwhile
    if found is None:
        raise CloudError("AWS Batch's service-linked role could not be created or found; "
                         "create it with `aws iam create-service-linked-role "
                         "--aws-service-name batch.amazonaws.com` and run again")
    return found


def ensure_instance_profile(*, region: str, repository: str, log_group: str) -> str:
    """The ARN of the GPU instances' instance profile (and its role), created when missing.

    The role's policy is :func:`starburst.aws.policies.instance_policy`: the
    ECS agent's calls on starburst's GPU clusters, pulls from ``repository``
    and writes to ``log_group``; it is rewritten on every call (idempotent),
    so it follows the configuration.
    """
    iam = client("iam", region=region)
    tags: Any = [{"Key": MANAGED_TAG, "Value": "true"}]
    with translate_errors(f"IAM instance profile {INSTANCE_ROLE}"):
        try:
            iam.get_role(RoleName=INSTANCE_ROLE)
        except ClientError as exc:
            if error_code(exc) != "NoSuchEntity":
                raise
            iam.create_role(RoleName=INSTANCE_ROLE, AssumeRolePolicyDocument=_TRUST_EC2,
                            Description="starburst: GPU instances join their Batch cluster, "
                                        "pull worker images and write logs", Tags=tags)
        policy = policies.instance_policy(part=partition(region), region=region,
                                          account=account_id(region), repository=repository,
                                          log_group=log_group)
        iam.put_role_policy(RoleName=INSTANCE_ROLE, PolicyName="starburst-ecs-instance",
                            PolicyDocument=json.dumps(policy))
        try:
            profile = iam.get_instance_profile(InstanceProfileName=INSTANCE_ROLE)[
                "InstanceProfile"]
        except ClientError as exc:
            if error_code(exc) != "NoSuchEntity":
                raise
            profile = iam.create_instance_profile(InstanceProfileName=INSTANCE_ROLE,
                                                  Tags=tags)["InstanceProfile"]
        if not any(r.get("RoleName") == INSTANCE_ROLE for r in profile.get("Roles", [])):
            iam.add_role_to_instance_profile(InstanceProfileName=INSTANCE_ROLE,
                                             RoleName=INSTANCE_ROLE)
    return profile["Arn"]


def default_max_vcpus(instance: GpuInstance, quota_vcpu: float | None) -> int:
    """maxvCpus of a new compute environment: the GPU quota (at least one instance),
    else 16 instances. The session's worker count is capped separately."""
    if quota_vcpu is not None and quota_vcpu > 0:
        return max(instance.vcpus, int(quota_vcpu))
    return instance.vcpus * _DEFAULT_INSTANCES


def find_compute_environment(name: str, *, region: str) -> dict[str, Any] | None:
    """The DescribeComputeEnvironments entry of ``name``, or None when it does not exist."""
    with translate_errors(f"AWS Batch compute environment {name}"):
        return _compute_environment(_batch(region), name)


def find_job_queue(name: str, *, region: str) -> dict[str, Any] | None:
    """The DescribeJobQueues entry of ``name``, or None when it does not exist."""
    with translate_errors(f"AWS Batch job queue {name}"):
        return _job_queue(_batch(region), name)


def _compute_environment(batch: BatchClient, name: str) -> dict[str, Any] | None:
    found = batch.describe_compute_environments(computeEnvironments=[name])
    envs = [e for e in found.get("computeEnvironments", [])
            if e.get("computeEnvironmentName") == name]
    return dict(envs[0]) if envs else None


def ensure_compute_environment(*, instance: GpuInstance, spot: bool, max_vcpus: int,
                               network: Network, region: str, instance_profile: str,
                               service_role: str) -> str:
    """The ARN of the GPU compute environment for ``instance`` (created, enabled, VALID).

    MANAGED, type ``EC2`` (``BEST_FIT_PROGRESSIVE``) or ``SPOT``
    (``SPOT_CAPACITY_OPTIMIZED``), only ``instance``'s type, minvCpus 0 so
    that nothing runs while nothing is queued, the GPU AMI type and the
    workers' subnets and security groups. ``instance_profile`` and
    ``service_role`` are used only when the environment must be created.
    """
    name = resource_name(instance.instance_type, spot=spot)
    batch = _batch(region)
    deadline = time.monotonic() + PROPAGATION_WAIT_S
    while True:
        try:
            return _create_or_enable(batch, name, instance=instance, spot=spot,
                                     max_vcpus=max_vcpus, network=network,
                                     instance_profile=instance_profile,
                                     service_role=service_role)
        except _ProfileNotReady as exc:
            # Created before IAM had propagated the instance profile: an INVALID
            # environment never heals, so delete it and create it again.
            if time.monotonic() > deadline:
                raise CloudError(
                    f"AWS Batch compute environment {name} is INVALID: {exc}; the instance "
                    f"profile {instance_profile} still is not accepted after "
                    f"{PROPAGATION_WAIT_S:.0f} s: check that it exists and holds the role "
                    f"{INSTANCE_ROLE}, then run `starburst teardown` and try again") from None
            log.warning("starburst: compute environment %s was created before its instance "
                        "profile reached EC2 (%s); creating it again", name, exc)
            delete_compute_environment(name, region=region)
            time.sleep(_SETTLE_POLL)


class _ProfileNotReady(Exception):
    """A compute environment went INVALID because its instance profile was not seen yet."""


def _create_or_enable(batch: BatchClient, name: str, *, instance: GpuInstance, spot: bool,
                      max_vcpus: int, network: Network, instance_profile: str,
                      service_role: str) -> str:
    """One try of :func:`ensure_compute_environment`."""
    with translate_errors(f"AWS Batch compute environment {name}"):
        current = _compute_environment(batch, name)
        created = current is None
        if current is None:
            resources: Any = {
                "type": "SPOT" if spot else "EC2",
                "allocationStrategy": "SPOT_CAPACITY_OPTIMIZED" if spot
                else "BEST_FIT_PROGRESSIVE",
                "minvCpus": 0, "desiredvCpus": 0, "maxvCpus": int(max_vcpus),
                "instanceTypes": [instance.instance_type],
                "subnets": list(network.subnets),
                "securityGroupIds": list(network.security_groups),
                "instanceRole": instance_profile,
                "ec2Configuration": [{"imageType": GPU_IMAGE_TYPE}],
                "tags": {MANAGED_TAG: "true", "Name": name},
            }
            batch.create_compute_environment(
                computeEnvironmentName=name, type="MANAGED", state="ENABLED",
                computeResources=resources, serviceRole=service_role,
                tags={MANAGED_TAG: "true"})
        elif current.get("state") != "ENABLED":
            batch.update_compute_environment(computeEnvironment=name, state="ENABLED")

        def valid() -> bool:
            env = _compute_environment(batch, name)
            if env is not None and env.get("status") == "INVALID":
                reason = str(env.get("statusReason", ""))
                if created and _PROFILE_NOT_READY.search(reason):
                    raise _ProfileNotReady(reason)
                raise CloudError(
                    f"AWS Batch compute environment {name} is INVALID: "
                    f"{env.get('statusReason', 'no reason given')}; fix the cause (roles, "
                    "subnets, instance type in this region), delete it with `starburst "
                    "teardown` and try again")
            return env is not None and env.get("status") == "VALID"

        _wait(f"compute environment {name}", valid)
        env = _compute_environment(batch, name)
    assert env is not None
    return str(env["computeEnvironmentArn"])


def _job_queue(batch: BatchClient, name: str) -> dict[str, Any] | None:
    found = batch.describe_job_queues(jobQueues=[name]).get("jobQueues", [])
    queues = [q for q in found if q.get("jobQueueName") == name]
    return dict(queues[0]) if queues else None


def ensure_job_queue(*, name: str, compute_environment: str, region: str) -> str:
    """The ARN of job queue ``name`` on ``compute_environment`` (created or enabled)."""
    batch = _batch(region)
    with translate_errors(f"AWS Batch job queue {name}"):
        current = _job_queue(batch, name)
        if current is None:
            created = batch.create_job_queue(
                jobQueueName=name, state="ENABLED", priority=1,
                computeEnvironmentOrder=[{"order": 1,
                                          "computeEnvironment": compute_environment}],
                tags={MANAGED_TAG: "true"})
            return created["jobQueueArn"]
        if current.get("state") != "ENABLED":
            batch.update_job_queue(jobQueue=name, state="ENABLED")
    return str(current["jobQueueArn"])


def ensure_gpu_queue(*, instance: GpuInstance, spot: bool, network: Network, region: str,
                     repository: str, log_group: str,
                     quota_vcpu: float | None = None) -> GpuQueue:
    """Everything a GPU session submits to: roles, compute environment, job queue."""
    name = resource_name(instance.instance_type, spot=spot)
    max_vcpus = default_max_vcpus(instance, quota_vcpu)
    # The roles matter only to create the compute environment: once it exists
    # (`starburst setup --gpu`), a session needs no IAM permission beyond reads.
    missing = find_compute_environment(name, region=region) is None
    env = ensure_compute_environment(
        instance=instance, spot=spot, max_vcpus=max_vcpus, network=network, region=region,
        instance_profile=ensure_instance_profile(region=region, repository=repository,
                                                 log_group=log_group) if missing else "",
        service_role=ensure_service_role(region=region) if missing else "")
    queue = ensure_job_queue(name=name, compute_environment=env, region=region)
    return GpuQueue(name=name, queue_arn=queue, compute_environment_arn=env,
                    instance_type=instance.instance_type, spot=spot, max_vcpus=max_vcpus)


def _requirements(vcpus: int, memory_mib: int, gpus: int) -> list[dict[str, str]]:
    return [{"type": "GPU", "value": str(gpus)}, {"type": "VCPU", "value": str(vcpus)},
            {"type": "MEMORY", "value": str(memory_mib)}]


def _definition_matches(current: JobDefinitionTypeDef, wanted: dict[str, Any]) -> bool:
    props: Any = current.get("containerProperties", {})
    have = {"image": props.get("image"), "jobRoleArn": props.get("jobRoleArn"),
            "executionRoleArn": props.get("executionRoleArn"),
            "resourceRequirements": sorted(
                (r["type"], r["value"]) for r in props.get("resourceRequirements", [])),
            "command": props.get("command")}
    want = {**wanted, "resourceRequirements": sorted(
        (r["type"], r["value"]) for r in wanted["resourceRequirements"])}
    return current.get("status") == "ACTIVE" and have == want


def _job_definition_spec(*, image: str, instance: GpuInstance, region: str, roles: Roles,
                         log_group: str, gpus: int) -> tuple[str, dict[str, Any]]:
    """The name and the compared fields of the job definition for this image and size."""
    vcpus, memory_mib = worker_share(instance)
    digest = hashlib.sha256("|".join(
        (image, roles.execution, roles.task, log_group, region, str(gpus))).encode()
    ).hexdigest()[:12]
    name = f"{GPU_PREFIX}{instance.instance_type.replace('.', '-')}-{digest}"
    return name, {
        "image": image, "jobRoleArn": roles.task, "executionRoleArn": roles.execution,
        "resourceRequirements": _requirements(vcpus, memory_mib, gpus),
        "command": ["python", "-m", "starburst.worker"]}


def find_job_definition(*, image: str, instance: GpuInstance, region: str, roles: Roles,
                        log_group: str, gpus: int = 1) -> str | None:
    """The ARN of an ACTIVE job definition :func:`ensure_job_definition` would reuse, or None."""
    name, wanted = _job_definition_spec(image=image, instance=instance, region=region,
                                        roles=roles, log_group=log_group, gpus=gpus)
    batch = _batch(region)
    with translate_errors(f"AWS Batch job definition {name}"):
        found = batch.describe_job_definitions(jobDefinitionName=name, status="ACTIVE")
    latest = max(found.get("jobDefinitions", []), key=lambda d: d.get("revision", 0),
                 default=None)
    if latest is not None and _definition_matches(latest, wanted):
        return latest["jobDefinitionArn"]
    return None


def ensure_job_definition(*, image: str, instance: GpuInstance, region: str, roles: Roles,
                          log_group: str, gpus: int = 1) -> str:
    """The ARN of a job definition for ``image`` on ``instance``, reusing a matching one.

    Container type, ``python -m starburst.worker``, the task role as the job
    role, awslogs into ``log_group``, and one worker's share of the
    instance (:func:`worker_share`) with ``gpus`` GPUs. The name encodes the
    instance type plus a digest of the rest, so the latest ACTIVE revision
    is the candidate for reuse.
    """
    found = find_job_definition(image=image, instance=instance, region=region, roles=roles,
                                log_group=log_group, gpus=gpus)
    if found is not None:
        return found
    name, wanted = _job_definition_spec(image=image, instance=instance, region=region,
                                        roles=roles, log_group=log_group, gpus=gpus)
    properties: Any = {
        **wanted,
        "environment": [{"name": "PYTHONUNBUFFERED", "value": "1"}],
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": log_group, "awslogs-region": region,
            "awslogs-stream-prefix": f"{LOG_STREAM_PREFIX}-gpu"}},
    }
    with translate_errors(f"AWS Batch job definition {name}"):
        registered = _batch(region).register_job_definition(
            jobDefinitionName=name, type="container", containerProperties=properties,
            platformCapabilities=["EC2"], propagateTags=True,
            # The scheduler counts attempts and redelivers work; Batch must not
            # also retry a worker (it would start a second one nobody watches).
            retryStrategy={"attempts": 1}, tags={MANAGED_TAG: "true"})
    return registered["jobDefinitionArn"]


@dataclass(frozen=True, slots=True)
class GpuResources:
    """starburst's Batch resources in a region, as teardown finds them."""

    queues: tuple[str, ...]
    compute_environments: tuple[str, ...]
    job_definitions: tuple[str, ...]
    instance_profile: bool


def _managed(batch: BatchClient, arn: str) -> bool:
    tags = batch.list_tags_for_resource(resourceArn=arn).get("tags", {})
    return tags.get(MANAGED_TAG) == "true"


def list_gpu_resources(*, region: str) -> GpuResources:
    """starburst's queues, compute environments and job definitions (name prefix and tag)."""
    batch = _batch(region)
    iam = client("iam", region=region)
    with translate_errors("listing starburst's AWS Batch resources"):
        queues = tuple(q["jobQueueName"] for q in batch.describe_job_queues().get(
            "jobQueues", []) if q["jobQueueName"].startswith(GPU_PREFIX)
            and _managed(batch, q["jobQueueArn"]))
        envs = tuple(e["computeEnvironmentName"] for e in batch.describe_compute_environments(
        ).get("computeEnvironments", []) if e["computeEnvironmentName"].startswith(GPU_PREFIX)
            and _managed(batch, e["computeEnvironmentArn"]))
        defs = tuple(d["jobDefinitionArn"] for d in batch.describe_job_definitions(
            status="ACTIVE").get("jobDefinitions", [])
            if d["jobDefinitionName"].startswith(GPU_PREFIX))
        try:
            iam.get_instance_profile(InstanceProfileName=INSTANCE_ROLE)
            profile = True
        except ClientError as exc:
            if error_code(exc) != "NoSuchEntity":
                raise
            profile = False
    return GpuResources(queues, envs, defs, profile)


def _terminate_jobs(batch: BatchClient, queue: str) -> None:
    """TerminateJob every job of ``queue`` that may still start or run (every page)."""
    paginator = batch.get_paginator("list_jobs")
    for status in ACTIVE_JOB_STATES:
        for page in paginator.paginate(jobQueue=queue, jobStatus=status):  # type: ignore[arg-type]
            for job in page.get("jobSummaryList", []):
                batch.terminate_job(jobId=job["jobId"], reason="starburst teardown")


def delete_queue(name: str, *, region: str) -> None:
    """Stop the queue's jobs, disable it, wait, delete it, wait until it is gone."""
    batch = _batch(region)
    with translate_errors(f"deleting AWS Batch job queue {name}"):
        _terminate_jobs(batch, name)
        _disable_and_delete(
            f"job queue {name}", lambda: _job_queue(batch, name),
            lambda: batch.update_job_queue(jobQueue=name, state="DISABLED"),
            lambda: batch.delete_job_queue(jobQueue=name))


def delete_compute_environment(name: str, *, region: str) -> None:
    """Disable the compute environment, wait, delete it, wait until it is gone."""
    batch = _batch(region)
    with translate_errors(f"deleting AWS Batch compute environment {name}"):
        _disable_and_delete(
            f"compute environment {name}", lambda: _compute_environment(batch, name),
            lambda: batch.update_compute_environment(computeEnvironment=name,
                                                     state="DISABLED"),
            lambda: batch.delete_compute_environment(computeEnvironment=name))


def _disable_and_delete(what: str, describe: Callable[[], Any | None],
                        disable: Callable[[], object], delete: Callable[[], object]) -> None:
    """Batch's order for a queue or compute environment: disable, wait, delete, wait.

    ``describe`` returns the resource's description, or None once it is gone.
    """
    current = describe()
    if current is None:
        return
    if current.get("state") != "DISABLED":
        disable()
    _wait(f"{what} (disabling)", lambda: (describe() or {}).get("status") != "UPDATING")
    delete()
    _wait(f"{what} (deleting)", lambda: describe() is None)


def delete_instance_profile(*, region: str) -> None:
    """Delete the GPU instances' instance profile and role (with its inline policies)."""
    iam = client("iam", region=region)
    with translate_errors(f"deleting IAM instance profile {INSTANCE_ROLE}"):
        try:
            iam.remove_role_from_instance_profile(InstanceProfileName=INSTANCE_ROLE,
                                                  RoleName=INSTANCE_ROLE)
        except ClientError as exc:
            if error_code(exc) != "NoSuchEntity":
                raise
        try:
            iam.delete_instance_profile(InstanceProfileName=INSTANCE_ROLE)
        except ClientError as exc:
            if error_code(exc) != "NoSuchEntity":
                raise
        try:
            names = iam.list_role_policies(RoleName=INSTANCE_ROLE)["PolicyNames"]
        except ClientError as exc:
            if error_code(exc) != "NoSuchEntity":
                raise
            return
        for policy in names:
            iam.delete_role_policy(RoleName=INSTANCE_ROLE, PolicyName=policy)
        iam.delete_role(RoleName=INSTANCE_ROLE)


def delete_gpu_resources(found: GpuResources, *, region: str,
                         change: Callable[[str, Callable[[], object]], None]) -> None:
    """Delete what :func:`list_gpu_resources` found, queues before compute environments.

    ``change(what, apply)`` records each step (and makes it unless a dry run).
    """
    batch = _batch(region)
    for queue in found.queues:
        change(f"delete AWS Batch job queue {queue} (its jobs are terminated)",
               lambda queue=queue: delete_queue(queue, region=region))  # type: ignore[misc]
    for env in found.compute_environments:
        change(f"delete AWS Batch compute environment {env}",
               lambda env=env: delete_compute_environment(env, region=region))  # type: ignore[misc]
    for arn in found.job_definitions:
        change(f"deregister {arn}",
               lambda arn=arn: batch.deregister_job_definition(jobDefinition=arn))  # type: ignore[misc]
    if found.instance_profile:
        change(f"delete IAM instance profile and role {INSTANCE_ROLE}",
               lambda: delete_instance_profile(region=region))

