"""No credential leaks and a locked-down footprint, checked on a real (emulated) run.

A small Fargate session runs in the emulated AWS, its task printing a line
and logging a warning; then every place a credential could end up in AWS is
scanned: the registered task definitions, the RunTask overrides of the
session's tasks and the worker log events in CloudWatch. Neither the
client's secret access key / session token nor the task role's (the
credentials the emulated ECS agent served the workers) may appear there,
nor the variable names ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``.
The worker security group takes no inbound traffic and the bucket blocks
every kind of public access.
"""

from __future__ import annotations

import json
import logging

import pytest
from _support import wait_for

import starburst
from starburst.aws import provision
from starburst.aws.clients import client

#: Distinctive client credentials (moto accepts any): a leak of either is
#: found as a plain substring anywhere, unlike the emulator's default "testing".
CLIENT_SECRET = "sbSecretKEY0leakcheck0aaaaaaaaaaaaaaaaaaa"
CLIENT_TOKEN = "sbSessionTOKEN0leakcheck0bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
EMULATOR_SECRET = "testing"  # the emulator's own fake AWS_SECRET_ACCESS_KEY
VARIABLE_NAMES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
PRINTED = "security-check: the task printed this line"
WARNED = "security-check: the task logged this warning"


def _talk(x: int) -> int:
    print(PRINTED, flush=True)
    logging.getLogger("security-check").warning(WARNED)
    return x + 1


def _env_values(entries: list[dict]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in entries or []}


@pytest.fixture
def session(aws, monkeypatch):
    """A finished 2-worker Fargate session and the secrets that must not leak from it."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CLIENT_SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", CLIENT_TOKEN)
    served: list[dict[str, str]] = []
    original = aws.runner._credentials

    def recording(role: str, task_id: str) -> dict[str, str]:
        creds = original(role, task_id)
        served.append(creds)
        return creds

    monkeypatch.setattr(aws.runner, "_credentials", recording)
    settings = starburst.Settings(lease=4.0, heartbeat=1.0, poll=0.05, idle_timeout=30,
                                  client_heartbeat=1.0, timeout_grace=1.0)
    with starburst.Executor(backend="fargate", workers=2, settings=settings,
                            progress=False) as ex:
        assert list(ex.map(_talk, range(6))) == list(range(1, 7))
        session_id = ex.session_id
    wait_for(lambda: not aws.runner.pids(), timeout=30, what="the workers to exit")
    secrets = {CLIENT_SECRET, CLIENT_TOKEN}
    for creds in served:
        secrets.update({creds["SecretAccessKey"], creds["Token"]})
    return {"id": session_id, "secrets": secrets, "served": served}


def _log_messages(aws) -> list[str]:
    logs = client("logs")
    pages = logs.get_paginator("filter_log_events").paginate(
        logGroupName=aws.shared.log_group)
    return [e["message"] for page in pages for e in page["events"]]


def _assert_clean(where: str, text: str, secrets: set[str]) -> None:
    for secret in secrets:
        assert secret not in text, f"a secret value appears in {where}"
    for name in VARIABLE_NAMES:
        assert name not in text, f"{name} appears in {where}"


def test_no_credentials_in_task_definitions_overrides_or_logs(aws, session):
    assert session["served"], "the task role's credentials were never served to a worker"
    ecs = client("ecs")
    cluster = aws.shared.cluster
    # task definitions: every registered one, every revision
    arns = [a for page in ecs.get_paginator("list_task_definitions").paginate()
            for a in page["taskDefinitionArns"]]
    assert arns
    for arn in arns:
        definition = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
        _assert_clean(f"task definition {arn}", json.dumps(definition, default=str),
                      session["secrets"])
        for container in definition["containerDefinitions"]:
            env = _env_values(container.get("environment"))
            assert EMULATOR_SECRET not in env.values(), (arn, env)
            assert "AWS_ACCESS_KEY_ID" not in env
    # the session's tasks: their overrides (and everything else described)
    task_arns = [a for status in ("RUNNING", "STOPPED") for page in
                 ecs.get_paginator("list_tasks").paginate(cluster=cluster, desiredStatus=status)
                 for a in page["taskArns"]]
    assert len(task_arns) >= 2
    tasks = []
    for i in range(0, len(task_arns), 100):
        tasks += ecs.describe_tasks(cluster=cluster, tasks=task_arns[i:i + 100])["tasks"]
    assert tasks
    for task in tasks:
        _assert_clean(f"task {task['taskArn']}", json.dumps(task, default=str),
                      session["secrets"])
        for override in task.get("overrides", {}).get("containerOverrides", []):
            env = _env_values(override.get("environment"))
            assert EMULATOR_SECRET not in env.values(), env
            assert "AWS_ACCESS_KEY_ID" not in env
    assert any(session["id"] in json.dumps(t["overrides"]) for t in tasks), \
        "the overrides scanned are not this session's"
    # CloudWatch: the run's worker output did arrive, and holds no secret. (The
    # task's warning is forwarded to the client's logging, not written to the
    # worker's output, so only its print is awaited here.)
    messages = wait_for(
        lambda: (m := _log_messages(aws)) and any(PRINTED in x for x in m)
        and any(session["id"] in x for x in m) and m,
        timeout=30, what="the task's printed line in CloudWatch")
    text = "\n".join(messages)
    _assert_clean(f"the log group {aws.shared.log_group}", text, session["secrets"])


def test_worker_security_group_has_no_ingress(aws):
    ec2 = client("ec2")
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    assert len(vpcs) == 1
    groups = ec2.describe_security_groups(Filters=[
        {"Name": "group-name", "Values": [provision.SECURITY_GROUP]},
        {"Name": "vpc-id", "Values": [vpcs[0]["VpcId"]]}])["SecurityGroups"]
    assert len(groups) == 1
    assert groups[0]["IpPermissions"] == []
    assert aws.shared.network.security_groups == (groups[0]["GroupId"],) or \
        groups[0]["GroupId"] in aws.shared.network.security_groups


def test_bucket_blocks_all_public_access(aws):
    s3 = client("s3")
    bucket = aws.shared.bucket
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == {"BlockPublicAcls": True, "IgnorePublicAcls": True,
                     "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
    grants = s3.get_bucket_acl(Bucket=bucket)["Grants"]
    public = ("http://acs.amazonaws.com/groups/global/AllUsers",
              "http://acs.amazonaws.com/groups/global/AuthenticatedUsers")
    assert not [g for g in grants if g["Grantee"].get("URI") in public]
