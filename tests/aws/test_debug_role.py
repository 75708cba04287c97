"""Debug sessions' workers run as ``starburst-task-debug``: ``starburst-task`` plus the
four ECS Exec channel actions (which IAM takes only on ``*``), so that
``aws ecs execute-command`` can reach a kept worker while ordinary workers keep
the narrow role. On the emulated AWS; no task runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from starburst.admin import doctor
from starburst.aws import policies, policy_lint, provision
from starburst.aws.clients import client
from starburst.aws.config import load_config
from starburst.backends.base import Session
from starburst.backends.fargate import FargateBackend
from starburst.exceptions import ConfigurationError
from starburst.options import ExecutorOptions


@pytest.fixture
def open_session(aws: Any) -> Iterator[Any]:
    """Open Fargate sessions (``debug`` and other options); close them after the test."""
    opened: list[Session] = []

    def open_(name: str, **options: Any) -> Session:
        session = FargateBackend.open_session(session=name, options=ExecutorOptions.build(
            backend="fargate", image="example/worker:1", **options))
        opened.append(session)
        return session

    yield open_
    for session in opened:
        session.backend.close()
        session.transport.destroy()
        session.transport.close()


def _task_role(session: Session) -> str:
    backend = session.backend
    assert isinstance(backend, FargateBackend)
    [definition] = backend._definitions.values()
    found = client("ecs").describe_task_definition(taskDefinition=definition)
    return str(found["taskDefinition"]["taskRoleArn"])


def _policy(role: str, bucket: str) -> dict[str, Any]:
    doc: Any = client("iam").get_role_policy(
        RoleName=role, PolicyName=provision.data_policy_name(bucket))["PolicyDocument"]
    return doc if isinstance(doc, dict) else json.loads(doc)


def test_only_debug_sessions_run_as_the_debug_role(aws, open_session):
    plain = open_session("sb-debug-role-off")
    debug = open_session("sb-debug-role-on", debug=True)
    assert _task_role(plain).endswith(f":role/{provision.TASK_ROLE}")
    assert _task_role(debug).endswith(f":role/{provision.DEBUG_TASK_ROLE}")
    assert not any("ECS Exec" in note for note in debug.notes)
    narrow, wide = (_policy(r, aws.shared.bucket)
                    for r in (provision.TASK_ROLE, provision.DEBUG_TASK_ROLE))
    # Exactly the four ECS Exec actions more, on "*" (IAM accepts nothing else) ...
    extra = [st for st in wide["Statement"] if st not in narrow["Statement"]]
    assert extra == [{"Sid": "EcsExecChannels", "Effect": "Allow",
                      "Action": list(policies.ECS_EXEC_ACTIONS), "Resource": "*"}]
    assert len(wide["Statement"]) == len(narrow["Statement"]) + 1
    assert not set(policies.ECS_EXEC_ACTIONS) & set(policy_lint.actions_of(narrow))
    # ... and the policy check lets them through, as unscopable.
    assert policy_lint.wildcard_writes(wide) == []


def test_a_task_role_of_your_own_is_kept_and_the_note_says_what_ecs_exec_needs(
        aws, open_session):
    mine = "arn:aws:iam::123456789012:role/my-workers"
    session = open_session("sb-debug-role-own", debug=True, task_role_arn=mine)
    assert _task_role(session) == mine
    [note] = [n for n in session.notes if "ECS Exec" in n]
    assert mine in note
    assert all(action in note for action in policies.ECS_EXEC_ACTIONS)


def _deny(monkeypatch: pytest.MonkeyPatch, *operations: str) -> None:
    """Make IAM refuse ``operations`` (AccessDenied), as for an identity limited to
    running sessions after `starburst setup`."""
    real = provision.client

    def refuse(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        return AWSResponse("http://127.0.0.1/", 403, {}, None), {"Error": {
            "Code": "AccessDenied", "Message": "not authorized"}}

    def denying(service: str, **kw: Any) -> Any:
        made = real(service, **kw)  # type: ignore[call-overload]
        for operation in operations:
            made.meta.events.register(f"before-call.{service}.{operation}", refuse)
        return made

    monkeypatch.setattr(provision, "client", denying)


def test_an_existing_debug_role_is_used_when_its_policy_may_not_be_written(aws, monkeypatch):
    kw = {"region": aws.region, "bucket": aws.shared.bucket, "prefix": aws.shared.prefix}
    made, _ = provision.ensure_debug_role(aws.shared.roles, **kw)
    _deny(monkeypatch, "PutRolePolicy")
    assert provision.ensure_debug_role(aws.shared.roles, **kw) == (made, "")


def test_a_missing_debug_role_that_cannot_be_created_says_run_setup(aws, monkeypatch):
    _delete_role(provision.DEBUG_TASK_ROLE)
    _deny(monkeypatch, "CreateRole", "PutRolePolicy")
    with pytest.raises(ConfigurationError, match=r"debug=True runs workers as the IAM role "
                                                 r"starburst-task-debug .*run `starburst "
                                                 r"setup` \(it creates the role\).*debug=False"):
        provision.ensure_debug_role(aws.shared.roles, region=aws.region,
                                    bucket=aws.shared.bucket, prefix=aws.shared.prefix)


def _delete_role(name: str) -> None:
    iam = client("iam")
    try:
        policies_of = iam.list_role_policies(RoleName=name)["PolicyNames"]
    except iam.exceptions.NoSuchEntityException:
        return
    for policy in policies_of:
        iam.delete_role_policy(RoleName=name, PolicyName=policy)
    iam.delete_role(RoleName=name)


def test_doctor_fails_a_worker_role_that_grants_ecs_exec(aws):
    def check() -> doctor.Check:
        return doctor._guard("iam roles", "fix", lambda: doctor._roles(aws.region,
                                                                       load_config({})))

    iam = client("iam")
    # As `starburst setup` scopes it (a session-made execution role is wider).
    iam.put_role_policy(RoleName=provision.EXECUTION_ROLE, PolicyName="starburst-execution",
                        PolicyDocument=json.dumps(policies.execution_policy(
                            part="aws", region=aws.region, account="123456789012",
                            repository="starburst", log_group=aws.shared.log_group)))
    provision.ensure_debug_role(aws.shared.roles, region=aws.region, bucket=aws.shared.bucket,
                                prefix=aws.shared.prefix)
    assert check().ok, check()  # the debug role may have them
    wide = policies.debug_task_policy(part="aws", account="123456789012",
                                      bucket=aws.shared.bucket, prefix=aws.shared.prefix,
                                      region=aws.region)
    iam.put_role_policy(RoleName=provision.TASK_ROLE, PolicyName="widened",
                        PolicyDocument=json.dumps(wide))
    found = check()
    assert not found.ok
    assert (f"IAM role {provision.TASK_ROLE}, policy widened: it grants ECS Exec's "
            f"ssmmessages actions, which belong to {provision.DEBUG_TASK_ROLE}") in found.detail
