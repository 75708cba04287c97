"""`starburst setup` / `teardown` / `doctor` against the emulated AWS."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from starburst.aws import retention
from starburst.aws.clients import client
from starburst.aws.policies import UNSCOPABLE_ACTIONS, user_policy
from starburst.aws.policy_lint import wildcard_writes
from starburst.cli import main


@pytest.fixture
def config_file(aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config file of this test's own (setup writes it), with the emulator's image."""
    path = tmp_path / "config.toml"
    path.write_text(aws.config_path.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setenv("STARBURST_CONFIG", str(path))
    return path


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def _setup_json() -> dict:
    code, out = _run("setup", "--yes", "--json")
    assert code == 0, out
    return json.loads(out)


def test_setup_twice_second_run_reports_no_changes(config_file):
    first = _setup_json()
    assert first["changes"]
    code, out = _run("setup", "--yes")
    assert code == 0, out
    assert "no changes" in out
    assert _setup_json()["changes"] == []
    written = tomllib.loads(config_file.read_text(encoding="utf-8"))
    assert written["image"]  # kept
    assert written["bucket"].startswith("starburst-")
    assert written["task_role_arn"].endswith("role/starburst-task")
    assert written["security_groups"]


def test_dry_run_changes_nothing(config_file):
    before = config_file.read_text(encoding="utf-8")
    code, out = _run("setup", "--dry-run")
    assert code == 0, out
    assert "would make" in out
    assert config_file.read_text(encoding="utf-8") == before
    assert _setup_json()["changes"]  # still everything to do


def test_bucket_is_locked_down(config_file):
    bucket = _setup_json()["resources"]["bucket"]
    s3 = client("s3")
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    tls = [st for st in policy["Statement"] if st["Effect"] == "Deny"
           and st.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"]
    assert tls
    writers = next(st for st in policy["Statement"] if st["Sid"] == "RunPrefixWritersOnly")
    allowed = writers["Condition"]["StringNotLike"]["aws:PrincipalArn"]
    assert any(a.endswith("role/starburst-task") for a in allowed)
    assert writers["Resource"].endswith(f"{bucket}/starburst/*")
    life = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert life == [retention.lifecycle_rule("starburst")]  # the same rule as first use
    assert life[0]["Expiration"]["Days"] == retention.RUN_DATA_DAYS
    assert life[0]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 1
    logging = s3.get_bucket_logging(Bucket=bucket)["LoggingEnabled"]
    assert logging["TargetBucket"] == f"{bucket}-logs"
    tags = s3.get_bucket_tagging(Bucket=bucket)["TagSet"]
    assert {"Key": "starburst:managed", "Value": "true"} in tags


def _data_key_grants(doc: dict) -> list[dict]:
    return [st for st in doc["Statement"] if st["Effect"] == "Allow"
            and {"kms:GenerateDataKey", "kms:Decrypt"} <= set(st["Action"])]


def test_kms_key_encrypts_with_kms_and_every_writer_may_use_it_through_s3(config_file, aws):
    kms = client("kms")
    key = kms.create_key(Description="starburst run data")["KeyMetadata"]["Arn"]
    kms.create_alias(AliasName="alias/starburst", TargetKeyId=key)
    code, out = _run("setup", "--yes", "--kms-key", "alias/starburst")
    assert code == 0, out
    bucket = tomllib.loads(config_file.read_text(encoding="utf-8"))["bucket"]
    rule = client("s3").get_bucket_encryption(Bucket=bucket)[
        "ServerSideEncryptionConfiguration"]["Rules"][0]["ApplyServerSideEncryptionByDefault"]
    # IAM grants on a key name its ARN: the alias is resolved once, for all of them.
    assert rule == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}
    via = {"StringEquals": {"kms:ViaService": f"s3.{aws.region}.amazonaws.com"}}
    iam = client("iam")
    for role in ("starburst-task", "starburst-task-debug"):
        docs = [iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
                for name in iam.list_role_policies(RoleName=role)["PolicyNames"]]
        grants = [g for doc in docs for g in _data_key_grants(doc)]
        assert grants, role  # without them every worker's PutObject is denied
        assert all(g["Resource"] == key and g["Condition"] == via for g in grants), role
    code, out = _run("setup", "--print-policy", "--kms-key", "alias/starburst")
    assert code == 0, out
    [grant] = _data_key_grants(json.loads(out))
    assert (grant["Resource"], grant["Condition"]) == (key, via)


def test_an_unknown_kms_key_is_refused_before_anything_changes(config_file, aws):
    before = config_file.read_text(encoding="utf-8")
    code, out = _run("setup", "--yes", "--kms-key", "alias/nothing-here")
    assert code != 0
    assert "alias/nothing-here" in out
    assert "DescribeKey" in out
    assert config_file.read_text(encoding="utf-8") == before  # nothing was set up


def test_ecr_cluster_and_log_group(config_file):
    _setup_json()
    repo = client("ecr").describe_repositories(repositoryNames=["starburst"])["repositories"][0]
    assert repo["imageScanningConfiguration"]["scanOnPush"]
    life = json.loads(client("ecr").get_lifecycle_policy(
        repositoryName="starburst")["lifecyclePolicyText"])
    assert life["rules"][0]["selection"]["tagStatus"] == "untagged"
    cluster = client("ecs").describe_clusters(clusters=["starburst"])["clusters"][0]
    assert sorted(cluster["capacityProviders"]) == ["FARGATE", "FARGATE_SPOT"]
    group = client("logs").describe_log_groups(logGroupNamePrefix="/starburst")["logGroups"][0]
    assert group["retentionInDays"] == 30
    sgs = client("ec2").describe_security_groups(Filters=[
        {"Name": "group-name", "Values": ["starburst-workers"]}])["SecurityGroups"]
    assert sgs
    assert not sgs[0]["IpPermissions"]


def test_iam_policies_have_no_wildcard_writes(config_file):
    _setup_json()
    iam = client("iam")
    for role in ("starburst-execution", "starburst-task"):
        names = iam.list_role_policies(RoleName=role)["PolicyNames"]
        assert names
        for name in names:
            doc = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
            assert wildcard_writes(doc) == [], (role, name)
            text = json.dumps(doc)
            assert "FullAccess" not in text
        assert iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"] == []
    code, out = _run("setup", "--print-policy")
    assert code == 0, out
    printed = json.loads(out)
    assert wildcard_writes(printed) == []
    assert printed == user_policy(part="aws", region="us-east-1", account="123456789012",
                                  bucket="starburst-123456789012-us-east-1",
                                  prefix="starburst", cluster="starburst",
                                  repository="starburst", log_group="/starburst")


def test_the_wildcard_check_catches_broad_policies():
    broad = {"Statement": [
        {"Sid": "a", "Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"},
        {"Sid": "b", "Effect": "Allow", "Action": "sqs:*", "Resource": "arn:aws:sqs:*:1:x"},
        {"Sid": "c", "Effect": "Allow", "Action": "s3:DeleteObject",
         "Resource": "arn:aws:s3:::*"},
        {"Sid": "d", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken",
                                                   "ec2:DescribeVpcs"], "Resource": "*"}]}
    problems = wildcard_writes(broad)
    assert len(problems) == 3
    assert not [p for p in problems if p.startswith("d:")]
    assert "ecr:GetAuthorizationToken" in UNSCOPABLE_ACTIONS


def test_doctor_reports_a_missing_resource_with_its_fix(config_file):
    _setup_json()
    code, out = _run("doctor", "--json")
    report = json.loads(out)
    failed = [c for c in report["checks"] if not c["ok"]]
    assert [c["name"] for c in failed if c["name"] != "uv"] == [], failed
    client("logs").delete_log_group(logGroupName="/starburst")
    code, out = _run("doctor", "--json")
    assert code == 1
    check = next(c for c in json.loads(out)["checks"] if c["name"] == "log group")
    assert not check["ok"]
    assert "does not exist" in check["detail"]
    assert "starburst setup" in check["fix"]
    code, out = _run("doctor")
    assert "FAIL" in out
    assert "log group" in out


def test_teardown_removes_what_setup_created(config_file):
    resources = _setup_json()["resources"]
    code, out = _run("teardown")  # asks; no answer aborts
    assert code != 0
    code, out = _run("teardown", "--yes")
    assert code == 0, out
    s3 = client("s3")
    names = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    assert resources["bucket"] not in names
    assert f"{resources['bucket']}-logs" not in names
    assert not client("ecr").describe_repositories().get("repositories")
    roles = {r["RoleName"] for r in client("iam").list_roles()["Roles"]}
    assert not {"starburst-execution", "starburst-task"} & roles
    assert not [p for p in client("iam").list_policies(Scope="Local")["Policies"]
                if p["PolicyName"].startswith("starburst-session-boundary-")]
    written = tomllib.loads(config_file.read_text(encoding="utf-8"))
    assert "bucket" not in written
    assert written["image"]


def test_private_setup_creates_endpoints_once_and_prints_the_costs(config_file, aws):
    code, out = _run("setup", "--yes", "--private")
    assert code == 0, out
    for svc in ("s3 gateway", "sqs interface", "ecr.api interface", "ecr.dkr interface",
                "logs interface", "sts interface"):
        assert f"create the {svc} endpoint" in out, out
    assert "NAT gateway" in out
    assert "public IP per task" in out
    assert "VPC endpoints (--private)" in out
    ec2 = client("ec2", region="us-east-1")
    endpoints = ec2.describe_vpc_endpoints()["VpcEndpoints"]
    assert {e["ServiceName"].rsplit(".", 1)[-1] for e in endpoints} >= {"s3", "sqs", "logs",
                                                                         "sts"}
    written = tomllib.loads(config_file.read_text(encoding="utf-8"))
    assert written["assign_public_ip"] is False
    again = _setup_json_private()
    assert again["changes"] == []
    assert again["network_options_hourly"]["VPC endpoints (--private)"] > 0
    code, out = _run("teardown", "--yes")
    assert code == 0, out
    assert "VPC endpoint" in out
    assert ec2.describe_vpc_endpoints()["VpcEndpoints"] == [] or all(
        e.get("State") in ("deleted", "deleting")
        for e in ec2.describe_vpc_endpoints()["VpcEndpoints"])


def _egress(group_id: str) -> list[dict]:
    [group] = client("ec2").describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    return group["IpPermissionsEgress"]


def test_private_setup_limits_worker_egress_to_https_to_the_endpoints(config_file, aws):
    ec2 = client("ec2")
    code, out = _run("setup", "--yes", "--private")
    assert code == 0, out
    written = tomllib.loads(config_file.read_text(encoding="utf-8"))
    [workers] = written["security_groups"]
    [endpoints] = ec2.describe_security_groups(Filters=[
        {"Name": "group-name", "Values": ["starburst-endpoints"]}])["SecurityGroups"]
    [s3_list] = ec2.describe_prefix_lists(Filters=[
        {"Name": "prefix-list-name", "Values": [f"com.amazonaws.{aws.region}.s3"]}])[
        "PrefixLists"]
    rules = _egress(workers)
    assert all(r["IpProtocol"] == "tcp" and r["FromPort"] == r["ToPort"] == 443
               for r in rules), rules
    assert not [r for r in rules if r.get("IpRanges") or r.get("Ipv6Ranges")], rules
    assert {p["GroupId"] for r in rules for p in r.get("UserIdGroupPairs", [])} == {
        endpoints["GroupId"]}
    assert {p["PrefixListId"] for r in rules for p in r.get("PrefixListIds", [])} == {
        s3_list["PrefixListId"]}
    assert "egress" in out
    again = _setup_json_private()
    assert again["changes"] == []  # converged: the rules are not rewritten


def test_setup_without_private_keeps_allow_all_egress(config_file, aws):
    code, out = _run("setup", "--yes")
    assert code == 0, out
    [workers] = tomllib.loads(config_file.read_text(encoding="utf-8"))["security_groups"]
    assert [r["IpRanges"] for r in _egress(workers)] == [[{"CidrIp": "0.0.0.0/0"}]]


def _setup_json_private() -> dict:
    code, out = _run("setup", "--yes", "--json", "--private")
    assert code == 0, out
    return json.loads(out)


def test_private_endpoints_go_only_into_the_azs_each_service_supports(config_file, aws,
                                                                     monkeypatch):
    from starburst.admin import private_network

    ec2 = client("ec2")
    subnets = {s["SubnetId"]: s["AvailabilityZone"]
               for s in ec2.describe_subnets(Filters=[{"Name": "default-for-az",
                                                       "Values": ["true"]}])["Subnets"]}
    assert len(set(subnets.values())) >= 2
    lacking = sorted(set(subnets.values()))[0]  # SQS has no endpoint in this AZ here
    sqs = f"com.amazonaws.{aws.region}.sqs"
    created: list[dict] = []

    def hooked(service: str, **kwargs):
        made = client(service, **kwargs)
        if service != "ec2":
            return made

        def narrow(parsed, model, **_):
            if model.name == "DescribeVpcEndpointServices":
                for detail in parsed.get("ServiceDetails", []):
                    if detail.get("ServiceName") == sqs:
                        detail["AvailabilityZones"] = [
                            z for z in detail.get("AvailabilityZones", []) if z != lacking]

        made.meta.events.register("after-call.ec2.DescribeVpcEndpointServices", narrow)
        made.meta.events.register("provide-client-params.ec2.CreateVpcEndpoint",
                                  lambda params, **_: created.append(dict(params)))
        return made

    monkeypatch.setattr(private_network, "client", hooked)
    code, out = _run("setup", "--yes", "--private")
    assert code == 0, out
    by_service = {c["ServiceName"].rsplit(".", 1)[-1]: c for c in created}
    assert "ssmmessages" in by_service  # ECS Exec reaches a worker without a public IP
    assert lacking not in {subnets[s] for s in by_service["sqs"]["SubnetIds"]}
    assert by_service["sqs"]["SubnetIds"]
    assert lacking in {subnets[s] for s in by_service["logs"]["SubnetIds"]}
