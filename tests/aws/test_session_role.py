"""Per-session task roles in the emulated AWS: a worker of one session reaches only
its own session.

What is proven here, and how:

* in the emulator (the audit evaluates every S3 and SQS request of an
  assumed role against the role's inline policies, conditions included):
  credentials of session A's role read and write A's queues and objects,
  and are refused B's, even where B's id starts with A's;
* in the emulator: the role is created with the boundary, tagged, and gone
  after :func:`delete_session_role`; `starburst cleanup` removes the roles of
  ended sessions and keeps those of live ones;
* by policy documents (tests/test_policies.py), since moto applies neither
  permissions boundaries nor IAM's own conditions: the boundary caps a role
  whatever its inline policy says, and the user policy lets a user create
  ``starburst-session-*`` roles only with that boundary.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from starburst.aws import session_role
from starburst.aws.clients import client
from starburst.testing import EmulatedAws
from starburst.transport.aws import create_session_queues
from starburst.wire.keys import payload_key, result_key

A = "sb-20261204-120000-aaaaaa"
B = f"{A}-b"  # an id that starts with A's: no prefix of A's may reach it


def _as_role(aws: EmulatedAws, arn: str, service: str) -> Any:
    creds = client("sts").assume_role(RoleArn=arn, RoleSessionName="probe")["Credentials"]
    return boto3.client(service, aws_access_key_id=creds["AccessKeyId"],
                        aws_secret_access_key=creds["SecretAccessKey"],
                        aws_session_token=creds["SessionToken"], endpoint_url=aws.endpoint,
                        region_name=aws.region)


def _code(call: Any) -> str:
    try:
        call()
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return "ok"


def _key(aws: EmulatedAws, rest: str) -> str:
    prefix = aws.shared.prefix.strip("/")
    return f"{prefix}/{rest}" if prefix else rest


@pytest.fixture
def two_sessions(aws: EmulatedAws) -> dict[str, Any]:
    made: dict[str, Any] = {}
    for sid in (A, B):
        arn = session_role.create_session_role(sid, region=aws.region, bucket=aws.shared.bucket,
                                               prefix=aws.shared.prefix)
        queues = create_session_queues(sid, region=aws.region, max_receives=10)
        client("s3").put_object(Bucket=aws.shared.bucket,
                                Key=_key(aws, payload_key(sid, 1)), Body=b"payload")
        made[sid] = {"role": arn, "queues": queues}
    return made


def test_a_session_role_reaches_its_own_queues_and_objects_only(aws, two_sessions):
    role = two_sessions[A]["role"]
    assert role.endswith(f":role/starburst-session-{A}")
    s3, sqs = _as_role(aws, role, "s3"), _as_role(aws, role, "sqs")
    bucket = aws.shared.bucket
    mine, theirs = two_sessions[A]["queues"], two_sessions[B]["queues"]
    denied = aws.audit.denied
    # its own session: payloads read, results written and deleted, queues used
    assert _code(lambda: s3.get_object(Bucket=bucket, Key=_key(aws, payload_key(A, 1)))) == "ok"
    assert _code(lambda: s3.put_object(Bucket=bucket, Key=_key(aws, result_key(A, 1, "x")),
                                       Body=b"r")) == "ok"
    assert _code(lambda: s3.list_objects_v2(
        Bucket=bucket, Prefix=_key(aws, f"sessions/{A}/results/"))) == "ok"
    assert _code(lambda: s3.delete_object(Bucket=bucket,
                                          Key=_key(aws, result_key(A, 1, "x")))) == "ok"
    for url in (mine.tasks, mine.results):
        assert _code(lambda url=url: sqs.send_message(QueueUrl=url, MessageBody="m")) == "ok"
        assert _code(lambda url=url: sqs.receive_message(QueueUrl=url)) == "ok"
    # the other session: nothing
    assert _code(lambda: s3.get_object(Bucket=bucket,
                                       Key=_key(aws, payload_key(B, 1)))) == "AccessDenied"
    assert _code(lambda: s3.put_object(Bucket=bucket, Key=_key(aws, payload_key(B, 1)),
                                       Body=b"forged")) == "AccessDenied"
    assert _code(lambda: s3.list_objects_v2(
        Bucket=bucket, Prefix=_key(aws, f"sessions/{B}/"))) == "AccessDenied"
    assert _code(lambda: s3.list_objects_v2(
        Bucket=bucket, Prefix=_key(aws, "sessions/"))) == "AccessDenied"
    for url in (theirs.tasks, theirs.results, theirs.dead):
        assert _code(lambda url=url: sqs.send_message(QueueUrl=url, MessageBody="forged")) \
            == "AccessDenied"
        assert _code(lambda url=url: sqs.receive_message(QueueUrl=url)) == "AccessDenied"
    assert aws.audit.denied - denied == 10
    # and B's role is held to B the same way
    other = _as_role(aws, two_sessions[B]["role"], "s3")
    assert _code(lambda: other.get_object(Bucket=bucket,
                                          Key=_key(aws, payload_key(A, 1)))) == "AccessDenied"


def test_the_role_carries_the_boundary_and_the_session_tag_and_goes_at_the_end(aws):
    arn = session_role.create_session_role(A, region=aws.region, bucket=aws.shared.bucket,
                                           prefix=aws.shared.prefix)
    iam = client("iam")
    role = iam.get_role(RoleName=session_role.session_role_name(A))["Role"]
    assert role["Arn"] == arn
    assert role["PermissionsBoundary"]["PermissionsBoundaryArn"] == \
        session_role.boundary_arn(aws.shared.bucket, region=aws.region)
    tags = {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=role["RoleName"])["Tags"]}
    assert tags == {"starburst:session": A, "starburst:managed": "true"}
    assert session_role.create_session_role(A, region=aws.region, bucket=aws.shared.bucket,
                                            prefix=aws.shared.prefix) == arn  # idempotent
    assert session_role.delete_session_role(A, region=aws.region) is True
    assert session_role.delete_session_role(A, region=aws.region) is False  # already gone
    with pytest.raises(ClientError):
        iam.get_role(RoleName=session_role.session_role_name(A))


def test_a_session_id_that_cannot_name_a_role_is_refused(aws):
    from starburst.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="64"):
        session_role.session_role_name("x" * 60)


def test_a_session_role_gets_the_buckets_kms_key_and_writes_under_sse_kms(aws):
    key = client("kms").create_key()["KeyMetadata"]["Arn"]
    client("s3").put_bucket_encryption(Bucket=aws.shared.bucket,
                                       ServerSideEncryptionConfiguration={"Rules": [{
                                           "ApplyServerSideEncryptionByDefault": {
                                               "SSEAlgorithm": "aws:kms",
                                               "KMSMasterKeyID": key}}]})
    assert session_role.bucket_kms_key(aws.shared.bucket, region=aws.region) == key
    arn = session_role.create_session_role(A, region=aws.region, bucket=aws.shared.bucket,
                                           prefix=aws.shared.prefix)
    s3 = _as_role(aws, arn, "s3")
    put = _key(aws, result_key(A, 1, "k"))
    assert _code(lambda: s3.put_object(Bucket=aws.shared.bucket, Key=put, Body=b"r")) == "ok"
    assert _code(lambda: s3.get_object(Bucket=aws.shared.bucket, Key=put)) == "ok"
    without = session_role.create_session_role(B, region=aws.region, bucket=aws.shared.bucket,
                                               prefix=aws.shared.prefix, discover_kms=False)
    other = _as_role(aws, without, "s3")
    assert _code(lambda: other.put_object(Bucket=aws.shared.bucket,
                                          Key=_key(aws, result_key(B, 1, "k")),
                                          Body=b"r")) == "AccessDenied"


def _no_such_entity() -> ClientError:
    return ClientError({"Error": {"Code": "NoSuchEntity", "Message": "not yet"}}, "GetRole")


def test_the_read_back_retries_no_such_entity_and_gives_up_after_the_wait():
    from starburst.exceptions import CloudError

    answers = [_no_such_entity(), _no_such_entity(), None]
    pauses: list[float] = []

    def ask() -> None:
        answer = answers.pop(0)
        if answer is not None:
            raise answer

    session_role._await_iam(ask, what="IAM role r", wait=60, sleep=pauses.append)
    assert len(pauses) == 2
    assert pauses[1] > pauses[0]  # backing off

    def never() -> None:
        raise _no_such_entity()

    with pytest.raises(CloudError, match="IAM still does not know it"):
        session_role._await_iam(never, what="IAM role r", wait=0.3, sleep=lambda s: None)

    def denied() -> None:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetRole")

    with pytest.raises(ClientError):  # anything else at once
        session_role._await_iam(denied, what="IAM role r", wait=60, sleep=pauses.append)


def _iam_request(service: str, operation: str, params: dict[str, Any],
                 boundaries: dict[str, str]) -> tuple[str, str, dict]:
    """The IAM action, resource and condition keys AWS authorizes a call against."""
    account = "123456789012"
    if service == "s3":
        return f"s3:{operation.replace('BucketEncryption', 'EncryptionConfiguration')}", \
            f"arn:aws:s3:::{params['Bucket']}", {}
    context: dict[str, Any] = {}
    if "PermissionsBoundary" in params:
        context["iam:PermissionsBoundary"] = params["PermissionsBoundary"]
    elif operation in ("PutRolePolicy", "DeleteRolePolicy") and boundaries.get(
            params["RoleName"]):
        # On a role's policies IAM sets the key to the boundary the role has.
        context["iam:PermissionsBoundary"] = boundaries[params["RoleName"]]
    if params.get("Tags"):
        context["aws:TagKeys"] = [t["Key"] for t in params["Tags"]]
    if "RoleName" in params:
        resource = f"arn:aws:iam::{account}:role/{params['RoleName']}"
    elif "PolicyArn" in params:
        resource = params["PolicyArn"]
    elif "PolicyName" in params:  # CreatePolicy
        resource = f"arn:aws:iam::{account}:policy/{params['PolicyName']}"
    else:
        resource = "*"
    return f"iam:{operation}", resource, context


def test_the_user_policy_grants_every_call_a_session_role_makes(aws, monkeypatch):
    """Every IAM and S3 call of create (the boundary existing, as after setup), read-back,
    delete and the cleanup listing, as AWS authorizes it, against the user policy."""
    from starburst.aws import policies
    from starburst.testing.iam import Request, evaluate

    session_role.ensure_session_boundary(region=aws.region, bucket=aws.shared.bucket,
                                         prefix=aws.shared.prefix)  # setup's part
    seen: list[tuple[str, str, dict[str, Any]]] = []
    boundaries: dict[str, str] = {}  # the boundary each role had when it was called
    made = session_role.client
    iam = client("iam")

    def recording(service: str, **kwargs: Any) -> Any:
        one = made(service, **kwargs)

        def note(params: dict[str, Any], model: Any, **_: Any) -> None:
            seen.append((service, model.name, dict(params)))
            name = params.get("RoleName")
            if name and model.name in ("PutRolePolicy", "DeleteRolePolicy"):
                role = iam.get_role(RoleName=name)["Role"]
                boundaries[name] = role.get("PermissionsBoundary", {}).get(
                    "PermissionsBoundaryArn", "")

        one.meta.events.register("before-parameter-build.*.*", note)
        return one

    monkeypatch.setattr(session_role, "client", recording)
    session_role.create_session_role(A, region=aws.region, bucket=aws.shared.bucket,
                                     prefix=aws.shared.prefix)
    session_role.session_roles(region=aws.region)
    session_role.delete_session_role(A, region=aws.region)
    ops = {op for _, op, _ in seen}
    assert {"CreateRole", "PutRolePolicy", "GetRole", "GetRolePolicy", "DeleteRole",
            "DeleteRolePolicy", "ListRoles", "ListRoleTags", "GetPolicy",
            "GetBucketEncryption"} <= ops
    policy = policies.user_policy(part="aws", region=aws.region, account="123456789012",
                                  bucket=aws.shared.bucket, prefix=aws.shared.prefix,
                                  cluster=aws.shared.cluster, repository="starburst",
                                  log_group=aws.shared.log_group)
    user = "arn:aws:iam::123456789012:user/alice"
    requests = [(op, *_iam_request(service, op, params, boundaries))
                for service, op, params in seen]
    # CreateRole with tags is also authorized as iam:TagRole (with aws:TagKeys).
    requests += [(op, "iam:TagRole", resource, context)
                 for op, _, resource, context in requests
                 if op == "CreateRole" and "aws:TagKeys" in context]
    refused = [(op, action, resource) for op, action, resource, context in requests
               if not evaluate(Request(action, resource, user, context), [policy]).allowed]
    assert refused == []
    # ... and a role without the boundary would be refused its policy and its creation
    bare = {"iam:PermissionsBoundary": ""}
    role = f"arn:aws:iam::123456789012:role/{session_role.session_role_name(A)}"
    for action in ("iam:CreateRole", "iam:PutRolePolicy"):
        assert not evaluate(Request(action, role, user, bare), [policy]).allowed


def _big(x: int) -> bytes:
    return bytes(300_000) + bytes([x])  # results too large for a message: stored


def test_a_whole_fargate_session_runs_under_its_own_role_and_nothing_is_refused(aws,
                                                                              monkeypatch):
    """The Fargate backend runs a session's tasks as its own role (its task definition
    copy names it): every request the workers make (payloads, shared objects, results,
    commits, heartbeat reads, queues) is within the session policy, and the role is
    deleted when the session ends."""
    import starburst
    from starburst import executor

    sid = "sb-20261204-130000-cccccc"
    monkeypatch.setattr(executor, "new_session_id", lambda: sid)
    arn = f"arn:aws:iam::123456789012:role/{session_role.session_role_name(sid)}"
    denied = aws.audit.denied
    settings = starburst.Settings(lease=4.0, heartbeat=1.0, poll=0.05, idle_timeout=30,
                                  client_heartbeat=1.0, timeout_grace=1.0)
    big_argument = bytes(200_000)  # a shared object, stored
    with starburst.Executor(backend="fargate", workers=2, settings=settings,
                            progress=False) as ex:
        assert ex.session_id == sid
        assert [len(r) for r in ex.map(_big, range(4))] == [300_001] * 4
        assert ex.submit(len, big_argument).result(timeout=60) == 200_000
    # The execution role reads the session key (the ECS agent's call); the rest is
    # worker code, all of it as the session's own role.
    workers = {c.principal for c in aws.audit.worker_calls()
               if c.service != "secretsmanager"}
    assert workers == {arn}
    assert {c.principal for c in aws.audit.worker_calls()
            if c.service == "secretsmanager"} == {aws.shared.roles.execution}
    assert session_role.session_role_name(sid) not in [
        r.name for r in session_role.session_roles(region=aws.region)]
    assert aws.audit.denied == denied, [
        (c.action, c.resource) for c in aws.audit.worker_calls()
        if c.decision and not c.decision.allowed]
    assert any(c.action == "s3:PutObject" and f"/sessions/{sid}/results/" in c.resource
               for c in aws.audit.worker_calls())


def test_session_task_roles_swaps_starbursts_task_role_and_keeps_your_own(aws):
    from starburst.aws.provision import Roles

    shared = aws.shared.roles
    swapped = session_role.session_task_roles(shared, A, region=aws.region,
                                              bucket=aws.shared.bucket,
                                              prefix=aws.shared.prefix)
    assert swapped.execution == shared.execution
    assert swapped.task.endswith(f":role/starburst-session-{A}")
    debug = session_role.session_task_roles(
        Roles(shared.execution, shared.task.replace("starburst-task", "starburst-task-debug")),
        B, region=aws.region, bucket=aws.shared.bucket, prefix=aws.shared.prefix, debug=True)
    doc = client("iam").get_role_policy(RoleName=session_role.session_role_name(B),
                                        PolicyName=session_role.SESSION_POLICY_NAME)
    assert "EcsExecChannels" in {st["Sid"] for st in doc["PolicyDocument"]["Statement"]}
    assert debug.task.endswith(f":role/starburst-session-{B}")
    own = Roles(shared.execution, "arn:aws:iam::123456789012:role/my-team-role")
    assert session_role.session_task_roles(own, A, region=aws.region,
                                           bucket=aws.shared.bucket,
                                           prefix=aws.shared.prefix) == own
