"""The policy documents `starburst setup` writes, checked against IAM's matching rules."""

from __future__ import annotations

from fnmatch import fnmatchcase

from starburst.aws import policies, policy_lint

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
    assert "servicequotas:ListRequestedServiceQuotaChangeHistory" in policy_lint.actions_of(doc)


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
        assert policy_lint.wildcard_writes(doc) == []
    plain = policies.task_policy(part="aws", account=_ACCOUNT, bucket="b", prefix="p",
                                 region="eu-west-1")
    assert not [st for st in plain["Statement"] if "kms:Decrypt" in st["Action"]]


def _statements_granting(doc: dict, action: str) -> list[dict]:
    return [st for st in doc["Statement"] if st["Effect"] == "Allow"
            and action in policy_lint._listed(st["Action"])]


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
                  if "iam:PassRole" in policy_lint._listed(st["Action"])]
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
        for debug in (False, True):
            docs[f"session debug={debug} kms={bool(kms)}"] = policies.session_policy(
                **common, bucket="b", prefix="p", session="sb-1", kms_key=kms, debug=debug)
        docs[f"session boundary kms={bool(kms)}"] = policies.session_boundary_policy(
            **common, bucket="b", prefix="p", kms_key=kms)
    docs["session trust"] = policies.session_trust_policy(**common)
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
        assert policy_lint.unjustified_wildcards(doc) == [], name


def test_every_justified_wildcard_grant_is_used_and_has_a_reason():
    used = {(st.get("Sid"), action) for doc in _every_generated_document().values()
            for st in doc["Statement"] if st["Effect"] == "Allow"
            and any(policy_lint.wide_resource(r) for r in policy_lint._listed(st.get("Resource")))
            for action in policy_lint._listed(st["Action"])}
    listed = {(sid, action) for sid, (actions, _) in policy_lint.WILDCARD_GRANTS.items()
              for action in actions}
    assert listed <= used  # no stale justification
    assert all(len(why) > 20 for _, why in policy_lint.WILDCARD_GRANTS.values())


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
    problems = policy_lint.unjustified_wildcards(broad)
    assert [p.split(":", 1)[0] for p in problems] == ["a", "?", "GpuReads", "c", "d", "e"]


# -- per-session roles: what moto cannot check (boundaries, IAM's conditions) ----------
_BOUNDARY = f"arn:aws:iam::{_ACCOUNT}:policy/{policies.session_boundary_name('b')}"
_USER = f"arn:aws:iam::{_ACCOUNT}:user/alice"


def _session(session: str, **extra) -> dict:
    return policies.session_policy(part="aws", region="us-east-1", account=_ACCOUNT,
                                   bucket="b", prefix="p", session=session, **extra)


def _boundary(**extra) -> dict:
    return policies.session_boundary_policy(part="aws", region="us-east-1", account=_ACCOUNT,
                                            bucket="b", prefix="p", **extra)


def _effective(inline: dict, action: str, resource: str, context: dict | None = None) -> bool:
    """A bounded role's decision: its identity policy AND its boundary allow."""
    from starburst.testing.iam import Request, evaluate

    request = Request(action, resource, f"arn:aws:iam::{_ACCOUNT}:role/starburst-session-x",
                      context or {})
    return evaluate(request, [inline]).allowed and evaluate(request, [_boundary()]).allowed


def test_the_session_policy_names_the_transports_queues_exactly():
    from starburst.transport.aws import queue_names

    [queues] = _statements_granting(_session("sb-1"), "sqs:ReceiveMessage")
    names = queue_names("sb-1")
    assert queues["Resource"] == [f"arn:aws:sqs:us-east-1:{_ACCOUNT}:{n}"
                                  for n in (names.tasks, names.results, names.dead)]


def test_a_session_role_reaches_its_session_only_even_a_longer_id_sharing_its_start():
    doc = _session("sb-1")
    for other in ("sb-1-b", "sb-10", "sb-2"):
        assert not _effective(doc, "s3:GetObject", f"arn:aws:s3:::b/p/sessions/{other}/x")
        assert not _effective(doc, "sqs:SendMessage",
                              f"arn:aws:sqs:us-east-1:{_ACCOUNT}:starburst-{other}-tasks")
        assert not _effective(doc, "s3:ListBucket", "arn:aws:s3:::b",
                              {"s3:prefix": f"p/sessions/{other}/"})
    assert _effective(doc, "s3:PutObject", "arn:aws:s3:::b/p/sessions/sb-1/results/1/a")
    assert _effective(doc, "s3:ListBucket", "arn:aws:s3:::b",
                      {"s3:prefix": "p/sessions/sb-1/results/1/"})
    assert not _effective(doc, "sqs:SendMessage",
                          f"arn:aws:sqs:eu-west-1:{_ACCOUNT}:starburst-sb-1-tasks")
    assert not _effective(doc, "sqs:DeleteQueue",
                          f"arn:aws:sqs:us-east-1:{_ACCOUNT}:starburst-sb-1-tasks")


def test_the_boundary_caps_a_role_whatever_its_inline_policy_grants():
    admin = {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    assert not _effective(admin, "iam:CreateUser", f"arn:aws:iam::{_ACCOUNT}:user/x")
    assert not _effective(admin, "s3:GetObject", "arn:aws:s3:::b/p/elsewhere")
    assert not _effective(admin, "s3:GetObject", "arn:aws:s3:::other/p/sessions/a/x")
    assert not _effective(admin, "sqs:SendMessage",
                          f"arn:aws:sqs:us-east-1:{_ACCOUNT}:someone-elses-queue")
    assert not _effective(admin, "ecs:RunTask", "*")
    # ... and within it, still no more than the run prefix's sessions and queues
    assert _effective(admin, "s3:GetObject", "arn:aws:s3:::b/p/sessions/a/x")


def _user_allows(action: str, resource: str, context: dict | None = None) -> bool:
    from starburst.testing.iam import Request, evaluate

    doc = policies.user_policy(part="aws", region="us-east-1", account=_ACCOUNT, bucket="b",
                               prefix="p", cluster="c", repository="r", log_group="/g")
    return evaluate(Request(action, resource, _USER, context or {}), [doc]).allowed


def test_a_user_creates_session_roles_only_with_the_boundary():
    role = f"arn:aws:iam::{_ACCOUNT}:role/starburst-session-sb-1"
    bounded = {"iam:PermissionsBoundary": _BOUNDARY}
    for action in ("iam:CreateRole", "iam:PutRolePolicy"):
        assert _user_allows(action, role, bounded)
        assert not _user_allows(action, role)  # no boundary: refused
        assert not _user_allows(action, role, {
            "iam:PermissionsBoundary": f"arn:aws:iam::{_ACCOUNT}:policy/AdministratorAccess"})
        assert not _user_allows(action, f"arn:aws:iam::{_ACCOUNT}:role/starburst-task",
                                bounded)
    # nothing that would lift the boundary, change it, or widen a role around it
    for action in ("iam:DeleteRolePermissionsBoundary", "iam:PutRolePermissionsBoundary",
                   "iam:AttachRolePolicy", "iam:UpdateAssumeRolePolicy"):
        assert not _user_allows(action, role, bounded)
    for action in ("iam:CreatePolicyVersion", "iam:DeletePolicy", "iam:SetDefaultPolicyVersion"):
        assert not _user_allows(action, _BOUNDARY)
    assert _user_allows("iam:DeleteRole", role)
    assert _user_allows("iam:TagRole", role, {"aws:TagKeys": ["starburst:session"]})
    assert not _user_allows("iam:TagRole", role, {"aws:TagKeys": ["team"]})
    assert _user_allows("iam:PassRole", role, {"iam:PassedToService": "ecs-tasks.amazonaws.com"})
    assert not _user_allows("iam:PassRole", role, {"iam:PassedToService": "lambda.amazonaws.com"})


def test_a_session_role_trusts_only_ecs_tasks_of_its_account():
    from starburst.testing.iam import Request, evaluate

    trust = policies.session_trust_policy(part="aws", region="us-east-1", account=_ACCOUNT)
    ours = {"aws:SourceAccount": _ACCOUNT,
            "aws:SourceArn": f"arn:aws:ecs:us-east-1:{_ACCOUNT}:task/c/abc"}

    def assumes(principal: str, context: dict) -> bool:
        return evaluate(Request("sts:AssumeRole", "*", principal, context),
                        resource=[trust]).allowed

    assert assumes("ecs-tasks.amazonaws.com", ours)
    assert not assumes("ecs-tasks.amazonaws.com", {**ours, "aws:SourceAccount": "999999999999"})
    assert not assumes("lambda.amazonaws.com", ours)
    assert not assumes(_USER, ours)


def test_setups_bucket_policy_lets_session_roles_write():
    writers = [f"arn:aws:iam::{_ACCOUNT}:role/starburst-task",
               policies.session_roles_writer(part="aws", account=_ACCOUNT)]
    doc = policies.bucket_policy("b", "p", part="aws", writers=writers)
    assert not _writes_denied(doc, f"arn:aws:iam::{_ACCOUNT}:role/starburst-session-sb-1")
    assert _writes_denied(doc, f"arn:aws:iam::{_ACCOUNT}:role/starburst-other")
