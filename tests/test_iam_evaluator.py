"""The policy evaluator of the emulated AWS (:mod:`starburst.testing.iam`).

Unit tests of AWS's evaluation order and condition operators, property
tests (an explicit Deny always wins; an unrelated Allow never turns a Deny
into an Allow), and negative tests against the documents starburst writes
(:mod:`starburst.aws.policies`): a wrong KMS key, a wrong ``kms:ViaService``,
an SSO role with a path in its ``aws:PrincipalArn``.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starburst.aws import policies, policy_lint
from starburst.testing.iam import Decision, PolicyError, Request, evaluate, matches

ACCOUNT = "123456789012"
REGION = "us-east-1"
BUCKET = "starburst-data"
PREFIX = "runs"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1111-2222"
OTHER_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/9999-0000"
TASK_ROLE = f"arn:aws:iam::{ACCOUNT}:role/starburst-task"
SSO_ROLE = f"arn:aws:iam::{ACCOUNT}:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Admin_ab12"
SSO_SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/AWSReservedSSO_Admin_ab12/alice"
VIA_S3 = {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}


def doc(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action: str = "s3:GetObject", resource: str = "*", **extra: Any) -> dict[str, Any]:
    return {"Sid": "A", "Effect": "Allow", "Action": action, "Resource": resource, **extra}


def req(action: str = "s3:GetObject", resource: str = "arn:aws:s3:::b/k",
        principal: str = TASK_ROLE, **context: Any) -> Request:
    return Request(action=action, resource=resource, principal=principal, context=context)


# -- evaluation order --------------------------------------------------------
def test_implicit_deny_without_any_allow() -> None:
    decision = evaluate(req(), [doc(allow("s3:PutObject"))])
    assert decision == Decision(False, "implicit-deny")


def test_identity_allow_names_the_statement() -> None:
    decision = evaluate(req(), {"task": doc(allow())})
    assert decision.allowed
    assert (decision.sid, decision.policy) == ("A", "task")


def test_explicit_deny_in_resource_policy_beats_identity_allow() -> None:
    deny = {"Sid": "No", "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:*",
            "Resource": "arn:aws:s3:::b/*"}
    decision = evaluate(req(), [doc(allow())], {"bucket": doc(deny)})
    assert decision == Decision(False, "explicit-deny", "No", "bucket")


def test_resource_policy_allows_only_the_principal_it_names() -> None:
    grant = {"Sid": "G", "Effect": "Allow", "Principal": {"AWS": [TASK_ROLE]},
             "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}
    assert evaluate(req(), [], [doc(grant)]).allowed
    other = f"arn:aws:iam::{ACCOUNT}:role/someone-else"
    assert not evaluate(req(principal=other), [], [doc(grant)]).allowed
    session = Request("s3:GetObject", "arn:aws:s3:::b/k", SSO_ROLE, caller=SSO_SESSION)
    named = {**grant, "Principal": {"AWS": SSO_SESSION}}
    assert evaluate(session, [], [doc(named)]).allowed
    service = {**grant, "Principal": {"Service": "logging.s3.amazonaws.com"}}
    assert evaluate(req(principal="logging.s3.amazonaws.com"), [], [doc(service)]).allowed
    assert not evaluate(req(), [], [doc(service)]).allowed
    not_principal = {"Sid": "N", "Effect": "Deny", "NotPrincipal": {"AWS": TASK_ROLE},
                     "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}
    assert evaluate(req(), [doc(allow())], [doc(not_principal)]).allowed
    assert not evaluate(req(principal=other), [doc(allow())], [doc(not_principal)]).allowed


def test_actions_case_insensitive_and_wildcards() -> None:
    assert evaluate(req("S3:getobject"), [doc(allow("s3:Get*"))]).allowed
    assert evaluate(req("s3:GetObject"), [doc(allow("s3:GetObjec?"))]).allowed
    assert not evaluate(req("s3:GetObjectAcl"), [doc(allow("s3:GetObjec?"))]).allowed
    not_action = {"Sid": "N", "Effect": "Allow", "NotAction": "s3:Delete*", "Resource": "*"}
    assert evaluate(req("s3:GetObject"), [doc(not_action)]).allowed
    assert not evaluate(req("s3:DeleteObject"), [doc(not_action)]).allowed


def test_resources_case_sensitive_and_not_resource() -> None:
    assert evaluate(req(resource="arn:aws:s3:::b/runs/x"),
                    [doc(allow(resource="arn:aws:s3:::b/runs/*"))]).allowed
    assert not evaluate(req(resource="arn:aws:s3:::b/RUNS/x"),
                        [doc(allow(resource="arn:aws:s3:::b/runs/*"))]).allowed
    not_resource = {"Sid": "N", "Effect": "Allow", "Action": "s3:*",
                    "NotResource": "arn:aws:s3:::b/secret/*"}
    assert evaluate(req(resource="arn:aws:s3:::b/runs/x"), [doc(not_resource)]).allowed
    assert not evaluate(req(resource="arn:aws:s3:::b/secret/x"), [doc(not_resource)]).allowed


# -- conditions ----------------------------------------------------------------
@pytest.mark.parametrize(("condition", "context", "expected"), [
    ({"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}, VIA_S3, True),
    ({"StringEquals": {"KMS:VIASERVICE": "s3.us-east-1.amazonaws.com"}}, VIA_S3, True),
    ({"StringEquals": {"kms:ViaService": "S3.us-east-1.amazonaws.com"}}, VIA_S3, False),
    ({"StringEqualsIgnoreCase": {"kms:ViaService": "S3.US-EAST-1.amazonaws.com"}}, VIA_S3,
     True),
    ({"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}, {}, False),
    ({"StringNotEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}, {}, True),
    ({"StringNotEquals": {"kms:ViaService": ["a", "s3.us-east-1.amazonaws.com"]}}, VIA_S3,
     False),
    ({"StringNotEqualsIgnoreCase": {"kms:ViaService": "x"}}, VIA_S3, True),
    ({"StringLike": {"s3:prefix": "runs/*"}}, {"s3:prefix": "runs/a/b"}, True),
    ({"StringLike": {"s3:prefix": "runs/*"}}, {"s3:prefix": "other/"}, False),
    ({"StringLike": {"s3:prefix": "runs/*"}}, {}, False),
    ({"StringNotLike": {"aws:PrincipalArn": ["x", "y"]}}, {"aws:PrincipalArn": "z"}, True),
    ({"StringNotLike": {"s3:prefix": "runs/*"}}, {}, True),
    ({"StringLikeIfExists": {"s3:prefix": "runs/*"}}, {}, True),
    ({"StringLikeIfExists": {"s3:prefix": "runs/*"}}, {"s3:prefix": "x"}, False),
    ({"ArnLike": {"aws:SourceArn": "arn:aws:s3:::src*"}}, {"aws:SourceArn": "arn:aws:s3:::src1"},
     True),
    ({"ArnLike": {"aws:SourceArn": "arn:aws:s3:::src"}}, {"aws:SourceArn": "arn:aws:s3:::src1"},
     False),
    ({"ArnEquals": {"aws:SourceArn": "arn:aws:s3:::src"}}, {"aws:SourceArn": "not-an-arn"},
     False),
    ({"ArnLike": {"aws:SourceArn": "arn:aws:iam::*:role/x"}},
     {"aws:SourceArn": f"arn:aws:iam::{ACCOUNT}:role/x"}, True),
    ({"ArnNotLike": {"aws:SourceArn": "arn:aws:s3:::src"}}, {}, True),
    ({"ArnNotEquals": {"aws:SourceArn": "arn:aws:s3:::src"}},
     {"aws:SourceArn": "arn:aws:s3:::src"}, False),
    ({"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": False}, True),
    ({"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": True}, False),
    ({"Bool": {"aws:SecureTransport": "false"}}, {}, False),
    ({"BoolIfExists": {"aws:SecureTransport": "false"}}, {}, True),
    ({"Null": {"kms:ViaService": "true"}}, {}, True),
    ({"Null": {"kms:ViaService": "true"}}, VIA_S3, False),
    ({"Null": {"kms:ViaService": "false"}}, VIA_S3, True),
    ({"ForAnyValue:StringEquals": {"aws:TagKeys": ["a", "b"]}}, {"aws:TagKeys": ["c", "b"]},
     True),
    ({"ForAnyValue:StringEquals": {"aws:TagKeys": ["a"]}}, {}, False),
    ({"ForAllValues:StringEquals": {"aws:TagKeys": ["a", "b"]}}, {"aws:TagKeys": ["a", "c"]},
     False),
    ({"ForAllValues:StringEquals": {"aws:TagKeys": ["a", "b"]}}, {"aws:TagKeys": ["b", "a"]},
     True),
    ({"ForAllValues:StringEquals": {"aws:TagKeys": ["a"]}}, {}, True),
    ({"ForAllValues:StringNotLike": {"aws:TagKeys": ["x*"]}}, {"aws:TagKeys": ["a", "b"]},
     True),
    ({"StringEquals": {"a:b": "1"}, "StringLike": {"c:d": "2*"}}, {"a:b": "1", "c:d": "3"},
     False),
])
def test_condition_operators(condition: dict[str, Any], context: dict[str, Any],
                             expected: bool) -> None:
    statement = allow(Condition=condition)
    request = Request("s3:GetObject", "arn:aws:s3:::b/k", TASK_ROLE, context)
    assert evaluate(request, [doc(statement)]).allowed is expected


def test_unknown_operator_is_an_error_not_a_silent_match() -> None:
    statement = allow(Condition={"NumericLessThan": {"aws:MultiFactorAuthAge": "3600"}})
    with pytest.raises(PolicyError, match="NumericLessThan"):
        evaluate(req(), [doc(statement)])


def test_principal_arn_comes_from_the_request() -> None:
    statement = allow(Condition={"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/*/Sso"}})
    sso = f"arn:aws:iam::{ACCOUNT}:role/path/Sso"
    assert evaluate(req(principal=sso), [doc(statement)]).allowed
    assert not evaluate(req(), [doc(statement)]).allowed


# -- properties ------------------------------------------------------------------
_WORDS = st.sampled_from(["s3:GetObject", "s3:PutObject", "sqs:SendMessage", "kms:Decrypt",
                          "s3:*", "*", "sqs:*", "s3:Get*"])
_RESOURCES = st.sampled_from(["*", "arn:aws:s3:::b/*", "arn:aws:s3:::b/k",
                              "arn:aws:sqs:*:*:starburst-*", "arn:aws:s3:::other/*"])
_STATEMENTS = st.builds(
    lambda effect, action, resource: {"Effect": effect, "Action": action,
                                      "Resource": resource},
    st.sampled_from(["Allow", "Deny"]), _WORDS, _RESOURCES)
_REQUESTS = st.builds(req, st.sampled_from(["s3:GetObject", "s3:PutObject", "sqs:SendMessage",
                                            "kms:Decrypt"]),
                      st.sampled_from(["arn:aws:s3:::b/k", "arn:aws:s3:::other/x",
                                       "arn:aws:sqs:us-east-1:1:starburst-q"]))


@settings(max_examples=200, deadline=None)
@given(request=_REQUESTS, statements=st.lists(_STATEMENTS, max_size=6),
       position=st.integers(min_value=0, max_value=6))
def test_an_explicit_deny_always_wins(request: Request, statements: list[dict[str, Any]],
                                      position: int) -> None:
    deny = {"Sid": "Wins", "Effect": "Deny", "Action": request.action,
            "Resource": request.resource}
    statements.insert(min(position, len(statements)), deny)
    decision = evaluate(request, [doc(*statements)])
    assert not decision.allowed
    assert decision.outcome == "explicit-deny"


@settings(max_examples=200, deadline=None)
@given(request=_REQUESTS, statements=st.lists(_STATEMENTS, max_size=6), extra=_STATEMENTS)
def test_adding_an_allow_never_turns_a_deny_into_allow(
        request: Request, statements: list[dict[str, Any]], extra: dict[str, Any]) -> None:
    before = evaluate(request, [doc(*statements)])
    after = evaluate(request, [doc(*statements)], [doc({**extra, "Effect": "Allow",
                                                        "Principal": {"AWS": "other"}})])
    if before.outcome == "explicit-deny":
        assert after.outcome == "explicit-deny"
    grant = {**extra, "Effect": "Allow"}
    if not matches(str(grant["Action"]), request.action, ignore_case=True):
        assert evaluate(request, [doc(*statements, grant)]).allowed == before.allowed


# -- the documents starburst writes ------------------------------------------------
def _task(kms: bool = True) -> dict[str, Any]:
    return policies.task_policy(part="aws", account=ACCOUNT, bucket=BUCKET, prefix=PREFIX,
                                kms_key=KEY if kms else None, region=REGION)


@pytest.mark.parametrize("maker", [
    _task,
    lambda: policies.debug_task_policy(part="aws", account=ACCOUNT, bucket=BUCKET,
                                       prefix=PREFIX, kms_key=KEY, region=REGION),
    lambda: policies.user_policy(part="aws", region=REGION, account=ACCOUNT, bucket=BUCKET,
                                 prefix=PREFIX, cluster="starburst", repository="starburst",
                                 log_group="/starburst/workers", kms_key=KEY),
])
@pytest.mark.parametrize("action", ["kms:GenerateDataKey", "kms:Decrypt"])
def test_data_key_only_that_key_only_through_s3_of_that_region(maker: Any, action: str) -> None:
    policy = [maker()]
    assert evaluate(Request(action, KEY, TASK_ROLE, VIA_S3), policy).allowed
    assert not evaluate(Request(action, OTHER_KEY, TASK_ROLE, VIA_S3), policy).allowed
    for via in ("s3.eu-west-1.amazonaws.com", "sqs.us-east-1.amazonaws.com",
                "ec2.us-east-1.amazonaws.com"):
        wrong = Request(action, KEY, TASK_ROLE, {"kms:ViaService": via})
        assert not evaluate(wrong, policy).allowed, via
    assert not evaluate(Request(action, KEY, TASK_ROLE), policy).allowed  # a direct call
    assert not evaluate(Request("kms:Encrypt", KEY, TASK_ROLE, VIA_S3), policy).allowed


def test_task_policy_without_a_key_grants_no_kms() -> None:
    assert not evaluate(Request("kms:Decrypt", KEY, TASK_ROLE, VIA_S3), [_task(False)]).allowed


def test_task_policy_scopes_data_list_and_queues() -> None:
    policy = [_task()]
    data = f"arn:aws:s3:::{BUCKET}/{PREFIX}/s1/result"
    assert evaluate(req("s3:PutObject", data), policy).allowed
    assert not evaluate(req("s3:PutObject", f"arn:aws:s3:::{BUCKET}/elsewhere/x"),
                        policy).allowed
    assert not evaluate(req("s3:PutObject", f"arn:aws:s3:::other/{PREFIX}/x"), policy).allowed
    bucket = f"arn:aws:s3:::{BUCKET}"
    assert evaluate(Request("s3:ListBucket", bucket, TASK_ROLE, {"s3:prefix": "runs/s1/"}),
                    policy).allowed
    assert not evaluate(Request("s3:ListBucket", bucket, TASK_ROLE, {"s3:prefix": "x/"}),
                        policy).allowed
    assert not evaluate(Request("s3:ListBucket", bucket, TASK_ROLE), policy).allowed
    queue = f"arn:aws:sqs:{REGION}:{ACCOUNT}:starburst-s1-tasks"
    assert evaluate(req("sqs:ReceiveMessage", queue), policy).allowed
    assert not evaluate(req("sqs:DeleteQueue", queue), policy).allowed
    assert not evaluate(req("sqs:SendMessage", f"arn:aws:sqs:{REGION}:999999999999:"
                                               "starburst-x"), policy).allowed


def _bucket(writers: list[str]) -> dict[str, Any]:
    return policies.bucket_policy(BUCKET, PREFIX, part="aws", writers=writers)


def test_writers_rule_lets_an_sso_role_with_a_path_write() -> None:
    writers = [TASK_ROLE, *policies.principal_arn(SSO_SESSION)]
    data = f"arn:aws:s3:::{BUCKET}/{PREFIX}/s1/payload"
    secure = {"aws:SecureTransport": True}
    sso = Request("s3:PutObject", data, SSO_ROLE, secure, caller=SSO_SESSION)
    identity = [doc(allow("s3:*", f"arn:aws:s3:::{BUCKET}/*"))]
    decision = evaluate(sso, identity, [_bucket(writers)])
    assert decision.allowed, decision
    other = Request("s3:PutObject", data, f"arn:aws:iam::{ACCOUNT}:role/aws-reserved/"
                    "sso.amazonaws.com/AWSReservedSSO_Other_cd34", secure)
    assert evaluate(other, identity, [_bucket(writers)]) == Decision(
        False, "explicit-deny", "RunPrefixWritersOnly", "resource policy 0")
    near = Request("s3:DeleteObject", data, f"arn:aws:iam::{ACCOUNT}:role/"
                   "AWSReservedSSO_Admin_ab12-copy", secure)
    assert not evaluate(near, identity, [_bucket(writers)]).allowed
    # Rebuilt without the path (the old rule), the same SSO role is denied.
    old = [TASK_ROLE, f"arn:aws:iam::{ACCOUNT}:role/AWSReservedSSO_Admin_ab12"]
    assert evaluate(sso, identity, [_bucket(old)]).outcome == "explicit-deny"


def test_bucket_policy_denies_plain_http_and_leaves_reads_to_identity() -> None:
    data = f"arn:aws:s3:::{BUCKET}/{PREFIX}/k"
    identity = [_task()]
    insecure = Request("s3:GetObject", data, TASK_ROLE, {"aws:SecureTransport": False})
    assert evaluate(insecure, identity, [_bucket([TASK_ROLE])]).sid == "DenyInsecureTransport"
    outsider = Request("s3:GetObject", data, f"arn:aws:iam::{ACCOUNT}:role/x",
                       {"aws:SecureTransport": True})
    assert evaluate(outsider, [], [_bucket([TASK_ROLE])]).outcome == "implicit-deny"


def test_user_policy_lets_the_quota_count_see_every_cluster() -> None:
    """quota.vcpus_in_use lists every cluster and describes its tasks: reads only."""
    policy = [policies.user_policy(part="aws", region=REGION, account=ACCOUNT, bucket=BUCKET,
                                   prefix=PREFIX, cluster="starburst", repository="starburst",
                                   log_group="/starburst")]
    user = f"arn:aws:iam::{ACCOUNT}:user/alice"
    ecs = f"arn:aws:ecs:{REGION}:{ACCOUNT}"
    assert evaluate(Request("ecs:ListClusters", "*", user), policy).allowed
    assert evaluate(Request("ecs:DescribeTasks", f"{ecs}:task/other/abc", user), policy).allowed
    assert not evaluate(Request("ecs:StopTask", f"{ecs}:task/other/abc", user), policy).allowed
    assert policy_lint.wildcard_writes(policy[0]) == []
