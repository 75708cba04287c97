"""`starburst teardown`: remove what `starburst setup` created (tagged starburst:managed).

GPU workers' AWS Batch resources go first (job queues, then compute
environments, then job definitions and the instance profile), so no Batch
instance outlives the roles and network it uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from ..aws import batch, provision, session_role
from ..aws.clients import client
from ..aws.errors import error_code, translate_errors
from ..exceptions import CloudError
from .private_network import ENDPOINT_SECURITY_GROUP
from .setup import SetupPlan, write_config

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import DeleteObjectsOutputTypeDef

__all__ = ["CONFIG_KEYS", "run_teardown"]

#: The config keys setup writes (teardown removes them).
CONFIG_KEYS = ("bucket", "prefix", "cluster", "log_group", "ecr_repository",
               "execution_role_arn", "task_role_arn", "subnets", "security_groups")


def _quiet(fn: object, *args: object, **kwargs: object) -> bool:
    """Call ``fn``; False when the resource was already gone."""
    try:
        fn(*args, **kwargs)  # type: ignore[operator]
    except ClientError as exc:
        code = error_code(exc)
        if code.startswith("NoSuch") or code in ("404", "RepositoryNotFoundException",
                                                  "ResourceNotFoundException",
                                                  "ClusterNotFoundException",
                                                  "InvalidGroup.NotFound"):
            return False
        raise
    return True


def _check(response: DeleteObjectsOutputTypeDef) -> None:
    errors = response.get("Errors", [])
    if errors:
        first = errors[0]
        raise CloudError(f"S3 DeleteObjects left {len(errors)} object(s), e.g. "
                         f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}")


def _empty_bucket(bucket: str, region: str) -> None:
    s3 = client("s3", region=region)
    # The policy's writers-only and TLS-only denies would stop another admin (and an
    # emulator that ignores policy conditions) from emptying it; access logging
    # writes into the log bucket while we empty the other one.
    s3.delete_bucket_policy(Bucket=bucket)
    s3.put_bucket_logging(Bucket=bucket, BucketLoggingStatus={})
    for _ in range(5):
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            keys = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                    for v in (*page.get("Versions", []), *page.get("DeleteMarkers", []))]
            if keys:
                _check(s3.delete_objects(Bucket=bucket, Delete={"Objects": keys}))  # type: ignore[typeddict-item]
        for listed in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            plain = [{"Key": o["Key"]} for o in listed.get("Contents", [])]
            if plain:
                _check(s3.delete_objects(Bucket=bucket, Delete={"Objects": plain}))  # type: ignore[typeddict-item]
        try:
            s3.delete_bucket(Bucket=bucket)
        except ClientError as exc:
            if error_code(exc) != "BucketNotEmpty":
                raise
        else:
            return
    s3.delete_bucket(Bucket=bucket)


def run_teardown(plan: SetupPlan) -> SetupPlan:
    """Stop starburst tasks and delete the setup's resources; ``plan.changes`` says what."""
    region = plan.region
    with translate_errors("starburst teardown"):
        batch.delete_gpu_resources(batch.list_gpu_resources(region=region), region=region,
                                   change=plan.change)
        ecs = client("ecs", region=region)
        clusters = ecs.describe_clusters(clusters=[plan.cluster]).get("clusters", [])
        if any(c.get("status") == "ACTIVE" for c in clusters):
            for arn in ecs.list_tasks(cluster=plan.cluster).get("taskArns", []):
                plan.change(f"stop task {arn}", lambda arn=arn: ecs.stop_task(  # type: ignore[misc]
                    cluster=plan.cluster, task=arn, reason="starburst teardown"))
            defs = ecs.list_task_definitions(familyPrefix="starburst-").get(
                "taskDefinitionArns", [])
            for arn in defs:
                plan.change(f"deregister {arn}", lambda arn=arn: ecs.deregister_task_definition(  # type: ignore[misc]
                    taskDefinition=arn))
            plan.change(f"delete ECS cluster {plan.cluster}",
                        lambda: ecs.delete_cluster(cluster=plan.cluster))
        s3 = client("s3", region=region)
        for bucket in (plan.bucket, plan.log_bucket):
            try:
                s3.head_bucket(Bucket=bucket)
            except ClientError:
                continue
            plan.change(f"empty and delete S3 bucket {bucket}",
                        lambda bucket=bucket: _empty_bucket(bucket, region))  # type: ignore[misc]
        ecr = client("ecr", region=region)
        try:
            ecr.describe_repositories(repositoryNames=[plan.repository])
        except ClientError:
            pass
        else:
            plan.change(f"delete ECR repository {plan.repository}", lambda: ecr.delete_repository(
                repositoryName=plan.repository, force=True))
        logs = client("logs", region=region)
        if any(g.get("logGroupName") == plan.log_group for g in logs.describe_log_groups(
                logGroupNamePrefix=plan.log_group)["logGroups"]):
            plan.change(f"delete log group {plan.log_group}",
                        lambda: logs.delete_log_group(logGroupName=plan.log_group))
        iam = client("iam", region=region)
        for role in (provision.EXECUTION_ROLE, provision.TASK_ROLE, provision.DEBUG_TASK_ROLE):
            try:
                names = iam.list_role_policies(RoleName=role)["PolicyNames"]
            except ClientError:
                continue

            def drop(role: str = role, names: list[str] = names) -> None:
                for name in names:
                    iam.delete_role_policy(RoleName=role, PolicyName=name)
                for att in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]:
                    iam.detach_role_policy(RoleName=role, PolicyArn=att["PolicyArn"])
                iam.delete_role(RoleName=role)
            plan.change(f"delete IAM role {role}", drop)
        for left in session_role.session_roles(region=region):
            plan.change(f"delete IAM role {left.name} (left by session {left.session})",
                        lambda left=left: session_role.delete_session_role(  # type: ignore[misc]
                            left.session, region=region))
        boundary = session_role.boundary_arn(plan.bucket, region=region)
        if session_role.boundary_state(region=region, bucket=plan.bucket,
                                       prefix=plan.prefix) != "missing":
            plan.change(f"delete the permissions boundary {boundary} of the session roles",
                        lambda: session_role.delete_session_boundary(plan.bucket,
                                                                     region=region))
        ec2 = client("ec2", region=region)
        endpoints = [e["VpcEndpointId"] for e in ec2.describe_vpc_endpoints(Filters=[
            {"Name": f"tag:{provision.MANAGED_TAG}", "Values": ["true"]}])["VpcEndpoints"]]
        if endpoints:
            plan.change(f"delete {len(endpoints)} VPC endpoint(s) of setup --private",
                        lambda: ec2.delete_vpc_endpoints(VpcEndpointIds=endpoints))
        for sg in ec2.describe_security_groups(Filters=[
                {"Name": "group-name", "Values": [ENDPOINT_SECURITY_GROUP]},
                {"Name": f"tag:{provision.MANAGED_TAG}", "Values": ["true"]}])["SecurityGroups"]:
            plan.change(f"delete security group {sg['GroupId']}", lambda sg=sg: _quiet(  # type: ignore[misc]
                ec2.delete_security_group, GroupId=sg["GroupId"]))
        for sg in ec2.describe_security_groups(Filters=[
                {"Name": "group-name", "Values": [provision.SECURITY_GROUP]},
                {"Name": f"tag:{provision.MANAGED_TAG}", "Values": ["true"]}])["SecurityGroups"]:
            plan.change(f"delete security group {sg['GroupId']}", lambda sg=sg: _quiet(  # type: ignore[misc]
                ec2.delete_security_group, GroupId=sg["GroupId"]))
    if not plan.dry_run and write_config(dict.fromkeys(CONFIG_KEYS), remove=True):
        plan.changes.append("remove setup's keys from the config file")
    return plan
