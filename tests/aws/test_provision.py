"""Provisioning is idempotent and tags what it creates."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from starburst.aws import provision
from starburst.aws.clients import client
from starburst.aws.config import load_config
from starburst.aws.sizes import FARGATE_SIZES, valid_memory, validate_size
from starburst.exceptions import ConfigurationError

MANAGED = {"Key": "starburst:managed", "Value": "true"}


def test_ensure_shared_is_idempotent(aws):
    again = provision.ensure_shared(load_config())
    assert again == aws.shared
    ecs, ec2, logs = client("ecs"), client("ec2"), client("logs")
    assert len(ecs.list_clusters()["clusterArns"]) == 1
    groups = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [provision.SECURITY_GROUP]}])["SecurityGroups"]
    assert len(groups) == 1
    assert [g["logGroupName"] for g in logs.describe_log_groups()["logGroups"]] == ["/starburst"]
    assert aws.shared.bucket == "starburst-123456789012-us-east-1"


def test_shared_resources_are_tagged_managed(aws):
    shared = aws.shared
    s3, ecs, logs, iam, ec2 = (client(s) for s in ("s3", "ecs", "logs", "iam", "ec2"))
    assert MANAGED in s3.get_bucket_tagging(Bucket=shared.bucket)["TagSet"]
    cluster = ecs.describe_clusters(clusters=[shared.cluster], include=["TAGS"])["clusters"][0]
    assert {"key": "starburst:managed", "value": "true"} in cluster["tags"]
    group_arn = logs.describe_log_groups(logGroupNamePrefix=shared.log_group)["logGroups"][0]
    assert logs.list_tags_for_resource(resourceArn=group_arn["arn"].rstrip(":*"))["tags"] == {
        "starburst:managed": "true"}
    assert group_arn["retentionInDays"] == 30
    for role in (provision.EXECUTION_ROLE, provision.TASK_ROLE):
        assert MANAGED in iam.list_role_tags(RoleName=role)["Tags"]
    [group] = ec2.describe_security_groups(GroupIds=list(shared.network.security_groups))[
        "SecurityGroups"]
    assert MANAGED in group["Tags"]
    assert group["IpPermissions"] == []  # no ingress at all


def test_bucket_is_private_and_expires_old_records(aws):
    s3 = client("s3")
    block = s3.get_public_access_block(Bucket=aws.shared.bucket)
    assert all(block["PublicAccessBlockConfiguration"].values())
    [rule] = s3.get_bucket_lifecycle_configuration(Bucket=aws.shared.bucket)["Rules"]
    assert rule["Filter"]["Prefix"] == "starburst/"
    assert rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 1


def test_a_bucket_a_session_created_has_setups_tls_policy_and_encryption(aws):
    # aws.shared.bucket was created by provisioning, as a session does when
    # `starburst setup` was not run.
    s3 = client("s3")
    policy = json.loads(s3.get_bucket_policy(Bucket=aws.shared.bucket)["Policy"])
    [tls] = [st for st in policy["Statement"] if st["Sid"] == "DenyInsecureTransport"]
    assert tls["Effect"] == "Deny"
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert f"arn:aws:s3:::{aws.shared.bucket}/*" in tls["Resource"]
    rules = s3.get_bucket_encryption(Bucket=aws.shared.bucket)[
        "ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def test_creating_a_bucket_says_once_that_setup_was_not_run(aws, caplog):
    provision._SETUP_NOTE_SAID = False
    with caplog.at_level("WARNING", logger="starburst"):
        provision.ensure_bucket("starburst-unsetup-one", region=aws.region, prefix="p")
        provision.ensure_bucket("starburst-unsetup-two", region=aws.region, prefix="p")
    said = [r.getMessage() for r in caplog.records if "starburst setup" in r.getMessage()]
    assert len(said) == 1
    assert "starburst-unsetup-one" in said[0]


def test_setup_creating_a_bucket_does_not_say_setup_was_not_run(aws, caplog):
    provision._SETUP_NOTE_SAID = False
    with caplog.at_level("WARNING", logger="starburst"):
        provision.ensure_bucket("starburst-by-setup", region=aws.region, by_setup=True)
    assert not [r for r in caplog.records if "starburst setup" in r.getMessage()]


def test_task_role_may_only_touch_its_prefix_and_starburst_queues(aws):
    iam = client("iam")
    name = f"starburst-data-{aws.shared.bucket}"
    policy = iam.get_role_policy(RoleName=provision.TASK_ROLE, PolicyName=name)["PolicyDocument"]
    document = policy if isinstance(policy, dict) else json.loads(policy)
    resources = [s["Resource"] for s in document["Statement"]]
    assert f"arn:aws:s3:::{aws.shared.bucket}/starburst/*" in resources
    assert "arn:aws:sqs:us-east-1:123456789012:starburst-*" in resources
    assert "*" not in resources


def test_the_old_broad_execution_policy_gives_way_to_a_regional_one(aws):
    iam = client("iam")
    iam.put_role_policy(RoleName=provision.EXECUTION_ROLE, PolicyName="starburst-execution",
                        PolicyDocument=json.dumps(provision._LEGACY_EXECUTION_POLICY))
    provision.ensure_roles(region=aws.region, bucket=aws.shared.bucket,
                           prefix=aws.shared.prefix, log_group=aws.shared.log_group)
    names = iam.list_role_policies(RoleName=provision.EXECUTION_ROLE)["PolicyNames"]
    assert names == [f"starburst-execution-{aws.region}"]
    doc = iam.get_role_policy(RoleName=provision.EXECUTION_ROLE,
                              PolicyName=names[0])["PolicyDocument"]
    doc = doc if isinstance(doc, dict) else json.loads(doc)
    logs = [st for st in doc["Statement"] if st["Sid"] == "WriteWorkerLogs"]
    assert logs[0]["Resource"].endswith(f":log-group:{aws.shared.log_group}:*")


def test_configured_roles_and_network_are_used_as_given(aws):
    config = load_config({"execution_role_arn": "arn:aws:iam::123456789012:role/exec",
                          "task_role_arn": "arn:aws:iam::123456789012:role/task",
                          "subnets": list(aws.shared.network.subnets[:1]),
                          "security_groups": ["sg-given"], "assign_public_ip": False})
    shared = provision.ensure_shared(config)
    assert shared.roles == provision.Roles("arn:aws:iam::123456789012:role/exec",
                                           "arn:aws:iam::123456789012:role/task")
    assert shared.network.awsvpc() == {"awsvpcConfiguration": {
        "subnets": list(aws.shared.network.subnets[:1]), "securityGroups": ["sg-given"],
        "assignPublicIp": "DISABLED"}}


def test_task_definition_is_reused_when_it_matches(aws):
    shared = aws.shared
    kw = {"region": shared.region, "roles": shared.roles, "log_group": shared.log_group}
    first = provision.ensure_task_definition(image="img:1", cpu=1, memory_mib=2048, **kw)
    assert provision.ensure_task_definition(image="img:1", cpu=1, memory_mib=2048, **kw) == first
    other_image = provision.ensure_task_definition(image="img:2", cpu=1, memory_mib=2048, **kw)
    other_size = provision.ensure_task_definition(image="img:1", cpu=2, memory_mib=4096, **kw)
    arm = provision.ensure_task_definition(image="img:1", cpu=1, memory_mib=2048, arch="arm64",
                                           **kw)
    assert len({first, other_image, other_size, arm}) == 4
    described = client("ecs").describe_task_definition(taskDefinition=first, include=["TAGS"])
    definition = described["taskDefinition"]
    assert definition["requiresCompatibilities"] == ["FARGATE"]
    assert definition["networkMode"] == "awsvpc"
    assert (definition["cpu"], definition["memory"]) == ("1024", "2048")
    [container] = definition["containerDefinitions"]
    assert container["logConfiguration"]["logDriver"] == "awslogs"
    assert container["command"] == ["python", "-m", "starburst.worker"]
    assert {"key": "starburst:managed", "value": "true"} in described["tags"]


def test_task_definition_refuses_invalid_sizes_and_arches(aws):
    shared = aws.shared
    kw = {"region": shared.region, "roles": shared.roles, "log_group": shared.log_group}
    with pytest.raises(ConfigurationError, match=r"does not fit cpu=1"):
        provision.ensure_task_definition(image="i", cpu=1, memory_mib=1024, **kw)
    with pytest.raises(ConfigurationError, match=r"x86_64' or 'arm64"):
        provision.ensure_task_definition(image="i", cpu=1, memory_mib=2048, arch="mips", **kw)


@given(st.sampled_from(sorted(FARGATE_SIZES)), st.integers(min_value=1, max_value=200_000))
def test_validate_size_accepts_exactly_the_fargate_table(cpu, memory):
    low, high, step = FARGATE_SIZES[cpu]
    valid = low <= memory <= high and (memory - low) % step == 0 and (cpu, memory) != (0.25, 1536)
    if valid:
        validate_size(cpu, memory)
    else:
        with pytest.raises(ConfigurationError, match=rf"cpu={cpu:g}"):
            validate_size(cpu, memory)


def test_fargate_size_table_spot_checks():
    assert valid_memory(0.25) == [512, 1024, 2048]
    assert valid_memory(4)[-1] == 30720
    assert valid_memory(16)[:2] == [32768, 40960]
    assert valid_memory(3) == []
    with pytest.raises(ConfigurationError, match=r"choose one of 0.25, 0.5, 1, 2, 4, 8, 16"):
        validate_size(3, 8192)
