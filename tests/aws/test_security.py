"""No credential leaks and a locked-down footprint, checked on a real (emulated) run.

A small Fargate session runs in the emulated AWS, its task printing a line
and logging a warning; then every place a credential could end up in AWS is
scanned: the registered task definitions, the RunTask overrides of the
session's tasks and the worker log events in CloudWatch. Neither the
client's secret access key / session token nor the task role's (the
credentials the emulated ECS agent served the workers) may appear there,
nor the variable names ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``,
nor the session key (hex or base64) that tags the session's messages, which
is also looked for in every queue message the emulated SQS received.
The worker security group takes no inbound traffic and the bucket blocks
every kind of public access.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import boto3
import pytest
from _support import wait_for
from botocore.exceptions import ClientError
from moto.sqs.models import Queue

import starburst
from starburst.aws import policies, provision, session_key
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
    bodies: list[str] = []  # every SQS message body the emulated AWS received
    add_message = Queue.add_message

    def keep(queue: Queue, message: Any) -> None:
        bodies.append(str(message.body))
        add_message(queue, message)

    monkeypatch.setattr(Queue, "add_message", keep)
    settings = starburst.Settings(lease=4.0, heartbeat=1.0, poll=0.05, idle_timeout=30,
                                  client_heartbeat=1.0, timeout_grace=1.0)
    with starburst.Executor(backend="fargate", workers=2, settings=settings,
                            progress=False) as ex:
        assert list(ex.map(_talk, range(6))) == list(range(1, 7))
        session_id = ex.session_id
        key = ex._client.key
    wait_for(lambda: not aws.runner.pids(), timeout=30, what="the workers to exit")
    secrets = {CLIENT_SECRET, CLIENT_TOKEN, *_spellings(key)}
    for creds in served:
        secrets.update({creds["SecretAccessKey"], creds["Token"]})
    return {"id": session_id, "secrets": secrets, "served": served, "key": key,
            "bodies": bodies}


def _spellings(key: bytes) -> set[str]:
    """The session key as text could carry it: hex (either case), base64 (both alphabets).
    (Its raw bytes are searched where bytes are: the decoded queue bodies.)"""
    return {key.hex(), key.hex().upper(), base64.b64encode(key).decode(),
            base64.urlsafe_b64encode(key).decode()}


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


def test_the_session_key_appears_in_no_description_override_log_or_message(aws, session):
    # The task definitions, task descriptions and logs are scanned by the test
    # above with the key's spellings among the secrets; here: the queues. Every
    # message the emulated SQS received, as sent (base64 text) and decoded.
    key = session["key"]
    assert len(session["bodies"]) >= 6, "the session's messages were not captured"
    for body in session["bodies"]:
        _assert_clean("a queue message", body, session["secrets"])
        raw = base64.b64decode(body) if body != "-" else b""
        assert key not in raw, "the session key's bytes appear in a queue message"
        assert key.hex().encode() not in raw
    # The session's secret and its own task definitions are gone with it.
    sm = client("secretsmanager")
    names = [s["Name"] for s in sm.list_secrets()["SecretList"]]
    assert session_key.secret_name(session["id"]) not in names
    ecs = client("ecs")
    active = [a for page in ecs.get_paginator("list_task_definitions").paginate(status="ACTIVE")
              for a in page["taskDefinitionArns"]]
    assert not [a for a in active if session["id"] in a]


def test_a_worker_cannot_read_any_session_key(aws, session):
    # The task role (worker code) has no Secrets Manager grant: in the emulated
    # IAM, which enforces Secrets Manager for assumed roles, it is denied, while
    # the execution role (what the ECS agent injects the key with) is allowed.
    sm = client("secretsmanager")
    arn = sm.create_secret(Name=session_key.secret_name("sb-other-session"),
                           SecretString="00" * 32)["ARN"]
    try:
        for role, allowed in ((aws.shared.roles.task, False),
                              (aws.shared.roles.execution, True)):
            creds = aws.runner._credentials(role, "probe-task")
            assumed = boto3.client(
                "secretsmanager", region_name=aws.region, endpoint_url=aws.endpoint,
                aws_access_key_id=creds["AccessKeyId"],
                aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["Token"])
            try:
                if allowed:
                    assert assumed.get_secret_value(SecretId=arn)["SecretString"] == "00" * 32
                else:
                    with pytest.raises(ClientError, match="AccessDenied"):
                        assumed.get_secret_value(SecretId=arn)
            finally:
                assumed.close()
    finally:
        sm.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)


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


def test_workers_that_cannot_get_the_session_key_break_the_run_with_the_cause(
        aws, monkeypatch):
    # An execution role without the Secrets Manager grant (an account set up by an
    # older starburst, say): every task fails to start (ECS: TaskFailedToStart,
    # exit code None). Before, such exits did not count as futile and the client
    # relaunched workers forever; now the run breaks and says why.
    default = policies.default_execution_policy

    def without_keys(**kw: Any) -> dict[str, Any]:
        doc = default(**kw)
        doc["Statement"] = [s for s in doc["Statement"] if s.get("Sid") != "InjectSessionKeys"]
        return doc

    monkeypatch.setattr(policies, "default_execution_policy", without_keys)
    settings = starburst.Settings(lease=4.0, heartbeat=1.0, poll=0.05, idle_timeout=30,
                                  client_heartbeat=1.0)
    with pytest.raises(starburst.ExecutorBroken, match="unable to pull secrets"), \
            starburst.Executor(backend="fargate", workers=1, settings=settings,
                               progress=False) as ex:
        ex.submit(abs, -1).result(timeout=120)
    assert ex.status().workers == 0


def test_an_attach_that_fails_keeps_the_session_key_for_the_next_one(aws, monkeypatch):
    # A failed attach (here: its adoption of the session raises) used to close the
    # backend the normal way, deleting the detached session's key secret and role:
    # no later attach could read its results.
    from starburst import client as client_module

    settings = starburst.Settings(lease=4.0, heartbeat=1.0, poll=0.05, idle_timeout=30,
                                  client_heartbeat=1.0)
    ex = starburst.Executor(backend="fargate", workers=1, detached=True, settings=settings,
                            progress=False)
    ex.submit(abs, -7)
    ex.shutdown()
    session_id = ex.session_id
    adopt = client_module.Client._adopt

    def broken(self: Any) -> int:
        raise RuntimeError("adoption failed")

    monkeypatch.setattr(client_module.Client, "_adopt", broken)
    with pytest.raises(RuntimeError, match="adoption failed"):
        starburst.attach(session_id, backend="fargate", progress=False, settings=settings)
    assert session_id in session_key.key_secret_sessions(region=aws.region)
    monkeypatch.setattr(client_module.Client, "_adopt", adopt)
    with starburst.attach(session_id, backend="fargate", progress=False,
                          settings=settings) as handle:
        assert handle.results(timeout=120) == [7]
    assert session_id not in session_key.key_secret_sessions(region=aws.region)


def test_an_attach_refuses_a_record_that_names_another_secret(aws):
    region = aws.region
    name = session_key.secret_name("sb-x")
    arn = f"arn:aws:secretsmanager:{region}:123456789012:secret:{name}-AbCdEf"
    assert session_key.attach_secret("", "sb-x", region=region) == name
    assert session_key.attach_secret(arn, "sb-x", region=region) == arn
    for forged in (f"arn:aws:secretsmanager:{region}:123456789012:secret:attacker-AbCdEf",
                   arn.replace(region, "eu-west-1"), session_key.secret_name("sb-other"),
                   f"arn:aws:secretsmanager:{region}:123456789012:secret:{name}-AbCdEf-x"):
        with pytest.raises(starburst.ConfigurationError, match="not this session's"):
            session_key.attach_secret(forged, "sb-x", region=region)
