"""A session's key on AWS: a per-session secret the execution role hands to workers.

The key that tags every message of a session (:mod:`starburst.wire.auth`)
must reach its workers without appearing where a principal who can only
write the session's queue, or read ECS's descriptions, could read it: not
in RunTask/SubmitJob overrides (DescribeTasks and DescribeJobs show them),
not in a log stream, not in a message. So:

* at session open the client stores it as the Secrets Manager secret
  ``starburst/<session>/key`` (:func:`create_key_secret`), tagged with the
  session;
* the session's task definition (Fargate) or job definition (Batch) is a
  copy of the shared one with one container ``secrets`` entry
  (:func:`container_secrets`): the ECS agent, as the *execution* role
  (``secretsmanager:GetSecretValue`` on ``secret:starburst/*``), injects it
  as :data:`~starburst.wire.auth.KEY_ENV` when the container starts. The
  definitions show only the secret's ARN;
* the *task* role, which worker code runs as, has no Secrets Manager access
  at all, so a worker, or code it runs, reads no other session's key;
* ``attach`` in another process of the same user reads the secret back
  (:func:`read_key_secret`; the record names it);
* the session's end deletes the secret at once, without the recovery
  window (:func:`delete_key_secret`), and its definitions are deregistered
  (:func:`deregister_definitions`); ``starburst cleanup`` deletes what a
  crashed client left.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from ..exceptions import ConfigurationError
from ..wire.auth import KEY_ENV, key_from_text, key_text
from .clients import client
from .errors import error_code, translate_errors
from .propagation import retry_while_propagating
from .provision import MANAGED_TAG, SESSION_TAG

__all__ = [
    "SECRET_PREFIX",
    "container_secrets",
    "create_key_secret",
    "delete_key_secret",
    "deregister_definitions",
    "deregister_job_definitions",
    "key_secret_sessions",
    "keyed_job_definition",
    "keyed_task_definition",
    "read_key_secret",
    "secret_name",
    "session_definitions",
]

#: Every session key secret's name starts so (the execution role reads these only).
SECRET_PREFIX = "starburst/"


def secret_name(session: str) -> str:
    """The name of ``session``'s key secret."""
    return f"{SECRET_PREFIX}{session}/key"


def create_key_secret(session: str, key: bytes, *, region: str) -> str:
    """Store ``key`` as ``session``'s secret; return its ARN."""
    sm = client("secretsmanager", region=region)
    with translate_errors(f"Secrets Manager CreateSecret {secret_name(session)}"):
        made = sm.create_secret(
            Name=secret_name(session), SecretString=key_text(key),
            Description=f"starburst session {session}: the key its messages are tagged with; "
                        "deleted when the session ends",
            Tags=[{"Key": MANAGED_TAG, "Value": "true"},
                  {"Key": SESSION_TAG, "Value": session}])
    return str(made["ARN"])


def read_key_secret(secret: str, *, region: str) -> bytes:
    """The key stored in ``secret`` (its ARN or name), for ``attach``.

    Raises:
        ConfigurationError: the secret is gone (the session ended) or holds no key.
    """
    sm = client("secretsmanager", region=region)
    with translate_errors(f"Secrets Manager GetSecretValue {secret}"):
        try:
            text = sm.get_secret_value(SecretId=secret)["SecretString"]
        except ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
            raise ConfigurationError(
                f"the session key secret {secret} is gone: the session ended, or `starburst "
                "cleanup` removed it; its workers cannot be reached") from None
    return key_from_text(text)


def delete_key_secret(session: str, *, region: str) -> bool:
    """Delete ``session``'s secret now (no recovery window); False if it was gone."""
    sm = client("secretsmanager", region=region)
    with translate_errors(f"Secrets Manager DeleteSecret {secret_name(session)}"):
        try:
            sm.delete_secret(SecretId=secret_name(session), ForceDeleteWithoutRecovery=True)
        except ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
            return False
    return True


def container_secrets(secret_arn: str) -> list[dict[str, str]]:
    """The container ``secrets`` entry that makes the key the worker's :data:`KEY_ENV`."""
    return [{"name": KEY_ENV, "valueFrom": secret_arn}]


def _with_key(container: Any, secret_arn: str) -> dict[str, Any]:
    """A copy of a container definition (ECS) or properties (Batch) whose ``secrets``
    inject the session key from ``secret_arn`` (in place of any earlier one)."""
    out = dict(container)
    out["secrets"] = [s for s in out.get("secrets") or []
                      if s.get("name") != KEY_ENV] + container_secrets(secret_arn)
    return out


#: Fields of DescribeTaskDefinition's answer that RegisterTaskDefinition takes back.
_REGISTER_FIELDS = ("taskRoleArn", "executionRoleArn", "networkMode", "volumes",
                    "placementConstraints", "requiresCompatibilities", "cpu", "memory",
                    "runtimePlatform", "ephemeralStorage")


def keyed_task_definition(base: str, *, session: str, secret_arn: str, region: str,
                          task_role: str | None = None, ecs: Any = None) -> str:
    """Register a copy of task definition ``base`` for ``session`` whose worker
    container gets the session key from ``secret_arn`` (and whose tasks run as
    ``task_role``, the session's own role, when given); return its ARN.

    Its family is the base family plus the session id (so the user policy's
    ``task-definition/starburst-*`` covers it and ``cleanup`` finds it); one
    RegisterTaskDefinition per size of a session, none per task.
    """
    ecs = ecs or client("ecs", region=region)
    with translate_errors(f"ECS task definition for session {session}"):
        current = ecs.describe_task_definition(taskDefinition=base)["taskDefinition"]
        containers = [_with_key(c, secret_arn) for c in current["containerDefinitions"]]
        fields = {k: current[k] for k in _REGISTER_FIELDS if current.get(k) is not None}
        if task_role:
            fields["taskRoleArn"] = task_role
        registered = retry_while_propagating(lambda: ecs.register_task_definition(
            family=f"{current['family']}-{session}", containerDefinitions=containers,
            tags=[{"key": MANAGED_TAG, "value": "true"}, {"key": SESSION_TAG, "value": session}],
            **fields), what=f"registering the task definition of session {session}",
            region=region)
    return str(registered["taskDefinition"]["taskDefinitionArn"])


def _deregister(arns: list[str], deregister: Callable[[str], object], what: str) -> None:
    """``deregister`` each ARN; one already gone (a client error) is not an error."""
    for arn in arns:
        with translate_errors(f"{what} {arn}"):
            try:
                deregister(arn)
            except ClientError as exc:
                if error_code(exc) not in ("ClientException", "InvalidParameterException"):
                    raise


def deregister_definitions(arns: list[str], *, region: str, ecs: Any = None) -> None:
    """Deregister a session's own task definitions (those of :func:`keyed_task_definition`)."""
    if arns:
        ecs = ecs or client("ecs", region=region)
        _deregister(arns, lambda arn: ecs.deregister_task_definition(taskDefinition=arn),
                    "ECS DeregisterTaskDefinition")


#: Fields of a described Batch job definition that RegisterJobDefinition takes back.
_JOB_FIELDS = ("type", "parameters", "retryStrategy", "timeout", "platformCapabilities",
               "propagateTags")


def keyed_job_definition(base: str, *, session: str, secret_arn: str, region: str,
                         task_role: str | None = None, batch: Any = None) -> str:
    """Register a copy of Batch job definition ``base`` for ``session`` whose container
    gets the session key from ``secret_arn`` and runs as ``task_role`` when given;
    return its ARN (as :func:`keyed_task_definition`, for GPU workers)."""
    batch = batch or client("batch", region=region)
    with translate_errors(f"AWS Batch job definition for session {session}"):
        found = batch.describe_job_definitions(jobDefinitions=[base])["jobDefinitions"]
        if not found:
            raise ConfigurationError(f"AWS Batch job definition {base} is gone")
        current = found[0]
        properties = _with_key(current["containerProperties"], secret_arn)
        if task_role:
            properties["jobRoleArn"] = task_role
        fields = {k: current[k] for k in _JOB_FIELDS if current.get(k) is not None}
        registered = retry_while_propagating(lambda: batch.register_job_definition(
            jobDefinitionName=f"{current['jobDefinitionName']}-{session}",
            containerProperties=properties,
            tags={MANAGED_TAG: "true", SESSION_TAG: session}, **fields),
            what=f"registering the job definition of session {session}", region=region)
    return str(registered["jobDefinitionArn"])


def deregister_job_definitions(arns: list[str], *, region: str, batch: Any = None) -> None:
    """Deregister a session's own job definitions (those of :func:`keyed_job_definition`)."""
    if arns:
        batch = batch or client("batch", region=region)
        _deregister(arns, lambda arn: batch.deregister_job_definition(jobDefinition=arn),
                    "AWS Batch DeregisterJobDefinition")


def key_secret_sessions(*, region: str) -> dict[str, datetime]:
    """Sessions whose key secret still exists, with its creation time (what ``starburst
    cleanup`` looks for)."""
    sm = client("secretsmanager", region=region)
    found: dict[str, datetime] = {}
    with translate_errors("Secrets Manager ListSecrets (starburst session keys)"):
        for page in sm.get_paginator("list_secrets").paginate(
                Filters=[{"Key": "name", "Values": [SECRET_PREFIX]}]):
            for secret in page.get("SecretList", []):
                name = str(secret.get("Name", ""))
                session, _, rest = name[len(SECRET_PREFIX):].partition("/")
                if name.startswith(SECRET_PREFIX) and rest == "key" and session:
                    found[session] = secret.get("CreatedDate") or datetime.now(UTC)
    return found


def session_definitions(session: str, *, region: str) -> list[str]:
    """ARNs of ``session``'s own ACTIVE task definitions (:func:`keyed_task_definition`)."""
    ecs = client("ecs", region=region)
    with translate_errors(f"ECS ListTaskDefinitions (session {session})"):
        # Filtered here rather than by familyPrefix (moto's ignores families that
        # only start with it); a session's families start with starburst- anyway.
        return [arn for page in ecs.get_paginator("list_task_definitions").paginate(
                    status="ACTIVE")
                for arn in page["taskDefinitionArns"]
                if (family := arn.rsplit("/", 1)[-1].rsplit(":", 1)[0]).startswith("starburst-")
                and family.endswith(f"-{session}")]


def attach_secret(recorded: str, session: str, *, region: str) -> str:
    """The secret an ``attach`` reads ``session``'s key from: its own, in ``region``.

    The record (which anyone who may write the session prefix could alter) says
    where the key is; it is followed only when it names this session's secret
    (a name, or the ARN Secrets Manager gave it in this region), never another.

    Raises:
        ConfigurationError: the record names another secret.
    """
    name = secret_name(session)
    if not recorded or recorded == name:
        return name
    parts = recorded.split(":", 6)
    if (len(parts) == 7 and parts[2] == "secretsmanager" and parts[3] == region
            and parts[5] == "secret" and parts[6].startswith(f"{name}-")
            and len(parts[6]) == len(name) + 7):
        return recorded
    raise ConfigurationError(
        f"the record of session {session} names the key secret {recorded!r}, which is not "
        f"this session's ({name} in {region}): the record was altered or is not this "
        "session's; refusing to attach")
