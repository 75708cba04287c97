"""Idempotent creation of what a Fargate run needs.

Each ``ensure_*`` function looks first and creates only what is missing,
so calling it on every session start costs a few read requests and a
locked-down account (resources made by an administrator, named in the
config) needs no create permissions at all.

Tags (DESIGN.md §2): shared resources (bucket, cluster, log group, roles,
security group, task definitions) carry ``starburst:managed=true`` and are
reused across sessions; per-session resources (queues, tasks) carry
``starburst:session=<id>`` and are removed when the session ends. The
session's queues are the transport's own (:mod:`starburst.transport.aws`
creates and deletes them), so this layer never imports the transport.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ..exceptions import CloudError, ConfigurationError
from . import policies, retention
from .clients import account_id, client, partition
from .config import AwsConfig
from .errors import error_code, translate_errors
from .propagation import ensure_ecs_service_linked_role, retry_while_propagating
from .sizes import cpu_units, validate_size

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import FilterTypeDef, TagSpecificationTypeDef
    from mypy_boto3_ecs.type_defs import NetworkConfigurationTypeDef
    from mypy_boto3_s3.type_defs import TagTypeDef

__all__ = [
    "CONTAINER_NAME", "DEBUG_TASK_ROLE", "LOG_STREAM_PREFIX", "MANAGED_TAG", "SESSION_TAG",
    "SPOT_STOP_TIMEOUT", "STOP_TIMEOUT_ENV", "Network", "Roles", "Shared", "data_policy_name",
    "default_bucket", "ensure_bucket", "ensure_cluster", "ensure_debug_role",
    "ensure_log_group", "ensure_network", "ensure_repository", "ensure_roles",
    "ensure_shared", "ensure_spot_provider", "ensure_task_definition",
]

log = logging.getLogger("starburst")

MANAGED_TAG = "starburst:managed"
SESSION_TAG = "starburst:session"
#: The worker container of every starburst task definition.
CONTAINER_NAME = "worker"
#: awslogs stream names are <prefix>/<container>/<task id>.
LOG_STREAM_PREFIX = "starburst"
EXECUTION_ROLE = "starburst-execution"
TASK_ROLE = "starburst-task"
#: The task role of debug sessions only: ``starburst-task`` plus the ECS Exec
#: channel actions (:func:`~starburst.aws.policies.debug_task_policy`).
DEBUG_TASK_ROLE = "starburst-task-debug"
SECURITY_GROUP = "starburst-workers"
#: The container ``stopTimeout`` of Spot workers: Fargate's maximum, so the
#: whole two-minute interruption notice lies between SIGTERM and SIGKILL.
SPOT_STOP_TIMEOUT = 120
#: Container env naming the seconds between SIGTERM and SIGKILL, so the
#: worker can let a running task finish inside that window (Spot).
STOP_TIMEOUT_ENV = "STARBURST_STOP_TIMEOUT"
#: Fargate's capacity providers; a cluster must list a provider before
#: RunTask may name it.
_PROVIDERS = ("FARGATE", "FARGATE_SPOT")
#: What IAM answers when this identity may not write a role's policy.
_DENIED_CODES = ("AccessDenied", "AccessDeniedException")
#: Whether this process said that `starburst setup` was not run (once is enough).
_SETUP_NOTE_SAID = False
_ARCHES = {"x86_64": "X86_64", "amd64": "X86_64", "arm64": "ARM64", "aarch64": "ARM64"}
_TRUST_ECS_TASKS = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"},
    "Action": "sts:AssumeRole"}]})
# What older starburst wrote as the execution role's inline policy
# "starburst-execution" (AmazonECSTaskExecutionRolePolicy, every repository and
# log group): replaced by one narrower policy per region, and deleted when found.
_LEGACY_EXECUTION_POLICY = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Resource": "*", "Action": [
        "ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability",
        "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage",
        "logs:CreateLogStream", "logs:PutLogEvents"]}]}


def _managed_tags() -> list[TagTypeDef]:
    return [{"Key": MANAGED_TAG, "Value": "true"}]


@dataclass(frozen=True, slots=True)
class Network:
    """awsvpc networking of the workers."""

    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    assign_public_ip: bool

    def awsvpc(self) -> NetworkConfigurationTypeDef:
        """The ``networkConfiguration`` of RunTask."""
        return {"awsvpcConfiguration": {
            "subnets": list(self.subnets), "securityGroups": list(self.security_groups),
            "assignPublicIp": "ENABLED" if self.assign_public_ip else "DISABLED"}}


@dataclass(frozen=True, slots=True)
class Roles:
    """IAM roles of the task definition."""

    execution: str
    task: str


@dataclass(frozen=True, slots=True)
class Shared:
    """The shared resources of a region, resolved and present."""

    region: str
    bucket: str
    prefix: str
    cluster: str
    log_group: str
    roles: Roles
    network: Network


def default_bucket(region: str) -> str:
    """``starburst-<account>-<region>``: unique per account and region, as S3 needs."""
    return f"starburst-{account_id(region)}-{region}"


def ensure_bucket(bucket: str, *, region: str, prefix: str = "", by_setup: bool = False) -> None:
    """Create the bucket if missing: private, tagged, expiring old records, encrypted by
    default (SSE-S3) and TLS only (:func:`~starburst.aws.policies.tls_only_bucket_policy`).

    An existing bucket is left as it is (an administrator's, or setup's). A
    bucket created here, by a session (``by_setup`` False), also logs once
    per process that `starburst setup` was not run: setup adds what a session
    cannot (the writers-only rule, access logs, scoped roles).
    """
    s3 = client("s3", region=region)
    with translate_errors(f"S3 HeadBucket {bucket}"):
        try:
            s3.head_bucket(Bucket=bucket)
            return
        except ClientError as exc:
            if error_code(exc) in ("403", "AccessDenied"):
                raise CloudError(
                    f"the S3 bucket {bucket!r} exists but this identity cannot use it (another "
                    "account's, or missing permissions); set bucket = \"...\" in the starburst "
                    "config to a bucket you own") from exc
            if error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                raise
    with translate_errors(f"S3 CreateBucket {bucket}"):
        try:
            if region == "us-east-1":
                s3.create_bucket(Bucket=bucket)
            else:
                s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={
                    "LocationConstraint": region})  # type: ignore[typeddict-item]
        except ClientError as exc:
            if error_code(exc) == "BucketAlreadyExists":
                raise CloudError(
                    f"the S3 bucket name {bucket!r} is taken by another account; set "
                    "bucket = \"...\" in the starburst config to a unique name") from exc
            if error_code(exc) != "BucketAlreadyOwnedByYou":
                raise
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
            "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True})
        s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": _managed_tags()})
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={
            "Rules": [retention.lifecycle_rule(prefix)]})  # type: ignore[list-item]
        # The same default encryption and TLS-only statement as `starburst setup`.
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
                       "BucketKeyEnabled": False}]})
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(
            policies.tls_only_bucket_policy(bucket, part=partition(region))))
    if not by_setup:
        _say_setup_not_run(bucket)


def _say_setup_not_run(bucket: str) -> None:
    global _SETUP_NOTE_SAID
    if _SETUP_NOTE_SAID:
        return
    _SETUP_NOTE_SAID = True
    log.warning("starburst: created the S3 bucket %s (private, encrypted, TLS only) because "
                "`starburst setup` was not run; run `starburst setup` to lock the account "
                "down fully (only starburst's roles and you may write the run prefix, access "
                "logs, scoped roles; see docs/security.md)", bucket)


def ensure_cluster(name: str, *, region: str) -> str:
    """Return the ARN of the ECS cluster ``name``, creating it if missing."""
    ecs = client("ecs", region=region)
    with translate_errors(f"ECS cluster {name}"):
        for found in ecs.describe_clusters(clusters=[name]).get("clusters", []):
            if found.get("status") == "ACTIVE":
                return found["clusterArn"]
        # A fresh account: RunTask needs ECS's service-linked role.
        ensure_ecs_service_linked_role(region=region)
        created = ecs.create_cluster(clusterName=name,
                                     tags=[{"key": MANAGED_TAG, "value": "true"}])
    return created["cluster"]["clusterArn"]


def ensure_spot_provider(name: str, *, region: str) -> None:
    """Give the ECS cluster ``name`` the FARGATE and FARGATE_SPOT capacity providers.

    RunTask with a ``FARGATE_SPOT`` capacity provider strategy fails on a
    cluster that does not list that provider (``starburst setup`` adds both;
    a cluster made by :func:`ensure_cluster` or by hand may lack them). The
    cluster's other providers and its default strategy are kept.
    """
    ecs = client("ecs", region=region)
    with translate_errors(f"ECS cluster {name}: adding the FARGATE_SPOT capacity provider"):
        found = [c for c in ecs.describe_clusters(clusters=[name]).get("clusters", [])
                 if c.get("status") == "ACTIVE"]
        if not found:
            raise ConfigurationError(
                f"ECS cluster {name} does not exist in {region}: run `starburst setup "
                f"--region {region}` or name an existing cluster with cluster = \"...\"")
        have = list(found[0].get("capacityProviders") or [])
        if all(p in have for p in _PROVIDERS):
            return
        strategy: Any = found[0].get("defaultCapacityProviderStrategy") or [
            {"capacityProvider": "FARGATE", "weight": 1}]
        ecs.put_cluster_capacity_providers(
            cluster=name, capacityProviders=sorted({*have, *_PROVIDERS}),
            defaultCapacityProviderStrategy=strategy)


def ensure_repository(name: str, *, region: str) -> str:
    """Return the URI of the ECR repository ``name``, creating it (tagged) if missing."""
    ecr = client("ecr", region=region)
    with translate_errors(f"ECR repository {name}"):
        try:
            found = ecr.describe_repositories(repositoryNames=[name])["repositories"]
        except ClientError as exc:
            if error_code(exc) != "RepositoryNotFoundException":
                raise
        else:
            if found:
                return found[0]["repositoryUri"]
        try:
            created = ecr.create_repository(repositoryName=name,
                                            tags=[{"Key": MANAGED_TAG, "Value": "true"}])
        except ClientError as exc:
            if error_code(exc) != "RepositoryAlreadyExistsException":
                raise
            return ecr.describe_repositories(
                repositoryNames=[name])["repositories"][0]["repositoryUri"]
    return created["repository"]["repositoryUri"]


def ensure_log_group(name: str, *, region: str) -> None:
    """Create the CloudWatch log group if missing, with a retention period."""
    logs = client("logs", region=region)
    with translate_errors(f"CloudWatch log group {name}"):
        pages = logs.get_paginator("describe_log_groups").paginate(logGroupNamePrefix=name)
        if any(g.get("logGroupName") == name for page in pages for g in page["logGroups"]):
            return
        try:
            logs.create_log_group(logGroupName=name, tags={MANAGED_TAG: "true"})
        except ClientError as exc:
            if error_code(exc) != "ResourceAlreadyExistsException":
                raise
        logs.put_retention_policy(logGroupName=name, retentionInDays=retention.LOG_RETENTION_DAYS)


def _ensure_role(name: str, description: str, policy_name: str, policy: str, *,
                 region: str, keep_if_denied: bool = False) -> str:
    """Return the ARN of role ``name``, creating it if missing, and write its inline policy.

    ``keep_if_denied``: an existing role whose policy this identity may not
    write (one limited to running sessions, after `starburst setup` wrote
    it) is used as it is.
    """
    iam = client("iam", region=region)
    with translate_errors(f"IAM role {name}"):
        existed = True
        try:
            arn = iam.get_role(RoleName=name)["Role"]["Arn"]
        except ClientError as exc:
            if error_code(exc) != "NoSuchEntity":
                raise
            existed = False
            arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=_TRUST_ECS_TASKS,
                                  Description=description, Tags=_managed_tags())["Role"]["Arn"]
        # Idempotent; it also updates a policy an older starburst wrote.
        try:
            iam.put_role_policy(RoleName=name, PolicyName=policy_name, PolicyDocument=policy)
        except ClientError as exc:
            if not (keep_if_denied and existed and error_code(exc) in _DENIED_CODES):
                raise
    return arn


def data_policy_name(bucket: str) -> str:
    """The task roles' inline policy for ``bucket``: one per bucket, since IAM is global
    and buckets are per region."""
    return f"starburst-data-{bucket}"[:128]


def ensure_roles(*, region: str, bucket: str, prefix: str, execution_role_arn: str | None = None,
                 task_role_arn: str | None = None, log_group: str = "/starburst") -> Roles:
    """Return the task definition's roles, creating starburst's own when none are configured.

    The task role may touch only the bucket's prefix and starburst queues of
    ``region``; the execution role only pulls images of the account's ECR in
    ``region`` and writes ``log_group`` there
    (:func:`~starburst.aws.policies.default_execution_policy`, one inline
    policy per region since IAM is global).
    """
    execution = execution_role_arn or _ensure_execution_role(region=region,
                                                             log_group=log_group)
    if task_role_arn:
        return Roles(execution, task_role_arn)
    policy = json.dumps(policies.task_policy(part=partition(region), account=account_id(region),
                                             bucket=bucket, prefix=prefix, region=region))
    task = _ensure_role(TASK_ROLE, "starburst: what worker code may touch",
                        data_policy_name(bucket), policy, region=region)
    return Roles(execution, task)


def _ensure_execution_role(*, region: str, log_group: str) -> str:
    policy = policies.default_execution_policy(part=partition(region), region=region,
                                               account=account_id(region), log_group=log_group)
    arn = _ensure_role(EXECUTION_ROLE, "starburst: lets ECS pull worker images and write "
                       "their logs", f"starburst-execution-{region}", json.dumps(policy),
                       region=region)
    iam = client("iam", region=region)
    with translate_errors(f"IAM role {EXECUTION_ROLE}: removing its old broad policy"):
        try:
            old = iam.get_role_policy(RoleName=EXECUTION_ROLE, PolicyName="starburst-execution")
        except ClientError as exc:
            if error_code(exc) != "NoSuchEntity":
                raise
            return arn
        doc: Any = old["PolicyDocument"]
        if (json.loads(doc) if isinstance(doc, str) else doc) == _LEGACY_EXECUTION_POLICY:
            iam.delete_role_policy(RoleName=EXECUTION_ROLE, PolicyName="starburst-execution")
    return arn


def ensure_debug_role(roles: Roles, *, region: str, bucket: str,
                      prefix: str) -> tuple[Roles, str]:
    """The roles of a debug session (``debug=True``): its workers run as
    :data:`DEBUG_TASK_ROLE`, ``starburst-task`` plus the four ECS Exec channel
    actions, so ``aws ecs execute-command`` reaches a kept worker while every
    other session's workers keep the narrow role.

    The role is created when missing (``starburst setup`` creates it too, for
    identities that may not create roles) and its policy is rewritten when
    this identity may. A task role of your own (``task_role_arn`` naming
    another role) is kept: starburst cannot know what to derive from it, and
    the note returned says what ECS Exec needs of it ("" otherwise).

    Raises:
        ConfigurationError: the debug role is missing and cannot be created here.
    """
    if roles.task.rsplit("/", 1)[-1] != TASK_ROLE:
        return roles, (
            f"debug=True: the workers run as your task role {roles.task} (task_role_arn); "
            f"ECS Exec reaches them only if it allows {', '.join(policies.ECS_EXEC_ACTIONS)} "
            f"on Resource \"*\" (starburst's own roles put these in {DEBUG_TASK_ROLE} only)")
    policy = json.dumps(policies.debug_task_policy(
        part=partition(region), account=account_id(region), bucket=bucket, prefix=prefix,
        region=region))
    try:
        task = _ensure_role(DEBUG_TASK_ROLE, "starburst: worker role of debug sessions "
                            "(starburst-task plus ECS Exec)", data_policy_name(bucket), policy,
                            region=region, keep_if_denied=True)
    except CloudError as exc:
        raise ConfigurationError(
            f"debug=True runs workers as the IAM role {DEBUG_TASK_ROLE} (starburst-task plus "
            f"the ECS Exec channel actions), which could not be made ready ({exc}): run "
            "`starburst setup` (it creates the role), or ask an administrator to, or pass "
            "debug=False") from exc
    return Roles(roles.execution, task), ""


def ensure_network(*, region: str, subnets: tuple[str, ...] = (),
                   security_groups: tuple[str, ...] = (),
                   assign_public_ip: bool = True) -> Network:
    """Return the workers' networking: configured, or the default VPC's subnets plus a
    ``starburst-workers`` security group with no ingress (workers only call out)."""
    ec2 = client("ec2", region=region)
    with translate_errors("EC2 networking for the workers"):
        if subnets:
            found = ec2.describe_subnets(SubnetIds=list(subnets))["Subnets"]
            vpc = found[0]["VpcId"]
        else:
            vpcs = ec2.describe_vpcs(
                Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
            if not vpcs:
                raise ConfigurationError(
                    f"region {region} has no default VPC: set subnets = [\"subnet-...\"] and "
                    "security_groups = [\"sg-...\"] in the starburst config (subnets with a "
                    "route to the internet or to VPC endpoints for ECR, S3, SQS and Logs)")
            vpc = vpcs[0]["VpcId"]
            in_vpc: list[FilterTypeDef] = [{"Name": "vpc-id", "Values": [vpc]}]
            found = ec2.describe_subnets(
                Filters=[*in_vpc, {"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
            found = found or ec2.describe_subnets(Filters=in_vpc)["Subnets"]
            subnets = tuple(sorted(s["SubnetId"] for s in found))
        if not security_groups:
            security_groups = (_ensure_security_group(vpc, region=region),)
    return Network(subnets, security_groups, assign_public_ip)


def _ensure_security_group(vpc: str, *, region: str) -> str:
    ec2 = client("ec2", region=region)
    groups = ec2.describe_security_groups(Filters=[
        {"Name": "vpc-id", "Values": [vpc]},
        {"Name": "group-name", "Values": [SECURITY_GROUP]}])["SecurityGroups"]
    if groups:
        return groups[0]["GroupId"]
    tagging: TagSpecificationTypeDef = {"ResourceType": "security-group",
                                        "Tags": [{"Key": MANAGED_TAG, "Value": "true"}]}
    created = ec2.create_security_group(
        GroupName=SECURITY_GROUP, VpcId=vpc,
        Description="starburst workers: no ingress (egress: all, unless setup --private)",
        TagSpecifications=[tagging])
    return created["GroupId"]


def _arch(arch: str) -> str:
    try:
        return _ARCHES[arch.lower()]
    except KeyError:
        raise ConfigurationError(
            f"arch={arch!r} is not a Fargate architecture; use 'x86_64' or 'arm64'") from None


def ensure_task_definition(*, image: str, cpu: float, memory_mib: int, arch: str = "x86_64",
                           region: str, roles: Roles, log_group: str,
                           stop_timeout: int | None = None) -> str:
    """Return the ARN of a task definition for this image and size, reusing a matching one.

    The family name encodes size and architecture plus a digest of the
    rest, so the latest ACTIVE revision of the family is the candidate;
    it is reused when image, size, roles, logging and stop timeout all match.

    ``stop_timeout`` (seconds, at most 120 on Fargate) sets the container's
    ``stopTimeout`` and tells the worker through ``STARBURST_STOP_TIMEOUT``;
    Spot sessions pass :data:`SPOT_STOP_TIMEOUT`. None keeps ECS's default
    (30 s), and the family name of such a definition is the same as before
    stop timeouts existed, so existing definitions are reused.
    """
    validate_size(cpu, memory_mib)
    platform = _arch(arch)
    units = cpu_units(cpu)
    if stop_timeout is not None and not 2 <= stop_timeout <= SPOT_STOP_TIMEOUT:
        raise ConfigurationError(
            f"stop_timeout={stop_timeout!r}: Fargate accepts 2 to {SPOT_STOP_TIMEOUT} seconds")
    parts = [image, roles.execution, roles.task, log_group, region]
    if stop_timeout is not None:
        parts.append(f"stop={stop_timeout}")
    digest = hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]
    family = f"starburst-{platform.lower()}-{units}cpu-{memory_mib}mb-{digest}"
    environment = [{"name": "PYTHONUNBUFFERED", "value": "1"}]
    if stop_timeout is not None:
        environment.append({"name": STOP_TIMEOUT_ENV, "value": str(stop_timeout)})
    container: dict[str, Any] = {
        "name": CONTAINER_NAME, "image": image, "essential": True,
        "command": ["python", "-m", "starburst.worker"],
        # Fargate caps memory at the task level; the reservation (equal to
        # it) is also what moto needs to place the task.
        "memoryReservation": memory_mib,
        "environment": environment,
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": log_group, "awslogs-region": region,
            "awslogs-stream-prefix": LOG_STREAM_PREFIX}},
    }
    if stop_timeout is not None:
        container["stopTimeout"] = stop_timeout
    wanted = {"cpu": str(units), "memory": str(memory_mib), "image": image,
              "executionRoleArn": roles.execution, "taskRoleArn": roles.task,
              "arch": platform, "stopTimeout": stop_timeout}
    ecs = client("ecs", region=region)
    with translate_errors(f"ECS task definition {family}"):
        try:
            current = ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
        except ClientError as exc:
            if error_code(exc) not in ("ClientException", "InvalidParameterException"):
                raise
        else:
            have = {"cpu": current.get("cpu"), "memory": current.get("memory"),
                    "image": current["containerDefinitions"][0].get("image"),
                    "executionRoleArn": current.get("executionRoleArn"),
                    "taskRoleArn": current.get("taskRoleArn"),
                    "arch": current.get("runtimePlatform", {}).get("cpuArchitecture"),
                    "stopTimeout": current["containerDefinitions"][0].get("stopTimeout")}
            if current.get("status") == "ACTIVE" and have == wanted:
                return current["taskDefinitionArn"]
        registered = retry_while_propagating(lambda: ecs.register_task_definition(
            family=family, taskRoleArn=roles.task, executionRoleArn=roles.execution,
            networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu=str(units),
            memory=str(memory_mib),
            runtimePlatform={"cpuArchitecture": platform,  # type: ignore[typeddict-item]
                             "operatingSystemFamily": "LINUX"},
            containerDefinitions=[container],  # type: ignore[list-item]
            tags=[{"key": MANAGED_TAG, "value": "true"}]),
            what=f"registering task definition {family}", region=region)
    return registered["taskDefinition"]["taskDefinitionArn"]


def ensure_shared(config: AwsConfig) -> Shared:
    """Resolve and ensure every shared resource the configuration names."""
    region = config.resolved_region()
    bucket = config.bucket or default_bucket(region)
    ensure_bucket(bucket, region=region, prefix=config.prefix)
    ensure_cluster(config.cluster, region=region)
    ensure_log_group(config.log_group, region=region)
    roles = ensure_roles(region=region, bucket=bucket, prefix=config.prefix,
                         execution_role_arn=config.execution_role_arn,
                         task_role_arn=config.task_role_arn, log_group=config.log_group)
    network = ensure_network(region=region, subnets=config.subnets,
                             security_groups=config.security_groups,
                             assign_public_ip=config.assign_public_ip)
    return Shared(region=region, bucket=bucket, prefix=config.prefix, cluster=config.cluster,
                  log_group=config.log_group, roles=roles, network=network)
