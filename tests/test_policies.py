"""The policy documents `starburst setup` writes, checked against IAM's matching rules."""

from __future__ import annotations

from fnmatch import fnmatchcase

from starburst.aws import policies

_ACCOUNT = "123456789012"
_SSO_ROLE = "AWSReservedSSO_AdministratorAccess_0123456789abcdef"
_SSO_CALLER = f"arn:aws:sts::{_ACCOUNT}:assumed-role/{_SSO_ROLE}/someone@example.com"
#: aws:PrincipalArn of that caller, as IAM evaluates it: the role's ARN with its path.
_SSO_PRINCIPAL = (f"arn:aws:iam::{_ACCOUNT}:role/aws-reserved/sso.amazonaws.com/"
                  f"{_SSO_ROLE}")


def _string_like(value: str, patterns: list[str]) -> bool:
    """IAM StringLike: ``*`` any run of characters (``/`` included), ``?`` one."""
    return any(fnmatchcase(value, p) for p in patterns)


def _writes_denied(policy: dict, principal: str) -> bool:
    [rule] = [st for st in policy["Statement"] if st["Sid"] == "RunPrefixWritersOnly"]
    return not _string_like(principal, rule["Condition"]["StringNotLike"]["aws:PrincipalArn"])


def _bucket_policy_for(caller: str) -> dict:
    return policies.bucket_policy("b", "starburst", part="aws",
                                  writers=[f"arn:aws:iam::{_ACCOUNT}:role/starburst-task",
                                           *policies.principal_arn(caller)])


def test_an_identity_center_user_may_write_the_run_prefix():
    policy = _bucket_policy_for(_SSO_CALLER)
    assert not _writes_denied(policy, _SSO_PRINCIPAL)  # the path is part of the ARN
    assert not _writes_denied(policy, f"arn:aws:iam::{_ACCOUNT}:role/{_SSO_ROLE}")


def test_the_writers_rule_still_denies_other_roles_and_accounts():
    policy = _bucket_policy_for(_SSO_CALLER)
    assert _writes_denied(policy, f"arn:aws:iam::{_ACCOUNT}:role/aws-reserved/"
                                  "sso.amazonaws.com/AWSReservedSSO_ReadOnly_1")
    assert _writes_denied(policy, f"arn:aws:iam::{_ACCOUNT}:role/{_SSO_ROLE}-other")
    assert _writes_denied(policy, f"arn:aws:iam::999999999999:role/{_SSO_ROLE}")
    assert _writes_denied(policy, f"arn:aws:iam::{_ACCOUNT}:user/{_SSO_ROLE}")


def test_an_iam_user_is_its_own_principal():
    user = f"arn:aws:iam::{_ACCOUNT}:user/alice"
    assert policies.principal_arn(user) == [user]
    assert not _writes_denied(_bucket_policy_for(user), user)


def test_the_user_policy_grants_the_quota_history_call_the_quota_check_makes():
    doc = policies.user_policy(part="aws", region="us-east-1", account=_ACCOUNT, bucket="b",
                               prefix="starburst", cluster="starburst", repository="starburst",
                               log_group="/starburst")
    # aws/quota.py pages ListRequestedServiceQuotaChangeHistory (not ...ByQuota).
    assert "servicequotas:ListRequestedServiceQuotaChangeHistory" in policies.actions_of(doc)


def test_a_kms_key_is_granted_only_through_s3_of_its_region():
    key = f"arn:aws:kms:eu-west-1:{_ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    for doc in (policies.task_policy(part="aws", account=_ACCOUNT, bucket="b", prefix="p",
                                     kms_key=key, region="eu-west-1"),
                policies.debug_task_policy(part="aws", account=_ACCOUNT, bucket="b",
                                           prefix="p", kms_key=key, region="eu-west-1"),
                policies.user_policy(part="aws", region="eu-west-1", account=_ACCOUNT,
                                     bucket="b", prefix="p", cluster="c", repository="r",
                                     log_group="/g", kms_key=key)):
        [grant] = [st for st in doc["Statement"] if "kms:Decrypt" in st["Action"]]
        assert set(grant["Action"]) == {"kms:GenerateDataKey", "kms:Decrypt"}
        assert grant["Resource"] == key
        assert grant["Condition"] == {
            "StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}}
        assert policies.wildcard_writes(doc) == []
    plain = policies.task_policy(part="aws", account=_ACCOUNT, bucket="b", prefix="p",
                                 region="eu-west-1")
    assert not [st for st in plain["Statement"] if "kms:Decrypt" in st["Action"]]


def _statements_granting(doc: dict, action: str) -> list[dict]:
    return [st for st in doc["Statement"] if st["Effect"] == "Allow"
            and action in policies._listed(st["Action"])]


def test_task_queues_are_those_of_its_region_only():
    for maker in (policies.task_policy, policies.debug_task_policy):
        doc = maker(part="aws", account=_ACCOUNT, bucket="b", prefix="p", region="eu-west-1")
        [queues] = _statements_granting(doc, "sqs:ReceiveMessage")
        assert queues["Resource"] == f"arn:aws:sqs:eu-west-1:{_ACCOUNT}:starburst-*"


def _allowed(doc: dict, action: str, resource: str, context: dict | None = None) -> bool:
    from starburst.testing.iam import Request, evaluate

    return evaluate(Request(action, resource, f"arn:aws:iam::{_ACCOUNT}:user/alice",
                            context or {}), [doc]).allowed


def test_gpu_users_stop_only_starburst_jobs():
    doc = policies.user_policy(part="aws", region="us-east-1", account=_ACCOUNT, bucket="b",
                               prefix="p", cluster="c", repository="r", log_group="/g",
                               gpu=True)
    job = f"arn:aws:batch:us-east-1:{_ACCOUNT}:job/0123-abcd"
    ours = {"aws:ResourceTag/starburst:session": "sb-20261204-120000-abcdef"}
    for action in ("batch:TerminateJob", "batch:CancelJob"):
        assert _allowed(doc, action, job, ours)
        assert not _allowed(doc, action, job)  # a job that is not starburst's
        assert not _allowed(doc, action, job, {"aws:ResourceTag/team": "other"})


def test_gpu_job_roles_are_passed_only_to_batch_or_ecs_tasks():
    [gpu_pass] = [st for st in policies.gpu_statements(part="aws", region="us-east-1",
                                                       account=_ACCOUNT)
                  if "iam:PassRole" in policies._listed(st["Action"])]
    role = f"arn:aws:iam::{_ACCOUNT}:role/starburst-task"
    doc = {"Version": "2012-10-17", "Statement": [gpu_pass]}
    for service in ("batch.amazonaws.com", "ecs-tasks.amazonaws.com"):
        assert _allowed(doc, "iam:PassRole", role, {"iam:PassedToService": service})
    for service in ("lambda.amazonaws.com", "ec2.amazonaws.com"):
        assert not _allowed(doc, "iam:PassRole", role, {"iam:PassedToService": service})
    assert not _allowed(doc, "iam:PassRole", role)


# -- the linter: every grant on a wildcard resource is justified ---------------------
def _every_generated_document() -> dict[str, dict]:
    """Every policy document the pure functions of starburst.aws.policies produce."""
    key = f"arn:aws:kms:us-east-1:{_ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    common = {"part": "aws", "account": _ACCOUNT, "region": "us-east-1"}
    docs: dict[str, dict] = {}
    for kms in (None, key):
        for gpu in (False, True):
            docs[f"user gpu={gpu} kms={bool(kms)}"] = policies.user_policy(
                **common, bucket="b", prefix="p", cluster="c", repository="r",
                log_group="/g", gpu=gpu, kms_key=kms)
        docs[f"task kms={bool(kms)}"] = policies.task_policy(**common, bucket="b", prefix="p",
                                                             kms_key=kms)
        docs[f"debug task kms={bool(kms)}"] = policies.debug_task_policy(
            **common, bucket="b", prefix="p", kms_key=kms)
    docs["execution"] = policies.execution_policy(**common, repository="r", log_group="/g")
    docs["execution (setup not run)"] = policies.default_execution_policy(**common,
                                                                          log_group="/g")
    docs["instance"] = policies.instance_policy(**common, repository="r", log_group="/g")
    docs["bucket"] = policies.bucket_policy("b", "p", part="aws", writers=["arn:aws:iam::1:x"])
    docs["tls-only bucket"] = policies.tls_only_bucket_policy("b", part="aws")
    docs["log bucket"] = policies.log_bucket_policy("b-logs", "b", part="aws",
                                                    account=_ACCOUNT)
    return docs


def test_no_generated_policy_grants_an_unjustified_wildcard():
    for name, doc in _every_generated_document().items():
        assert policies.unjustified_wildcards(doc) == [], name


def test_every_justified_wildcard_grant_is_used_and_has_a_reason():
    used = {(st.get("Sid"), action) for doc in _every_generated_document().values()
            for st in doc["Statement"] if st["Effect"] == "Allow"
            and any(policies.wide_resource(r) for r in policies._listed(st["Resource"]))
            for action in policies._listed(st["Action"])}
    listed = {(sid, action) for sid, (actions, _) in policies.WILDCARD_GRANTS.items()
              for action in actions}
    assert listed <= used  # no stale justification
    assert all(len(why) > 20 for _, why in policies.WILDCARD_GRANTS.values())


def test_the_linter_catches_what_is_not_justified():
    broad = {"Statement": [
        {"Sid": "a", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"},
        {"Effect": "Allow", "Action": "ec2:DescribeVpcs", "Resource": "*"},  # no Sid
        {"Sid": "GpuReads", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"},
        {"Sid": "c", "Effect": "Allow", "Action": "sqs:SendMessage",
         "Resource": "arn:aws:sqs:*:1:starburst-*"},  # every region
        {"Sid": "d", "Effect": "Allow", "Action": "ecs:StopTask",
         "Resource": "arn:aws:ecs:us-east-1:1:task/*"},  # every task of the type
        {"Sid": "e", "Effect": "Allow", "Action": "s3:GetObject",
         "Resource": "arn:aws:s3:::*"},
        {"Sid": "ok", "Effect": "Allow", "Action": "s3:GetObject",
         "Resource": "arn:aws:s3:::b/p/*"},
        {"Sid": "deny", "Effect": "Deny", "Action": "s3:*", "Resource": "*"}]}
    problems = policies.unjustified_wildcards(broad)
    assert [p.split(":", 1)[0] for p in problems] == ["a", "?", "GpuReads", "c", "d", "e"]
