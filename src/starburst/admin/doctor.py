"""`starburst doctor`: each thing a Fargate run needs, checked, with the fix when it fails.

Every check in :data:`CHECK_NAMES` is reported, in that order, every time:
a check that cannot run because an earlier one failed (no valid config
file, no region, no credentials) is reported as not checked, naming what it
needs, so one run shows everything that is wrong.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..aws import policies, policy_lint, provision
from ..aws.clients import client, resolve_region
from ..aws.config import AwsConfig, config_path, load_config
from ..aws.errors import explain
from ..config_files import find_pyproject
from ..exceptions import StarburstError

__all__ = ["CHECK_NAMES", "Check", "run_checks"]

#: Every check, in the order it runs and is reported.
CHECK_NAMES = ("config file", "region", "credentials", "clock skew", "bucket", "log bucket",
               "ecr repository", "ecs cluster", "log group", "iam roles", "network",
               "fargate quota", "uv")

_SETUP = "run `starburst setup`"
#: Clock skew beyond this breaks SigV4 signing (AWS allows 5 minutes).
_MAX_SKEW_S = 60.0


@dataclass(frozen=True)
class Check:
    """One check: its name, whether it passed, what was found, and the fix."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    #: Not run: an earlier check it depends on failed (``detail`` says which).
    skipped: bool = False

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def _guard(name: str, fix: str, fn: Callable[[], str]) -> Check:
    try:
        return Check(name, True, fn())
    except _Failed as exc:
        return Check(name, False, exc.detail, exc.fix or fix)
    except (ClientError, BotoCoreError) as exc:
        return Check(name, False, explain(exc), fix)
    except StarburstError as exc:
        return Check(name, False, str(exc), fix)


class _Failed(Exception):
    def __init__(self, detail: str, fix: str = "") -> None:
        super().__init__(detail)
        self.detail, self.fix = detail, fix


def _bucket(region: str, bucket: str) -> str:
    s3 = client("s3", region=region)
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        raise _Failed(f"S3 bucket {bucket} is missing or not readable ({exc})") from exc
    missing = []
    for what, call in (("encryption", s3.get_bucket_encryption),
                       ("public access block", s3.get_public_access_block),
                       ("bucket policy", s3.get_bucket_policy),
                       ("lifecycle rules", s3.get_bucket_lifecycle_configuration)):
        try:
            call(Bucket=bucket)
        except ClientError:
            missing.append(what)
    if not s3.get_bucket_logging(Bucket=bucket).get("LoggingEnabled"):
        missing.append("access logging")
    if missing:
        raise _Failed(f"S3 bucket {bucket} lacks {', '.join(missing)}")
    return f"S3 bucket {bucket}: encrypted, private, TLS only, lifecycle, access logs"


def _roles(region: str, config: AwsConfig) -> str:
    """The execution and task roles (and the debug task role, where it exists): present,
    scoped, no FullAccess policy, and ECS Exec's actions on the debug role only."""
    iam = client("iam", region=region)
    found = []
    named = [(provision.EXECUTION_ROLE, config.execution_role_arn),
             (provision.TASK_ROLE, config.task_role_arn)]
    try:
        iam.get_role(RoleName=provision.DEBUG_TASK_ROLE)
        named.append((provision.DEBUG_TASK_ROLE, None))
    except ClientError:
        pass  # made by `starburst setup` or the first debug=True session
    for name, arn in named:
        role = (arn or name).rsplit("/", 1)[-1]
        try:
            iam.get_role(RoleName=role)
        except ClientError as exc:
            raise _Failed(f"IAM role {role} is missing ({exc})") from exc
        for pname in iam.list_role_policies(RoleName=role)["PolicyNames"]:
            doc: Any = iam.get_role_policy(RoleName=role, PolicyName=pname)["PolicyDocument"]
            doc = doc if isinstance(doc, dict) else json.loads(doc)
            problems = policy_lint.wildcard_writes(doc)
            if role != provision.DEBUG_TASK_ROLE and set(policies.ECS_EXEC_ACTIONS) & set(
                    policy_lint.actions_of(doc)):
                problems.append(f"it grants ECS Exec's ssmmessages actions, which belong to "
                                f"{provision.DEBUG_TASK_ROLE} (debug sessions) only")
            if problems:
                raise _Failed(f"IAM role {role}, policy {pname}: {'; '.join(problems)}")
        for att in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]:
            if "FullAccess" in att.get("PolicyName", ""):
                raise _Failed(f"IAM role {role} has {att['PolicyName']} attached",
                              f"detach it: aws iam detach-role-policy --role-name {role} "
                              f"--policy-arn {att['PolicyArn']}")
        found.append(role)
    return f"IAM roles {', '.join(found)}: scoped policies"


def _not_checked(name: str, needs: list[str], fix: str) -> Check:
    """A check that could not run: ``needs`` names the failed checks it depends on."""
    return Check(name, False, f"not checked: needs {' and '.join(needs)}", fix, skipped=True)


def run_checks(region: str | None = None) -> list[Check]:
    """Every check of :data:`CHECK_NAMES`, in order, each reported.

    A check whose prerequisite failed (the config file, the region, the
    credentials) is reported as not checked rather than left out.
    """
    checks: list[Check] = []
    config: AwsConfig | None
    try:
        config = load_config({"region": region})
    except StarburstError as exc:
        config = None
        checks.append(Check("config file", False, str(exc),
                            "fix the file and line the message names (the project's "
                            f"pyproject.toml [tool.starburst] or {config_path()})"))
    else:
        project = find_pyproject()
        checks.append(Check("config file", True, f"{config_path()} "
                            f"({'found' if config_path().exists() else 'not written yet'})"
                            + (f"; project {project}" if project else "")
                            + f"; {config.described_sources()}"))
    name: str | None = None
    try:
        name = config.resolved_region(region) if config else resolve_region(region)
    except StarburstError as exc:
        checks.append(Check("region", False, str(exc),
                            "pass --region R, set STARBURST_REGION, or `starburst setup "
                            "--region R`"))
    else:
        checks.append(Check("region", True, name))
    checks.extend(_aws_checks(config, name))
    uv = shutil.which("uv")
    checks.append(Check("uv", uv is not None, uv or "uv is not on PATH",
                        "" if uv else "install uv (https://docs.astral.sh/uv/): environment "
                                      "sync uses it to build worker images"))
    return checks


def _aws_checks(config: AwsConfig | None, name: str | None) -> list[Check]:
    """The checks that ask AWS, from credentials to the quota (not checked without a
    region, credentials or, for the resources, a valid config file)."""
    checks: list[Check] = []
    creds_fix = "configure credentials: `aws configure`, `aws sso login` or AWS_PROFILE"
    needs = [] if name else ["the region"]
    if name is None:
        checks.append(_not_checked("credentials", needs, creds_fix))
        checks.append(_not_checked("clock skew", needs, ""))
        creds_ok = False
    else:
        region_name = name
        sts = client("sts", region=region_name)
        skew: list[float] = []

        def who() -> str:
            response = sts.get_caller_identity()
            date = response["ResponseMetadata"].get("HTTPHeaders", {}).get("date")
            if date:
                skew.append(time.time() - parsedate_to_datetime(date).timestamp())
            return f"{response['Arn']} (account {response['Account']})"
        checks.append(_guard("credentials", creds_fix, who))
        creds_ok = checks[-1].ok
        if not creds_ok:
            needs = ["credentials"]
            checks.append(_not_checked("clock skew", needs, ""))
        elif skew:
            off = skew[0]
            checks.append(Check("clock skew", abs(off) <= _MAX_SKEW_S, f"{off:+.1f} s from AWS",
                                "" if abs(off) <= _MAX_SKEW_S else
                                "synchronize the clock (NTP); requests fail beyond 5 minutes"))
        else:
            checks.append(Check("clock skew", True, "not measured (AWS's answer had no Date "
                                                    "header)"))
    resource_needs = (["the config file"] if config is None else []) + needs
    resources = ("bucket", "log bucket", "ecr repository", "ecs cluster", "log group",
                 "iam roles", "network")
    if resource_needs or config is None or name is None:
        checks.extend(_not_checked(n, resource_needs, _SETUP) for n in resources)
    else:
        checks.extend(_resource_checks(config, name))
    if needs or name is None:
        checks.append(_not_checked("fargate quota", needs, "see `starburst quota`"))
    else:
        checks.append(_guard("fargate quota", "see `starburst quota`", lambda: _quota(name)))
    return checks


def _quota(name: str) -> str:
    from ..aws.quota import read_plan  # the one reader the Executor and `quota` use
    status = read_plan(1, 1.0, region=name)
    if status.quota_vcpu is None:
        raise _Failed("the Fargate vCPU quota could not be read",
                      "grant servicequotas:GetServiceQuota, or see `starburst quota`")
    return (f"{status.quota_vcpu:g} vCPU ({status.read_from}), "
            f"{status.in_use_vcpu:g} in use")


def _resource_checks(config: AwsConfig, name: str) -> list[Check]:
    """The shared resources `starburst setup` creates, each checked."""
    checks: list[Check] = []
    bucket = config.bucket or provision.default_bucket(name)
    checks.append(_guard("bucket", _SETUP, lambda: _bucket(name, bucket)))
    checks.append(_guard("log bucket", _SETUP, lambda: _bucket_exists(name, f"{bucket}-logs")))
    def repo() -> str:
        ecr = client("ecr", region=name)
        found = ecr.describe_repositories(repositoryNames=[config.ecr_repository])
        scan = found["repositories"][0].get("imageScanningConfiguration", {}).get("scanOnPush")
        if not scan:
            raise _Failed(f"ECR repository {config.ecr_repository} does not scan on push")
        return f"ECR repository {config.ecr_repository} (scan on push)"
    checks.append(_guard("ecr repository", _SETUP, repo))

    def cluster() -> str:
        ecs = client("ecs", region=name)
        found = [c for c in ecs.describe_clusters(clusters=[config.cluster]).get("clusters", [])
                 if c.get("status") == "ACTIVE"]
        if not found:
            raise _Failed(f"ECS cluster {config.cluster} does not exist")
        providers = sorted(found[0].get("capacityProviders", []))
        if providers != ["FARGATE", "FARGATE_SPOT"]:
            raise _Failed(f"ECS cluster {config.cluster} has capacity providers {providers}")
        return f"ECS cluster {config.cluster} (FARGATE, FARGATE_SPOT)"
    checks.append(_guard("ecs cluster", _SETUP, cluster))

    def log_group() -> str:
        logs = client("logs", region=name)
        groups = [g for g in logs.describe_log_groups(
            logGroupNamePrefix=config.log_group)["logGroups"]
            if g.get("logGroupName") == config.log_group]
        if not groups:
            raise _Failed(f"log group {config.log_group} does not exist")
        if not groups[0].get("retentionInDays"):
            raise _Failed(f"log group {config.log_group} keeps logs forever")
        return f"log group {config.log_group} ({groups[0]['retentionInDays']} days)"
    checks.append(_guard("log group", _SETUP, log_group))
    checks.append(_guard("iam roles", _SETUP, lambda: _roles(name, config)))

    def network() -> str:
        ec2 = client("ec2", region=name)
        if config.security_groups:
            groups = ec2.describe_security_groups(
                GroupIds=list(config.security_groups))["SecurityGroups"]
        else:
            groups = ec2.describe_security_groups(Filters=[
                {"Name": "group-name", "Values": [provision.SECURITY_GROUP]}])["SecurityGroups"]
            if not groups:
                raise _Failed(f"security group {provision.SECURITY_GROUP} does not exist")
        if config.subnets:
            ec2.describe_subnets(SubnetIds=list(config.subnets))
        elif not ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]:
            raise _Failed(f"region {name} has no default VPC and no subnets are configured",
                          "set subnets = [...] and security_groups = [...] in the config")
        open_ = [g["GroupId"] for g in groups if g.get("IpPermissions")]
        if open_:
            raise _Failed(f"security groups {open_} allow ingress",
                          "remove their inbound rules: workers only call out")
        subnets = ", ".join(config.subnets) or "default VPC"
        return f"subnets: {subnets}; security groups {', '.join(g['GroupId'] for g in groups)}"
    checks.append(_guard("network", "set subnets/security_groups in the config, or "
                                    "`starburst setup`", network))
    return checks


def _bucket_exists(region: str, bucket: str) -> str:
    try:
        client("s3", region=region).head_bucket(Bucket=bucket)
    except ClientError as exc:
        raise _Failed(f"S3 access-log bucket {bucket} is missing ({exc})") from exc
    return f"S3 access-log bucket {bucket}"
