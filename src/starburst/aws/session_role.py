"""A task role per session: a worker reaches only its own session's queues and objects.

All sessions once shared ``starburst-task``, which may use every
``starburst-*`` queue and the whole run prefix, so one compromised worker
reached every other session. Each session now gets ``starburst-session-<id>``:

::

    session open                                  session end / starburst cleanup
      ensure_session_boundary (once per bucket)     delete_session_role
      create_session_role -> role ARN                 DeleteRolePolicy, DeleteRole
        CreateRole (trust: ECS tasks of this account and region;
                    permissions boundary; tags starburst:session, :managed)
        PutRolePolicy (policies.session_policy: sessions/<id>/ and its 3 queues)
        read back until IAM answers with both
      task definition / job definition: taskRoleArn = jobRoleArn = that ARN

Why a role and not tags: ECS task roles take no session tags and no session
policy (ECS assumes the role itself), so ABAC on ``aws:PrincipalTag`` cannot
tell two sessions' workers apart; the role's own inline policy can.

Escalation: a user may create these roles only with the permissions boundary
:func:`~starburst.aws.policies.session_boundary_policy` (the user policy
conditions CreateRole and PutRolePolicy on ``iam:PermissionsBoundary``), so a
role can never do more than a worker, whatever its inline policy says.

Eventual consistency: IAM changes reach other services after a delay AWS
does not bound ("a few seconds", sometimes longer; IAM User Guide,
troubleshoot_general.html#troubleshoot_general_eventual-consistency). This
module waits only for IAM itself to answer GetRole and GetRolePolicy for the
new role (NoSuchEntity is retried, with backoff, for up to
:data:`~starburst.aws.propagation.PROPAGATION_WAIT_S`); ECS's own view is
waited out where ECS refuses the role, at RegisterTaskDefinition and RunTask
(:func:`~starburst.aws.propagation.retry_while_propagating`). Throttling is
retried by botocore (adaptive mode, :mod:`starburst.aws.clients`).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ..exceptions import CloudError, ConfigurationError
from . import policies
from .clients import account_id, client, partition
from .errors import error_code, translate_errors
from .propagation import PROPAGATION_WAIT_S
from .provision import DEBUG_TASK_ROLE, MANAGED_TAG, SESSION_TAG, TASK_ROLE, Roles

if TYPE_CHECKING:
    from mypy_boto3_iam.type_defs import TagTypeDef

log = logging.getLogger("starburst")

__all__ = ["SESSION_POLICY_NAME", "SESSION_ROLE_PREFIX", "SessionRole", "boundary_arn",
           "boundary_state", "bucket_kms_key",
           "create_session_role", "delete_session_boundary", "delete_session_role",
           "ensure_session_boundary",
           "session_role_name", "session_roles", "session_task_roles"]

#: Every session role's name starts so; the user policy grants on ``role/<this>*``.
SESSION_ROLE_PREFIX = "starburst-session-"
#: The inline policy of a session role.
SESSION_POLICY_NAME = "starburst-session"
#: IAM role names have at most 64 characters.
_MAX_ROLE_NAME = 64
#: First pause while waiting for IAM to answer for a new role (doubling,
#: jittered, at most _MAX_PAUSE): IAM usually answers at once.
_FIRST_PAUSE = 0.1
_MAX_PAUSE = 4.0
#: Managed policies keep at most five versions; the oldest goes first.
_MAX_VERSIONS = 5


def session_role_name(session: str) -> str:
    """``starburst-session-<id>``.

    Raises:
        ConfigurationError: the id is too long for an IAM role name.
    """
    name = f"{SESSION_ROLE_PREFIX}{session}"
    if len(name) > _MAX_ROLE_NAME:
        raise ConfigurationError(
            f"session id {session!r} is too long for its IAM role {name!r} (IAM allows "
            f"{_MAX_ROLE_NAME} characters, so at most {_MAX_ROLE_NAME - len(SESSION_ROLE_PREFIX)} "
            "for the id)")
    return name


def boundary_arn(bucket: str, *, region: str) -> str:
    """The ARN of the permissions boundary of ``bucket``'s session roles."""
    return (f"arn:{partition(region)}:iam::{account_id(region)}:policy/"
            f"{policies.session_boundary_name(bucket)}")


def boundary_state(*, region: str, bucket: str, prefix: str,
                   kms_key: str | None = None) -> str:
    """``"missing"``, ``"differs"`` or ``"current"``: the boundary of ``bucket``'s session
    roles against what :func:`ensure_session_boundary` would write (`starburst setup`)."""
    iam = client("iam", region=region)
    arn = boundary_arn(bucket, region=region)
    with translate_errors(f"IAM GetPolicy {arn}"):
        try:
            found = iam.get_policy(PolicyArn=arn)["Policy"]
        except ClientError as exc:
            if error_code(exc) != "NoSuchEntity":
                raise
            return "missing"
        have = iam.get_policy_version(PolicyArn=arn, VersionId=str(
            found.get("DefaultVersionId", "")))["PolicyVersion"]["Document"]
    doc = json.loads(have) if isinstance(have, str) else have
    return "current" if doc == _boundary(region, bucket, prefix, kms_key) else "differs"


def _boundary(region: str, bucket: str, prefix: str, kms_key: str | None) -> dict[str, Any]:
    return policies.session_boundary_policy(
        part=partition(region), region=region, account=account_id(region), bucket=bucket,
        prefix=prefix, kms_key=kms_key)


def ensure_session_boundary(*, region: str, bucket: str, prefix: str,
                            kms_key: str | None = None, update: bool = False) -> str:
    """Return the ARN of the boundary policy of ``bucket``'s session roles, creating it.

    ``update`` (`starburst setup`) also rewrites a boundary that differs (a
    new version, the oldest dropped at IAM's five); a session leaves an
    existing one as it is (an identity limited to the user policy may read
    it, not change it).
    """
    iam = client("iam", region=region)
    arn = boundary_arn(bucket, region=region)
    wanted = _boundary(region, bucket, prefix, kms_key)
    with translate_errors(f"IAM permissions boundary {arn} of the session roles"):
        try:
            found = iam.get_policy(PolicyArn=arn)["Policy"]
        except ClientError as exc:
            if error_code(exc) != "NoSuchEntity":
                raise
        else:
            if update:
                _update_policy(iam, arn, str(found.get("DefaultVersionId", "")), wanted)
            return arn
        try:
            iam.create_policy(
                PolicyName=policies.session_boundary_name(bucket),
                PolicyDocument=json.dumps(wanted),
                Description="starburst: the most any session's task role may do",
                Tags=[{"Key": MANAGED_TAG, "Value": "true"}])
        except ClientError as exc:
            if error_code(exc) in ("AccessDenied", "AccessDeniedException"):
                raise ConfigurationError(
                    f"the permissions boundary {arn} of starburst's session roles does not "
                    "exist and this identity may not create it: run `starburst setup "
                    f"--region {region}` (or ask an administrator to)") from exc
            if error_code(exc) != "EntityAlreadyExists":  # another session made it first
                raise
    return arn


def _update_policy(iam: Any, arn: str, default: str, wanted: dict[str, Any]) -> None:
    have = iam.get_policy_version(PolicyArn=arn, VersionId=default)["PolicyVersion"]
    doc = have["Document"]
    if (json.loads(doc) if isinstance(doc, str) else doc) == wanted:
        return
    versions = sorted(iam.list_policy_versions(PolicyArn=arn)["Versions"],
                      key=lambda v: v["CreateDate"])
    old = [v for v in versions if not v["IsDefaultVersion"]]
    if len(versions) >= _MAX_VERSIONS and old:
        iam.delete_policy_version(PolicyArn=arn, VersionId=old[0]["VersionId"])
    iam.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(wanted),
                              SetAsDefault=True)


def bucket_kms_key(bucket: str, *, region: str) -> str | None:
    """The ARN of the SSE-KMS key ``bucket`` encrypts with by default (setup
    ``--kms-key``), or None (SSE-S3, or no default encryption).

    A key named by id or alias cannot be granted (IAM needs the key ARN), nor
    can one this identity may not read the encryption of: both are logged and
    count as None, and workers then cannot write the bucket.
    """
    s3 = client("s3", region=region)
    try:
        rules = s3.get_bucket_encryption(Bucket=bucket)[
            "ServerSideEncryptionConfiguration"]["Rules"]
    except ClientError as exc:
        if error_code(exc) == "ServerSideEncryptionConfigurationNotFoundError":
            return None
        log.warning("starburst: could not read the default encryption of s3://%s (%s); "
                    "session roles get no KMS key: if the bucket uses SSE-KMS, allow "
                    "s3:GetEncryptionConfiguration on it", bucket, error_code(exc))
        return None
    for rule in rules:
        default = rule.get("ApplyServerSideEncryptionByDefault", {})
        if default.get("SSEAlgorithm", "").startswith("aws:kms"):
            key = str(default.get("KMSMasterKeyID") or "")
            if key.startswith("arn:"):
                return key
            log.warning("starburst: s3://%s encrypts with KMS key %r, not named by its ARN; "
                        "session roles cannot be granted it: rerun `starburst setup "
                        "--kms-key ...`", bucket, key or "aws/s3")
    return None


def create_session_role(session_id: str, *, region: str, bucket: str, prefix: str,
                        kms_key: str | None = None, discover_kms: bool = True,
                        debug: bool = False, wait: float = PROPAGATION_WAIT_S,
                        sleep: Callable[[float], None] = time.sleep) -> str:
    """Create the task role of one session and return its ARN, once IAM answers for it.

    The role trusts ECS tasks of this account and region (Fargate tasks and
    the containers of GPU Batch jobs alike), carries the boundary of
    :func:`ensure_session_boundary` (created if missing, as a session creates
    its bucket) and the tags ``starburst:session=<id>`` and
    ``starburst:managed=true``; its inline policy
    (:func:`~starburst.aws.policies.session_policy`) reaches the session's
    own objects and queues only (plus ECS Exec's channels with ``debug``).
    Idempotent: an existing role of that name gets the policy rewritten.

    Args:
        session_id: the session id (at most 46 characters: IAM's 64 less the prefix).
        region: the session's region (its queues and the bucket's).
        bucket: the run bucket.
        prefix: the run prefix in it.
        kms_key: the bucket's SSE-KMS key ARN; None with ``discover_kms`` reads it
            from the bucket's default encryption (:func:`bucket_kms_key`).
        discover_kms: whether to look the key up when ``kms_key`` is None.
        debug: also allow the ECS Exec channels (``debug=True`` sessions).
        wait: seconds to wait for IAM to answer GetRole/GetRolePolicy for the new role.
        sleep: the pause between tries (tests pass a fake).

    Raises:
        ConfigurationError: the id cannot name a role.
        CloudError: IAM refused (e.g. AccessDenied: the user policy of `starburst
            setup --print-policy` grants what is needed), or never answered for the
            role within ``wait``.
    """
    name = session_role_name(session_id)
    part, account = partition(region), account_id(region)
    if kms_key is None and discover_kms:
        kms_key = bucket_kms_key(bucket, region=region)
    boundary = ensure_session_boundary(region=region, bucket=bucket, prefix=prefix,
                                       kms_key=kms_key)
    trust = policies.session_trust_policy(part=part, region=region, account=account)
    policy = policies.session_policy(part=part, region=region, account=account, bucket=bucket,
                                     prefix=prefix, session=session_id, kms_key=kms_key,
                                     debug=debug)
    tags: list[TagTypeDef] = [{"Key": SESSION_TAG, "Value": session_id},
                              {"Key": MANAGED_TAG, "Value": "true"}]
    iam = client("iam", region=region)
    with translate_errors(f"IAM role {name} (the task role of session {session_id})"):
        try:
            arn = iam.create_role(
                RoleName=name, AssumeRolePolicyDocument=json.dumps(trust),
                PermissionsBoundary=boundary, Tags=tags,
                Description=f"starburst: the workers of session {session_id}")["Role"]["Arn"]
        except ClientError as exc:
            if error_code(exc) != "EntityAlreadyExists":
                raise
            arn = iam.get_role(RoleName=name)["Role"]["Arn"]
        iam.put_role_policy(RoleName=name, PolicyName=SESSION_POLICY_NAME,
                            PolicyDocument=json.dumps(policy))
        _await_iam(lambda: (iam.get_role(RoleName=name),
                            iam.get_role_policy(RoleName=name, PolicyName=SESSION_POLICY_NAME)),
                   what=f"IAM role {name}", wait=wait, sleep=sleep)
    return str(arn)


def _await_iam(ask: Callable[[], object], *, what: str, wait: float,
               sleep: Callable[[float], None]) -> None:
    """``ask()`` until it stops answering NoSuchEntity, for ``wait`` seconds."""
    deadline = time.monotonic() + wait
    pause = _FIRST_PAUSE
    while True:
        try:
            ask()
            return
        except ClientError as exc:
            if error_code(exc) != "NoSuchEntity":
                raise
            if time.monotonic() + pause > deadline:
                raise CloudError(f"{what}: IAM still does not know it {wait:.0f} s after it "
                                 "was created; try again, or check the IAM service health "
                                 "page") from exc
        sleep(pause * random.uniform(0.8, 1.0))
        pause = min(_MAX_PAUSE, pause * 2)


def session_task_roles(roles: Roles, session_id: str, *, region: str, bucket: str,
                       prefix: str, debug: bool = False) -> Roles:
    """``roles`` with the session's own task role in place of starburst's shared one.

    The one call a backend makes at session open (before its task or job
    definition): starburst's roles (``starburst-task``, or
    ``starburst-task-debug`` for ``debug``) give way to
    :func:`create_session_role`'s ARN; a task role of your own
    (``task_role_arn`` naming another role) is kept, since starburst cannot
    know what it must allow. The execution role is kept either way.
    """
    if roles.task.rsplit("/", 1)[-1] not in (TASK_ROLE, DEBUG_TASK_ROLE):
        return roles
    return Roles(roles.execution, create_session_role(
        session_id, region=region, bucket=bucket, prefix=prefix, debug=debug))


def delete_session_role(session_id: str, *, region: str) -> bool:
    """Delete the session's role and its inline policy; return whether there was one.

    Call it at the session's end, after its workers are stopped (a running
    worker loses its credentials at their next refresh). A role that is
    already gone is not an error.
    """
    name = session_role_name(session_id)
    iam = client("iam", region=region)
    with translate_errors(f"deleting IAM role {name} (session {session_id})"):
        try:
            for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
                iam.delete_role_policy(RoleName=name, PolicyName=policy)
            iam.delete_role(RoleName=name)
        except ClientError as exc:
            if error_code(exc) != "NoSuchEntity":
                raise
            return False
    return True


def delete_session_boundary(bucket: str, *, region: str) -> None:
    """Delete the boundary policy of ``bucket``'s session roles (`starburst teardown`,
    after the roles): its old versions first, as IAM requires."""
    iam = client("iam", region=region)
    arn = boundary_arn(bucket, region=region)
    with translate_errors(f"IAM DeletePolicy {arn}"):
        try:
            for version in iam.list_policy_versions(PolicyArn=arn)["Versions"]:
                if not version["IsDefaultVersion"]:
                    iam.delete_policy_version(PolicyArn=arn, VersionId=version["VersionId"])
            iam.delete_policy(PolicyArn=arn)
        except ClientError as exc:
            if error_code(exc) != "NoSuchEntity":
                raise


@dataclass(frozen=True, slots=True)
class SessionRole:
    """A session role found in IAM."""

    name: str
    session: str
    created: datetime


def session_roles(*, region: str) -> list[SessionRole]:
    """Every ``starburst-session-*`` role tagged ``starburst:session`` (for cleanup)."""
    iam = client("iam", region=region)
    found: list[SessionRole] = []
    with translate_errors("IAM ListRoles (starburst's session roles)"):
        for page in iam.get_paginator("list_roles").paginate():
            for role in page["Roles"]:
                name = role["RoleName"]
                if not name.startswith(SESSION_ROLE_PREFIX):
                    continue
                tags = {t["Key"]: t["Value"]
                        for t in iam.list_role_tags(RoleName=name).get("Tags", [])}
                if tags.get(SESSION_TAG):
                    found.append(SessionRole(name, tags[SESSION_TAG], role["CreateDate"]))
    return found
