"""`starburst setup` / `starburst teardown`: the one-time, locked-down provisioning.

:func:`run_setup` converges every shared resource to the hardened state
(see docs/security.md) and returns the changes it made; a second run
returns none. It builds on :mod:`starburst.aws.provision` (which creates
the minimum on session start) and then tightens: bucket encryption, TLS
and writer-only policy, lifecycle, access logging; ECR scan-on-push and
lifecycle; Fargate capacity providers; scoped role policies; log
retention; a no-ingress security group. It writes the config file so
sessions use exactly these resources. With ``gpu=`` (``setup --gpu``) it
also creates the AWS Batch resources of GPU workers
(:mod:`starburst.aws.batch`): the instance profile, the compute environment
(minvCpus 0: nothing runs or bills while no job is queued), the job queue
and, when the config names an image, the job definition.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ..aws import batch, policies, provision, retention, session_role
from ..aws.clients import client, partition
from ..aws.config import FIELDS, config_path, load_config
from ..aws.errors import error_code, translate_errors
from ..aws.retention import LOG_RETENTION_DAYS, RUN_DATA_DAYS
from ..exceptions import CloudError, ConfigurationError
from .private_network import setup_endpoints

if TYPE_CHECKING:
    from ..gpu import GpuInstance

__all__ = ["LOG_RETENTION_DAYS", "RUN_DATA_DAYS", "SetupPlan", "new_plan", "run_setup",
           "write_config"]

_ECR_LIFECYCLE = json.dumps({"rules": [{
    "rulePriority": 1, "description": "expire untagged images after 14 days",
    "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                  "countUnit": "days", "countNumber": 14},
    "action": {"type": "expire"}}]}, sort_keys=True)
_TRUST = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"},
    "Action": "sts:AssumeRole"}]})
_MANAGED = [{"Key": provision.MANAGED_TAG, "Value": "true"}]


@dataclass
class SetupPlan:
    """What setup resolved and changed (or would change, with ``dry_run``)."""

    region: str
    account: str
    caller: str
    bucket: str
    log_bucket: str
    prefix: str
    cluster: str
    log_group: str
    repository: str
    kms_key: str | None = None
    dry_run: bool = False
    private: bool = False
    gpu: GpuInstance | None = None
    spot: bool = False
    changes: list[str] = field(default_factory=list)
    resources: dict[str, Any] = field(default_factory=dict)

    @property
    def part(self) -> str:
        return partition(self.region)

    def change(self, what: str, apply: Callable[[], object]) -> None:
        """Record a change; make it unless this is a dry run."""
        self.changes.append(what)
        if not self.dry_run:
            apply()


def _missing(exc: ClientError) -> bool:
    code = error_code(exc)
    return code.startswith("NoSuch") or code in (
        "404", "NotFound", "ServerSideEncryptionConfigurationNotFoundError",
        "LifecyclePolicyNotFoundException", "RepositoryNotFoundException",
        "ResourceNotFoundException")


def _get(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except ClientError as exc:
        if _missing(exc):
            return None
        raise


def _bucket_exists(bucket: str, region: str) -> bool:
    return _get(lambda: client("s3", region=region).head_bucket(Bucket=bucket)) is not None


def _harden_bucket(plan: SetupPlan, bucket: str, *, rules: list[dict[str, Any]],
                   policy: dict[str, Any], kms: str | None) -> None:
    s3 = client("s3", region=plan.region)
    if not _bucket_exists(bucket, plan.region):
        plan.change(f"create S3 bucket {bucket}",
                    lambda: provision.ensure_bucket(bucket, region=plan.region,
                                                         by_setup=True))
        if plan.dry_run:
            plan.changes.append(f"harden S3 bucket {bucket}")
            return
    block = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
             "RestrictPublicBuckets": True}
    have = _get(lambda: s3.get_public_access_block(Bucket=bucket))
    if not have or have["PublicAccessBlockConfiguration"] != block:
        plan.change(f"block public access to {bucket}", lambda: s3.put_public_access_block(
            Bucket=bucket, PublicAccessBlockConfiguration=block))  # type: ignore[arg-type]
    rule: dict[str, Any] = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": kms} if kms else \
        {"SSEAlgorithm": "AES256"}
    encryption: Any = {"Rules": [{"ApplyServerSideEncryptionByDefault": rule,
                                  "BucketKeyEnabled": bool(kms)}]}
    enc = _get(lambda: s3.get_bucket_encryption(Bucket=bucket))
    current = (enc or {}).get("ServerSideEncryptionConfiguration", {}).get("Rules", [{}])
    if current[0].get("ApplyServerSideEncryptionByDefault") != rule:
        plan.change(f"encrypt {bucket} by default ({'KMS ' + kms if kms else 'SSE-S3'})",
                    lambda: s3.put_bucket_encryption(
                        Bucket=bucket, ServerSideEncryptionConfiguration=encryption))
    tags = _get(lambda: s3.get_bucket_tagging(Bucket=bucket))
    if {"Key": provision.MANAGED_TAG, "Value": "true"} not in (tags or {}).get("TagSet", []):
        plan.change(f"tag {bucket}", lambda: s3.put_bucket_tagging(
            Bucket=bucket, Tagging={"TagSet": _MANAGED}))  # type: ignore[typeddict-item]
    life = _get(lambda: s3.get_bucket_lifecycle_configuration(Bucket=bucket))
    if (life or {}).get("Rules") != rules:
        plan.change(f"set lifecycle rules of {bucket}",
                    lambda: s3.put_bucket_lifecycle_configuration(
                        Bucket=bucket,
                        LifecycleConfiguration={"Rules": rules}))  # type: ignore[typeddict-item]
    got = _get(lambda: s3.get_bucket_policy(Bucket=bucket))
    if got is None or json.loads(got["Policy"]) != policy:
        plan.change(f"set the bucket policy of {bucket} (TLS only, restricted writers)",
                    lambda: s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy)))


def _setup_buckets(plan: SetupPlan, writers: list[str]) -> None:
    part, prefix = plan.part, plan.prefix.strip("/")
    _harden_bucket(plan, plan.log_bucket, kms=None, policy=policies.log_bucket_policy(
        plan.log_bucket, plan.bucket, part=part, account=plan.account), rules=[{
            "ID": "starburst-access-logs", "Status": "Enabled", "Filter": {"Prefix": ""},
            "Expiration": {"Days": 90},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}])
    _harden_bucket(plan, plan.bucket, kms=plan.kms_key, policy=policies.bucket_policy(
        plan.bucket, prefix, part=part, writers=writers), rules=[retention.lifecycle_rule(prefix)])
    s3 = client("s3", region=plan.region)
    want = {"TargetBucket": plan.log_bucket, "TargetPrefix": f"access/{plan.bucket}/"}
    have = None if plan.dry_run and not _bucket_exists(plan.bucket, plan.region) else \
        s3.get_bucket_logging(Bucket=plan.bucket).get("LoggingEnabled")
    if not have or {k: have.get(k) for k in want} != want:
        plan.change(f"log access to {plan.bucket} into {plan.log_bucket}",
                    lambda: s3.put_bucket_logging(Bucket=plan.bucket, BucketLoggingStatus={
                        "LoggingEnabled": want}))  # type: ignore[typeddict-item]


def _setup_repository(plan: SetupPlan) -> None:
    ecr = client("ecr", region=plan.region)
    found = _get(lambda: ecr.describe_repositories(repositoryNames=[plan.repository]))
    if not found:
        plan.change(f"create ECR repository {plan.repository} (scan on push)",
                    lambda: ecr.create_repository(
                        repositoryName=plan.repository, tags=_MANAGED,  # type: ignore[arg-type]
                        imageScanningConfiguration={"scanOnPush": True}))
    elif not found["repositories"][0].get("imageScanningConfiguration", {}).get("scanOnPush"):
        plan.change(f"scan images of {plan.repository} on push",
                    lambda: ecr.put_image_scanning_configuration(
                        repositoryName=plan.repository,
                        imageScanningConfiguration={"scanOnPush": True}))
    life = None if not found else _get(
        lambda: ecr.get_lifecycle_policy(repositoryName=plan.repository))
    if life is None or json.loads(life["lifecyclePolicyText"]) != json.loads(_ECR_LIFECYCLE):
        plan.change(f"expire old untagged images of {plan.repository}",
                    lambda: ecr.put_lifecycle_policy(repositoryName=plan.repository,
                                                     lifecyclePolicyText=_ECR_LIFECYCLE))


def _setup_cluster_and_logs(plan: SetupPlan) -> None:
    ecs = client("ecs", region=plan.region)
    found = [c for c in ecs.describe_clusters(clusters=[plan.cluster]).get("clusters", [])
             if c.get("status") == "ACTIVE"]
    if not found:
        plan.change(f"create ECS cluster {plan.cluster}",
                    lambda: provision.ensure_cluster(plan.cluster, region=plan.region))
    providers = ["FARGATE", "FARGATE_SPOT"]
    if not found or sorted(found[0].get("capacityProviders", [])) != providers:
        plan.change(f"give {plan.cluster} the FARGATE and FARGATE_SPOT capacity providers",
                    lambda: ecs.put_cluster_capacity_providers(
                        cluster=plan.cluster, capacityProviders=providers,
                        defaultCapacityProviderStrategy=[
                            {"capacityProvider": "FARGATE", "weight": 1}]))
    logs = client("logs", region=plan.region)
    groups = [g for g in logs.describe_log_groups(logGroupNamePrefix=plan.log_group)["logGroups"]
              if g.get("logGroupName") == plan.log_group]
    if not groups:
        plan.change(f"create log group {plan.log_group}",
                    lambda: provision.ensure_log_group(plan.log_group, region=plan.region))
    if not groups or groups[0].get("retentionInDays") != LOG_RETENTION_DAYS:
        plan.change(f"keep {plan.log_group} for {LOG_RETENTION_DAYS} days",
                    lambda: logs.put_retention_policy(logGroupName=plan.log_group,
                                                      retentionInDays=LOG_RETENTION_DAYS))


def _setup_role(plan: SetupPlan, name: str, policy_name: str, policy: dict[str, Any]) -> str:
    iam = client("iam", region=plan.region)
    role = _get(lambda: iam.get_role(RoleName=name))
    arn = role["Role"]["Arn"] if role else \
        f"arn:{plan.part}:iam::{plan.account}:role/{name}"
    if not role:
        plan.change(f"create IAM role {name}", lambda: iam.create_role(
            RoleName=name, AssumeRolePolicyDocument=_TRUST, Tags=_MANAGED,  # type: ignore[arg-type]
            Description="starburst (made by `starburst setup`)"))
    have = None if not role else _get(
        lambda: iam.get_role_policy(RoleName=name, PolicyName=policy_name))
    doc = have["PolicyDocument"] if have else None
    if isinstance(doc, str):
        doc = json.loads(doc)
    if doc != policy:
        plan.change(f"set the scoped policy {policy_name} of {name}",
                    lambda: iam.put_role_policy(RoleName=name, PolicyName=policy_name,
                                                PolicyDocument=json.dumps(policy)))
    if role:
        for old in iam.list_role_policies(RoleName=name)["PolicyNames"]:
            if old != policy_name:
                plan.change(f"remove the extra inline policy {old} of {name}",
                            lambda old=old: iam.delete_role_policy(RoleName=name,  # type: ignore[misc]
                                                                   PolicyName=old))
        for att in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
            plan.change(f"detach {att['PolicyName']} from {name}",
                        lambda att=att: iam.detach_role_policy(  # type: ignore[misc]
                            RoleName=name, PolicyArn=att["PolicyArn"]))
    return arn


def _setup_session_boundary(plan: SetupPlan) -> None:
    """The permissions boundary every session's own task role is created with
    (:mod:`starburst.aws.session_role`): what the user policy requires of them."""
    kwargs: dict[str, Any] = {"region": plan.region, "bucket": plan.bucket,
                              "prefix": plan.prefix, "kms_key": plan.kms_key}
    state = session_role.boundary_state(**kwargs)
    if state != "current":
        verb = "create" if state == "missing" else "update"
        plan.change(f"{verb} the permissions boundary {policies.session_boundary_name(plan.bucket)}"
                    " of the session roles (no session role may do more than a worker)",
                    lambda: session_role.ensure_session_boundary(**kwargs, update=True))


def _setup_network(plan: SetupPlan, subnets: tuple[str, ...],
                   groups: tuple[str, ...]) -> provision.Network | None:
    ec2 = client("ec2", region=plan.region)
    if not groups:
        existing = ec2.describe_security_groups(Filters=[
            {"Name": "group-name", "Values": [provision.SECURITY_GROUP]}])["SecurityGroups"]
        if not existing:
            plan.changes.append(f"create security group {provision.SECURITY_GROUP} (no ingress)")
            if plan.dry_run:
                return None
        for sg in existing:
            if sg.get("IpPermissions"):
                plan.change(f"remove the ingress rules of {sg['GroupId']}",
                            lambda sg=sg: ec2.revoke_security_group_ingress(  # type: ignore[misc]
                                GroupId=sg["GroupId"], IpPermissions=sg["IpPermissions"]))
    return provision.ensure_network(region=plan.region, subnets=subnets,
                                    security_groups=groups)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(json.dumps(v) for v in value) + "]"
    return json.dumps(value)


def write_config(values: dict[str, Any], path: Path | None = None, *,
                 remove: bool = False) -> bool:
    """Merge ``values`` into the config file (or remove those keys); return whether it
    changed."""
    import tomllib
    file = path or config_path()
    text = file.read_text(encoding="utf-8") if file.exists() else ""
    data: dict[str, Any] = tomllib.loads(text) if text else {}
    merged = {k: v for k, v in data.items() if k not in values} if remove else \
        {**data, **values}
    new = "".join(f"{k} = {_toml(v)}\n" for k, v in merged.items())
    if new == text or (remove and merged == data):
        return False
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(new, encoding="utf-8")
    return True


def _gpu_quota(instance: GpuInstance, region: str, spot: bool) -> float | None:
    """The GPU vCPU quota (``STARBURST_GPU_VCPU_QUOTA`` first); None when unreadable."""
    from ..aws.gpu_quota import quota_override, read_gpu_quota

    injected = quota_override()
    if injected is not None:
        return injected
    try:
        return read_gpu_quota(instance.family, region=region, spot=spot)
    except CloudError:
        return None


def _setup_gpu(plan: SetupPlan, network: provision.Network | None, roles: provision.Roles,
               image: str | None) -> None:
    """The Batch resources of GPU workers (``setup --gpu``); see :mod:`starburst.aws.batch`."""
    instance = plan.gpu
    assert instance is not None
    region = plan.region
    iam = client("iam", region=region)
    name = batch.resource_name(instance.instance_type, spot=plan.spot)
    def profile() -> None:
        batch.ensure_instance_profile(region=region, repository=plan.repository,
                                      log_group=plan.log_group)

    if _get(lambda: iam.get_instance_profile(InstanceProfileName=batch.INSTANCE_ROLE)) is None:
        plan.change(f"create IAM role and instance profile {batch.INSTANCE_ROLE} (GPU "
                    "instances join their Batch cluster, pull images, write logs)", profile)
    else:
        have = _get(lambda: iam.get_role_policy(RoleName=batch.INSTANCE_ROLE,
                                                PolicyName="starburst-ecs-instance"))
        doc = have["PolicyDocument"] if have else None
        if isinstance(doc, str):
            doc = json.loads(doc)
        if doc != policies.instance_policy(part=plan.part, region=region,
                                           account=plan.account, repository=plan.repository,
                                           log_group=plan.log_group):
            plan.change(f"set the scoped policy of {batch.INSTANCE_ROLE}", profile)
    if batch.find_service_role(region=region) is None:
        plan.change("create the AWS Batch service-linked role AWSServiceRoleForBatch",
                    lambda: batch.ensure_service_role(region=region))
    quota = _gpu_quota(instance, region, plan.spot)
    max_vcpus = batch.default_max_vcpus(instance, quota)
    env = batch.find_compute_environment(name, region=region)
    kind = "Spot" if plan.spot else "On-Demand"
    arn: list[str] = [str(env["computeEnvironmentArn"])] if env else []

    def create_env() -> None:
        assert network is not None
        arn.append(batch.ensure_compute_environment(
            instance=instance, spot=plan.spot, max_vcpus=max_vcpus, network=network,
            region=region, instance_profile=batch.ensure_instance_profile(
                region=region, repository=plan.repository, log_group=plan.log_group),
            service_role=batch.ensure_service_role(region=region)))

    if env is None:
        plan.change(f"create AWS Batch compute environment {name} ({instance.instance_type}, "
                    f"{kind}, GPU AMI {batch.GPU_IMAGE_TYPE}, 0 to {max_vcpus} vCPU: min 0, "
                    "so no instance runs or bills while no job is queued)", create_env)
    elif env.get("state") != "ENABLED":
        plan.change(f"enable AWS Batch compute environment {name}", create_env)
    queue = batch.find_job_queue(name, region=region)
    if queue is None or queue.get("state") != "ENABLED":
        plan.change(f"{'create' if queue is None else 'enable'} AWS Batch job queue {name}",
                    lambda: batch.ensure_job_queue(name=name, compute_environment=arn[-1],
                                                   region=region))
    plan.resources["gpu_job_queue"] = name
    if not image:
        return  # sessions register the job definition of their image on first use
    found = None if plan.dry_run and env is None else batch.find_job_definition(
        image=image, instance=instance, region=region, roles=roles, log_group=plan.log_group)
    if found is None:
        plan.change(f"register an AWS Batch job definition for {image} on "
                    f"{instance.instance_type} (one {instance.gpu} per worker)",
                    lambda: batch.ensure_job_definition(
                        image=image, instance=instance, region=region, roles=roles,
                        log_group=plan.log_group))


def new_plan(*, region: str, kms_key: str | None = None, dry_run: bool = False,
             private: bool = False, gpu: str | None = None, instance_type: str | None = None,
             spot: bool = False) -> SetupPlan:
    """Resolve names from the config and the identity in use.

    ``gpu`` (with ``instance_type`` and ``spot``) adds the AWS Batch
    resources of GPU workers; an unknown GPU or type is a ConfigurationError.
    """
    instance = None
    if gpu is not None:
        from ..gpu import resolve_gpu

        instance = resolve_gpu(gpu, instance_type)
    elif instance_type is not None or spot:
        raise ConfigurationError("--instance-type and --spot choose the GPU workers' "
                                 "instances: pass --gpu too (e.g. --gpu nvidia-t4)")
    config = load_config({"region": region})
    sts = client("sts", region=region)
    with translate_errors("STS GetCallerIdentity (who am I?)"):
        me = sts.get_caller_identity()
    account = str(me["Account"])
    bucket = config.bucket or f"starburst-{account}-{region}"
    if kms_key is not None:
        kms_key = _key_arn(kms_key, region)
    return SetupPlan(region=region, account=account, caller=str(me["Arn"]), bucket=bucket,
                     log_bucket=f"{bucket}-logs"[:63], prefix=config.prefix,
                     cluster=config.cluster, log_group=config.log_group,
                     repository=config.ecr_repository, kms_key=kms_key, dry_run=dry_run,
                     private=private, gpu=instance, spot=spot)


def _key_arn(key: str, region: str) -> str:
    """The ARN of a KMS key given by id, ARN, alias name or alias ARN.

    IAM grants on a key name its key ARN (an alias in ``Resource`` grants
    nothing), so the policies need the ARN whatever the user passed.
    """
    kms = client("kms", region=region)
    with translate_errors(f"KMS DescribeKey {key} (the --kms-key of setup)"):
        return str(kms.describe_key(KeyId=key)["KeyMetadata"]["Arn"])


def run_setup(plan: SetupPlan) -> SetupPlan:
    """Converge every resource; ``plan.changes`` lists what changed (empty: nothing to do)."""
    config = load_config({"region": plan.region})
    part = plan.part
    with translate_errors("starburst setup"):
        execution = _setup_role(plan, provision.EXECUTION_ROLE, "starburst-execution",
                                policies.execution_policy(
                                    part=part, region=plan.region, account=plan.account,
                                    repository=plan.repository, log_group=plan.log_group))
        task = _setup_role(plan, provision.TASK_ROLE, f"starburst-data-{plan.bucket}"[:128],
                           policies.task_policy(part=part, account=plan.account,
                                                bucket=plan.bucket, prefix=plan.prefix,
                                                kms_key=plan.kms_key, region=plan.region))
        # Debug sessions' workers (ECS Exec) run as their own role: it must write too.
        debug = _setup_role(plan, provision.DEBUG_TASK_ROLE,
                            provision.data_policy_name(plan.bucket),
                            policies.debug_task_policy(part=part, account=plan.account,
                                                       bucket=plan.bucket, prefix=plan.prefix,
                                                       kms_key=plan.kms_key,
                                                       region=plan.region))
        _setup_session_boundary(plan)
        _setup_buckets(plan, [task, debug,
                              policies.session_roles_writer(part=part, account=plan.account),
                              *policies.principal_arn(plan.caller)])
        _setup_repository(plan)
        _setup_cluster_and_logs(plan)
        network = _setup_network(plan, config.subnets, config.security_groups)
    plan.resources = {
        "region": plan.region, "bucket": plan.bucket, "prefix": plan.prefix,
        "cluster": plan.cluster, "log_group": plan.log_group,
        "ecr_repository": plan.repository, "execution_role_arn": execution,
        "task_role_arn": task}
    if network is not None:
        plan.resources.update(subnets=list(network.subnets),
                              security_groups=list(network.security_groups))
        if plan.private:
            # No public IPs: workers reach S3, SQS, ECR, Logs and STS through
            # VPC endpoints (no NAT gateway needed).
            with translate_errors("starburst setup --private (VPC endpoints)"):
                setup_endpoints(plan, list(network.subnets), network.security_groups[0])
            plan.resources["assign_public_ip"] = False
    if plan.gpu is not None:
        with translate_errors("starburst setup --gpu (AWS Batch)"):
            _setup_gpu(plan, network, provision.Roles(execution, task), config.image)
    if plan.dry_run:
        return plan
    # Only config fields go to the file (the GPU queue is found by its name).
    if write_config({k: v for k, v in plan.resources.items() if k in FIELDS}):
        plan.changes.append(f"write {config_path()}")
    return plan
