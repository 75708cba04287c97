"""The request audit of the emulated AWS (:mod:`starburst.testing.audit`).

A worker's S3, SQS and KMS requests are held to its role's policies (and the
bucket policy, and the bucket's SSE-KMS key) as AWS holds them; every
request the user's code makes is recorded, and a realistic user flow is
checked against :func:`starburst.aws.policies.user_policy`.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from _support import wait_for
from botocore.exceptions import ClientError
from click.testing import CliRunner

import starburst
from starburst.aws import policies, provision, session_role
from starburst.aws.clients import client
from starburst.aws.config import load_config
from starburst.cli import main
from starburst.testing import EmulatedAws
from starburst.testing.audit import Call
from starburst.testing.iam import Request, evaluate

ACCOUNT = "123456789012"
_SETTINGS = starburst.Settings(poll=0.05, idle_timeout=30)


def _try(fn: Any) -> str:
    try:
        fn()
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return "ok"


def _worker_probe(bucket: str, prefix: str) -> dict[str, str]:
    """Runs in a worker, with its session role's credentials: what may it touch?"""
    import os

    s3 = boto3.client("s3")
    sqs = boto3.client("sqs")
    kms = boto3.client("kms")
    mine = f"{prefix}/sessions/{os.environ['STARBURST_SESSION']}/x"
    return {
        "put-own-prefix": _try(lambda: s3.put_object(Bucket=bucket, Key=mine, Body=b"x")),
        "get-own-prefix": _try(lambda: s3.get_object(Bucket=bucket, Key=mine)),
        "put-other-session": _try(lambda: s3.put_object(
            Bucket=bucket, Key=f"{prefix}/sessions/sb-another/x", Body=b"x")),
        "put-elsewhere": _try(lambda: s3.put_object(Bucket=bucket, Key="elsewhere/x",
                                                    Body=b"x")),
        "list-elsewhere": _try(lambda: s3.list_objects_v2(Bucket=bucket, Prefix="elsewhere/")),
        "delete-many-elsewhere": _try(lambda: s3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": mine}, {"Key": "elsewhere/y"}]})),
        "create-queue": _try(lambda: sqs.create_queue(QueueName="starburst-mine")),
        "kms-direct": _try(lambda: kms.generate_data_key(KeyId="alias/aws/s3",
                                                         KeySpec="AES_256")),
    }


def test_a_worker_is_held_to_its_task_role(aws: EmulatedAws) -> None:
    bucket, prefix = aws.shared.bucket, aws.shared.prefix.strip("/")
    denied = aws.audit.denied
    with starburst.Executor(backend="fargate", workers=1, settings=_SETTINGS,
                            progress=False) as ex:
        seen = ex.submit(_worker_probe, bucket, prefix).result(timeout=60)
    assert seen == {"put-own-prefix": "ok", "get-own-prefix": "ok",
                    "put-other-session": "AccessDenied", "put-elsewhere": "AccessDenied",
                    "list-elsewhere": "AccessDenied",
                    "delete-many-elsewhere": "AccessDenied", "create-queue": "AccessDenied",
                    "kms-direct": "AccessDeniedException"}
    assert aws.audit.denied - denied >= 6
    refused = [c for c in aws.audit.worker_calls() if c.decision and not c.decision.allowed]
    assert {c.action for c in refused} >= {"s3:PutObject", "s3:ListBucket", "s3:DeleteObject",
                                           "sqs:CreateQueue", "kms:GenerateDataKey"}
    own = f"arn:aws:iam::{ACCOUNT}:role/{session_role.session_role_name(ex.session_id)}"
    assert {c.principal for c in refused} == {own}


def _as_task_role(aws: EmulatedAws) -> Any:
    """An S3 client with the credentials ECS gives a worker (the task role, assumed)."""
    creds = client("sts").assume_role(RoleArn=aws.shared.roles.task,
                                      RoleSessionName="probe")["Credentials"]
    return boto3.client("s3", aws_access_key_id=creds["AccessKeyId"],
                        aws_secret_access_key=creds["SecretAccessKey"],
                        aws_session_token=creds["SessionToken"], endpoint_url=aws.endpoint,
                        region_name=aws.region)


def _write_task_policy(aws: EmulatedAws, **kms: str) -> None:
    doc = policies.task_policy(part="aws", account=ACCOUNT, bucket=aws.shared.bucket,
                               prefix=aws.shared.prefix, region=aws.region, **kms)
    client("iam").put_role_policy(RoleName=provision.TASK_ROLE,
                                  PolicyName=provision.data_policy_name(aws.shared.bucket),
                                  PolicyDocument=json.dumps(doc))


def test_sse_kms_needs_the_data_key_grant_on_that_key(aws: EmulatedAws) -> None:
    kms = client("kms")
    key = kms.create_key()["KeyMetadata"]["Arn"]
    other = kms.create_key()["KeyMetadata"]["Arn"]
    bucket, key_name = aws.shared.bucket, f"{aws.shared.prefix.strip('/')}/sessions/k/x"
    client("s3").put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                                          "KMSMasterKeyID": key}}]})
    s3 = _as_task_role(aws)
    put = lambda: s3.put_object(Bucket=bucket, Key=key_name, Body=b"x")  # noqa: E731
    assert _try(put) == "AccessDenied"  # the provisioned policy has no data key grant
    _write_task_policy(aws, kms_key=other)
    assert _try(put) == "AccessDenied"  # a grant on another key is no grant
    refused = aws.audit.worker_calls()[-1]
    assert refused.decision is not None
    assert "kms:GenerateDataKey" in str(refused.decision.policy)
    _write_task_policy(aws, kms_key=key)
    assert _try(put) == "ok"
    get = lambda: s3.get_object(Bucket=bucket, Key=key_name)  # noqa: E731
    assert _try(get) == "ok"
    _write_task_policy(aws, kms_key=other)  # reads need Decrypt on the object's own key
    assert _try(get) == "AccessDenied"
    assert "kms:Decrypt" in str(aws.audit.worker_calls()[-1].decision)
    assert _try(lambda: s3.head_object(Bucket=bucket, Key=key_name)) == "ok"  # no KMS


def test_the_bucket_policy_applies_to_workers(aws: EmulatedAws) -> None:
    bucket, prefix = aws.shared.bucket, aws.shared.prefix
    key_name = f"{prefix.strip('/')}/sessions/w/x"
    s3 = _as_task_role(aws)
    client("s3").put_bucket_policy(Bucket=bucket, Policy=json.dumps(policies.bucket_policy(
        bucket, prefix, part="aws", writers=[f"arn:aws:iam::{ACCOUNT}:role/someone-else"])))
    assert _try(lambda: s3.put_object(Bucket=bucket, Key=key_name, Body=b"x")) == "AccessDenied"
    refused = aws.audit.worker_calls()[-1]
    assert refused.decision is not None
    assert refused.decision.sid == "RunPrefixWritersOnly"
    client("s3").put_bucket_policy(Bucket=bucket, Policy=json.dumps(policies.bucket_policy(
        bucket, prefix, part="aws", writers=[aws.shared.roles.task])))
    assert _try(lambda: s3.put_object(Bucket=bucket, Key=key_name, Body=b"x")) == "ok"


def test_sessions_run_under_the_bucket_policy_setup_writes(aws: EmulatedAws) -> None:
    """moto's own check ignores conditions, so setup's TLS-only Deny denied every write;
    the audit evaluates them: the writers (workers, the user) write, nobody else."""
    caller = client("sts").get_caller_identity()["Arn"]
    writers = [aws.shared.roles.task, policies.session_roles_writer(part="aws", account=ACCOUNT),
               *policies.principal_arn(caller)]
    client("s3").put_bucket_policy(Bucket=aws.shared.bucket, Policy=json.dumps(
        policies.bucket_policy(aws.shared.bucket, aws.shared.prefix, part="aws",
                               writers=writers)))
    denied = aws.audit.denied
    with starburst.Executor(backend="fargate", workers=1, settings=_SETTINGS,
                            progress=False) as ex:
        assert list(ex.map(_greet, range(3))) == [1, 2, 3]
    assert aws.audit.denied == denied
    assert any(c.decision and c.decision.allowed for c in aws.audit.user_calls())


# -- the user's side ----------------------------------------------------------------
#: User-side calls the user policy leaves out on purpose, because the code takes
#: their denial as an answer (and why).
_DENIAL_IS_AN_ANSWER = {
    "batch:DescribeJobQueues": "ops.gpu_queues: no GPU policy, no GPU workers (a warning)"}


def _not_allowed(calls: list[Call], policy: dict[str, Any]) -> list[str]:
    """Each distinct user action the policy does not allow, with its resource."""
    missing = []
    for call in calls:
        if call.action in _DENIAL_IS_AN_ANSWER:
            continue
        request = Request(call.action, call.resource, f"arn:aws:iam::{ACCOUNT}:user/alice",
                          call.context)
        if not evaluate(request, [policy]).allowed:
            missing.append(f"{call.action} on {call.resource} ({call.operation})")
    return sorted(set(missing))


def _greet(x: int) -> int:
    print(f"hello from task {x}", flush=True)
    return x + 1


def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def after_setup(aws: EmulatedAws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The configuration `starburst setup` leaves: starburst's roles named, so a session
    only uses them (a user limited to the user policy cannot write role policies)."""
    config = tmp_path / "config.toml"
    config.write_text(aws.config_path.read_text(encoding="utf-8")
                      + f'execution_role_arn = "{aws.shared.roles.execution}"\n'
                      + f'task_role_arn = "{aws.shared.roles.task}"\n', encoding="utf-8")
    monkeypatch.setenv("STARBURST_CONFIG", str(config))
    # Setup also writes the session roles' permissions boundary.
    session_role.ensure_session_boundary(region=aws.region, bucket=aws.shared.bucket,
                                         prefix=aws.shared.prefix, update=True)
    return config


def test_every_action_of_a_user_flow_is_in_the_user_policy(aws: EmulatedAws,
                                                          after_setup: Path) -> None:
    aws.audit.reset()
    with starburst.Executor(backend="fargate", workers=2, settings=_SETTINGS,
                            progress=False) as ex:
        assert list(ex.map(_greet, range(4))) == [1, 2, 3, 4]
        sid = ex.session_id
    detached = starburst.Executor(backend="fargate", workers=1, detached=True,
                                  settings=_SETTINGS, progress=False)
    detached.submit(_greet, 10)
    detached.shutdown()
    with starburst.attach(detached.session_id, backend="fargate", progress=False,
                          settings=_SETTINGS) as handle:
        assert handle.results(timeout=60) == [11]
    wait_for(lambda: not aws.runner.pids(), timeout=20, what="the tasks to exit")
    _cli("status", sid)
    _cli("status")
    wait_for(lambda: "hello from task" in _cli("logs", sid), timeout=20,
             what="the tasks' output in CloudWatch Logs")
    _cli("cost", sid, "--json")
    calls = aws.audit.user_calls()
    config = load_config()
    policy = policies.user_policy(part="aws", region=aws.region, account=ACCOUNT,
                                  bucket=aws.shared.bucket, prefix=aws.shared.prefix,
                                  cluster=aws.shared.cluster, repository=config.ecr_repository,
                                  log_group=aws.shared.log_group)
    actions = {c.action for c in calls}
    assert {"ecs:RunTask", "sqs:CreateQueue", "s3:PutObject", "logs:GetLogEvents",
            "ecs:DescribeTasks"} <= actions  # the flow really ran through all of it
    missing = _not_allowed(calls, policy)
    assert missing == [], missing
    # The check can fail: without one action the code calls, it names that action.
    for action in ("sqs:CreateQueue", "logs:GetLogEvents", "ecs:StopTask", "ecs:ListClusters"):
        narrower = copy.deepcopy(policy)
        for statement in narrower["Statement"]:
            listed = statement["Action"] if isinstance(statement["Action"], list) else [
                statement["Action"]]
            statement["Action"] = [a for a in listed if a != action]
        assert any(line.startswith(f"{action} on ") for line in _not_allowed(calls, narrower))
