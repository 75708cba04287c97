"""The linter of the policies starburst writes: no grant on a wildcard resource that
is not justified.

:data:`WILDCARD_GRANTS` lists, by statement Sid, every grant of a
:mod:`starburst.aws.policies` document on a wildcard resource (``"*"``, or an
ARN that names only a type) with its reason; :func:`unjustified_wildcards`
fails anything else, reads included (the tests run it over every document
starburst produces). :func:`wildcard_writes` is the older, looser check that
``starburst doctor`` applies to roles (write actions on ``*`` outside
:data:`~starburst.aws.policies.UNSCOPABLE_ACTIONS`).
"""

from __future__ import annotations

import json
import re
from typing import Any

from .policies import _ECS_EXEC_WHY, ECS_EXEC_ACTIONS, UNSCOPABLE_ACTIONS

__all__ = ["READ_PREFIXES", "WILDCARD_GRANTS", "actions_of", "unjustified_wildcards",
           "wide_resource", "wildcard_writes"]

#: Verbs that only read; anything else counts as a write for the check.
READ_PREFIXES = ("Get", "List", "Describe", "Head", "Filter", "BatchGet", "Lookup")

_NAMES_ONLY = "a read that reveals names and settings, not data"
#: Every statement of a starburst policy that grants on a wildcard resource
#: (``"*"``, or an ARN that names only a resource type: ``job/*``,
#: ``repository/*``, a ``*`` region or account), by Sid: the actions it may
#: grant there, and why. :func:`unjustified_wildcards` fails anything else.
WILDCARD_GRANTS: dict[str, tuple[tuple[str, ...], str]] = {
    "RegistryLogin": (("ecr:GetAuthorizationToken",),
                      UNSCOPABLE_ACTIONS["ecr:GetAuthorizationToken"]),
    "PullAccountImages": (
        ("ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"),
        "the execution role a session creates when setup was not run: the configured image "
        "may be in any ECR repository of the account in that region; setup's execution role "
        "pulls from the starburst repository only"),
    "AgentUnscopable": (
        ("ecs:DiscoverPollEndpoint", "ecr:GetAuthorizationToken", "ec2:DescribeTags"),
        "the ECS agent of a GPU instance finds its endpoint and reads its instance's tags "
        "before it belongs to a cluster; no ARN exists for either (GPU instance role only)"),
    "EcsExecChannels": (ECS_EXEC_ACTIONS, _ECS_EXEC_WHY),
    "GpuReads": (
        ("batch:DescribeJobs", "batch:DescribeJobQueues", "batch:ListJobs",
         "batch:DescribeComputeEnvironments", "batch:DescribeJobDefinitions",
         "ec2:DescribeInstances", "servicequotas:GetAWSDefaultServiceQuota"),
        "Batch's and EC2's Describe/List calls accept no resource ARN; " + _NAMES_ONLY),
    "GpuStopOwnJobs": (
        ("batch:TerminateJob", "batch:CancelJob"),
        "a job's ARN holds an id Batch makes up at SubmitJob; the statement's condition "
        "aws:ResourceTag/starburst:session limits it to starburst's own jobs"),
    "GpuTagOwnJobs": (
        ("batch:TagResource",),
        "SubmitJob tags the job it creates, whose ARN does not exist yet; the condition "
        "aws:TagKeys allows the starburst:session tag only"),
    "Unscopable": (
        ("ecr:GetAuthorizationToken", "ecs:RegisterTaskDefinition",
         "ecs:DeregisterTaskDefinition", "ecs:DescribeTaskDefinition", "ecs:ListTasks",
         "ecs:ListClusters", "ec2:DescribeVpcs", "ec2:DescribeSubnets",
         "ec2:DescribeSecurityGroups", "logs:DescribeLogGroups", "servicequotas:GetServiceQuota",
         "servicequotas:ListRequestedServiceQuotaChangeHistory",
         "servicequotas:ListRequestedServiceQuotaChangeHistoryByQuota", "pricing:GetProducts",
         "sts:GetCallerIdentity", "iam:ListRoles", "secretsmanager:ListSecrets"),
        "the user's calls that accept no resource ARN: the registry token and task "
        "definitions (bounded by iam:PassRole), and reads that reveal names, not data "
        "(iam:ListRoles, secretsmanager:ListSecrets: `starburst cleanup` finds the roles "
        "and key secrets of ended sessions)"),
    "CountFargateVcpus": (
        ("ecs:DescribeTasks",),
        "the Fargate vCPUs in use count every cluster's tasks (quota.vcpus_in_use); "
        + _NAMES_ONLY),
}


def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def actions_of(policy: dict[str, Any]) -> list[str]:
    """Every action an identity policy allows, in statement order."""
    statements = policy.get("Statement")
    return [action for st in _listed_statements(statements) if st.get("Effect") == "Allow"
            for action in _listed(st.get("Action"))]


def _listed_statements(statements: Any) -> list[dict[str, Any]]:
    items = statements if isinstance(statements, list) else [statements]
    return [st for st in items if isinstance(st, dict)]


def wide_resource(resource: str) -> bool:
    """Whether ``resource`` is a wildcard: ``*``, or an ARN naming no resource of its type
    (its resource part empty, ``*`` or ``<type>/*``, or a ``*`` region or account)."""
    if resource == "*":
        return True
    parts = resource.split(":", 5)
    if len(parts) < 6:
        return True
    _, _, service, region, account, rest = parts
    if "*" in (region, account) or (service not in ("s3", "iam") and not account):
        return True
    return rest in ("*", "") or re.fullmatch(r"[A-Za-z-]+[/:]\*", rest) is not None


def unjustified_wildcards(policy: dict[str, Any] | str) -> list[str]:
    """Problems in any policy starburst writes: an Allow on a wildcard resource
    (:func:`wide_resource`) whose Sid and action are not in :data:`WILDCARD_GRANTS`,
    and ``*`` actions. Each problem starts with the statement's Sid (``?`` if none)."""
    doc = json.loads(policy) if isinstance(policy, str) else policy
    problems: list[str] = []
    for st in _listed_statements(doc.get("Statement")):
        if st.get("Effect") != "Allow":
            continue
        sid = str(st.get("Sid") or "?")
        actions = _listed(st.get("Action"))
        problems += [f"{sid}: action {a!r} grants everything" for a in actions
                     if a == "*" or a.endswith(":*")]
        wide = [r for r in _listed(st.get("Resource")) if wide_resource(r)]
        if not wide:
            continue
        allowed, _ = WILDCARD_GRANTS.get(sid, ((), ""))
        problems += [f"{sid}: {a!r} on {wide[0]!r} is not justified in "
                     "policy_lint.WILDCARD_GRANTS" for a in actions if a not in allowed]
    return problems


def wildcard_writes(policy: dict[str, Any] | str) -> list[str]:
    """Problems in an identity policy: ``*`` actions, and write actions on ``Resource: "*"``
    (or a service-wide ARN) outside :data:`UNSCOPABLE_ACTIONS`."""
    doc = json.loads(policy) if isinstance(policy, str) else policy
    problems: list[str] = []
    for st in _listed_statements(doc.get("Statement")):
        if st.get("Effect") != "Allow":
            continue
        actions = _listed(st.get("Action"))
        resources = _listed(st.get("Resource"))
        for action in actions:
            if action == "*" or action.endswith(":*"):
                problems.append(f"{st.get('Sid', '?')}: action {action!r} grants everything")
        wide = [r for r in resources if r == "*" or r.split(":", 5)[-1] in ("*", "")]
        if not wide:
            continue
        for action in actions:
            verb = action.partition(":")[2]
            if verb.startswith(READ_PREFIXES) or action in UNSCOPABLE_ACTIONS:
                continue
            problems.append(f"{st.get('Sid', '?')}: write action {action!r} on {wide[0]!r}")
    return problems
