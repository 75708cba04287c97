"""A pure evaluator of IAM identity and resource policies, for one request.

moto stores policy documents but does not enforce their conditions, so
code whose policies are wrong on AWS (a KMS key the role may not use, a
``kms:ViaService`` for the wrong region, an ``aws:PrincipalArn`` rebuilt
without the role's path) passes against it. :func:`evaluate` decides one
request the way AWS's policy evaluation logic documents, for one account:

1. an explicit ``Deny`` in any policy that applies wins;
2. else an ``Allow`` in an identity policy, or in a resource policy whose
   ``Principal`` names the caller, allows;
3. else the request is implicitly denied.

Supported: ``Action``/``NotAction`` and ``Resource``/``NotResource`` with
``*`` and ``?`` wildcards (actions compare case-insensitively),
``Principal``/``NotPrincipal`` (``"*"``, ``{"AWS": ...}`` ARNs or account
ids, ``{"Service": ...}``), and the condition operators String(Not)Equals,
String(Not)EqualsIgnoreCase, String(Not)Like, Arn(Not)Equals, Arn(Not)Like,
Bool and Null, with the ``...IfExists`` suffix and the ``ForAnyValue:`` /
``ForAllValues:`` prefixes; condition keys compare case-insensitively.
A key missing from the request context makes a condition false, except
that a negated operator (``StringNotLike``, ``ArnNotLike``, ...) and an
``IfExists`` one are then true, and ``ForAllValues`` is true of no values.
Not supported (an unknown operator raises, so a policy is never silently
misread): numeric, date and IP operators, policy variables, permission
boundaries, SCPs and session policies.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

__all__ = ["ContextValue", "Decision", "PolicyError", "Request", "evaluate", "matches"]

#: What a context key may hold: one value, several (multivalued keys such as
#: ``aws:TagKeys``), or a boolean (``aws:SecureTransport``).
ContextValue = str | bool | Sequence[str]
Outcome = Literal["explicit-deny", "allow", "implicit-deny"]
_NEGATED = {"stringnotequals", "stringnotequalsignorecase", "stringnotlike",
            "arnnotequals", "arnnotlike"}
_POSITIVE = {"stringequals", "stringequalsignorecase", "stringlike", "arnequals",
             "arnlike", "bool", "null"}
#: An ARN has six colon-separated parts; ARN operators match part by part.
_ARN_PARTS = 6


class PolicyError(ValueError):
    """A policy uses an element or operator this evaluator does not know."""


@dataclass(frozen=True)
class Request:
    """One request to decide.

    Attributes:
        action: ``service:Action``, e.g. ``s3:PutObject``.
        resource: the resource ARN (``*`` for actions without one).
        principal: the caller's principal ARN, as ``aws:PrincipalArn`` is: for
            an assumed role, the role's ARN with its path.
        context: condition keys of the request (``kms:ViaService``, ...);
            ``aws:PrincipalArn`` is added from ``principal`` if absent.
        caller: the caller's own ARN if it differs (an STS assumed-role
            session ARN), which a resource policy's ``Principal`` may name too.
    """

    action: str
    resource: str
    principal: str
    context: Mapping[str, ContextValue] = field(default_factory=dict)
    caller: str | None = None


@dataclass(frozen=True)
class Decision:
    """The outcome of :func:`evaluate` and the statement that decided it.

    Attributes:
        allowed: whether the request is allowed.
        outcome: ``explicit-deny``, ``allow`` or ``implicit-deny``.
        sid: the ``Sid`` of the deciding statement (None for an implicit
            deny, or a statement without one).
        policy: the name of the policy holding that statement.
    """

    allowed: bool
    outcome: Outcome
    sid: str | None = None
    policy: str | None = None

    def __str__(self) -> str:
        where = f" by {self.policy}" if self.policy else ""
        sid = f" statement {self.sid!r}" if self.sid else ""
        return f"{self.outcome}{where}{sid}"


Policy = Mapping[str, Any] | str


def evaluate(request: Request, identity: Mapping[str, Policy] | Sequence[Policy] = (),
             resource: Mapping[str, Policy] | Sequence[Policy] = ()) -> Decision:
    """Decide ``request`` against identity and resource policies, in AWS's order.

    Args:
        request: the request.
        identity: the caller's identity policies (documents or JSON), by name
            or as a sequence.
        resource: resource policies of the resource (a bucket policy, a key
            policy), whose statements apply only where their ``Principal``
            names the caller.

    Returns:
        The decision, with the deciding statement's Sid and policy name.

    Raises:
        PolicyError: a statement uses an operator or element not supported.
    """
    context = _context(request)
    allow: Decision | None = None
    for kind, policies in (("identity", identity), ("resource", resource)):
        for name, doc in _named(policies, kind):
            for statement in _statements(doc):
                if kind == "resource" and not _principal_matches(statement, request):
                    continue
                if not _applies(statement, request, context):
                    continue
                effect = statement.get("Effect")
                sid = statement.get("Sid")
                if effect == "Deny":
                    return Decision(False, "explicit-deny", sid, name)
                if effect == "Allow" and allow is None:
                    allow = Decision(True, "allow", sid, name)
    return allow or Decision(False, "implicit-deny")


def _named(policies: Mapping[str, Policy] | Sequence[Policy],
           kind: str) -> list[tuple[str, Policy]]:
    if isinstance(policies, Mapping):
        return list(policies.items())
    return [(f"{kind} policy {i}", doc) for i, doc in enumerate(policies)]


def _statements(doc: Policy) -> list[Mapping[str, Any]]:
    parsed: Any = json.loads(doc) if isinstance(doc, str) else doc
    items = parsed.get("Statement", [])
    items = items if isinstance(items, list) else [items]
    return [st for st in items if isinstance(st, Mapping)]


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return [value] if isinstance(value, (str, bool)) else list(value)


def _context(request: Request) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for key, value in request.context.items():
        values[key.lower()] = [_text(v) for v in _listed(value)]
    values.setdefault("aws:principalarn", [request.principal])
    return values


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


@lru_cache(maxsize=4096)
def _pattern(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def matches(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """Whether ``value`` matches an IAM wildcard ``pattern`` (``*`` any run, ``?`` one)."""
    return _pattern(pattern, ignore_case).fullmatch(value) is not None


def _arn_matches(pattern: str, value: str) -> bool:
    want = pattern.split(":", _ARN_PARTS - 1)
    have = value.split(":", _ARN_PARTS - 1)
    if len(want) != _ARN_PARTS or len(have) != _ARN_PARTS:
        return pattern == "*"
    return all(matches(w, h) for w, h in zip(want, have, strict=True))


def _applies(statement: Mapping[str, Any], request: Request,
             context: Mapping[str, list[str]]) -> bool:
    if "Action" in statement:
        if not any(matches(a, request.action, ignore_case=True)
                   for a in _listed(statement["Action"])):
            return False
    elif "NotAction" in statement:
        if any(matches(a, request.action, ignore_case=True)
               for a in _listed(statement["NotAction"])):
            return False
    else:
        raise PolicyError(f"statement {statement.get('Sid')!r} has neither Action nor "
                          "NotAction")
    if "Resource" in statement:
        if not any(matches(r, request.resource) for r in _listed(statement["Resource"])):
            return False
    elif "NotResource" in statement and any(
            matches(r, request.resource) for r in _listed(statement["NotResource"])):
        return False
    conditions = statement.get("Condition") or {}
    return all(_condition(str(op), block, context, statement.get("Sid"))
               for op, block in conditions.items())


def _principal_matches(statement: Mapping[str, Any], request: Request) -> bool:
    if "Principal" in statement:
        return _names(statement["Principal"], request)
    if "NotPrincipal" in statement:
        return not _names(statement["NotPrincipal"], request)
    return False  # a resource-policy statement without a principal names no one


def _names(principal: Any, request: Request) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, Mapping):
        raise PolicyError(f"Principal {principal!r} is neither '*' nor a mapping")
    callers = {request.principal, request.caller or request.principal}
    account = request.principal.split(":")[4] if request.principal.count(":") >= 5 else ""
    for kind, values in principal.items():
        for value in _listed(values):
            if kind == "AWS":
                if value == "*" or value in callers:
                    return True
                if value in (account, f"arn:aws:iam::{account}:root") and \
                        request.principal.endswith(":root"):
                    return True
            elif kind == "Service" and value == request.principal:
                return True
    return False


def _condition(operator: str, block: Any, context: Mapping[str, list[str]],
               sid: str | None) -> bool:
    name = operator.lower()
    qualifier = ""
    if ":" in name:
        qualifier, _, name = name.partition(":")
        if qualifier not in ("foranyvalue", "forallvalues"):
            raise PolicyError(f"statement {sid!r}: unknown set operator {operator!r}")
    if_exists = name.endswith("ifexists") and name != "null"
    base = name.removesuffix("ifexists") if if_exists else name
    if base not in _NEGATED and base not in _POSITIVE:
        raise PolicyError(f"statement {sid!r}: condition operator {operator!r} is not "
                          "supported by starburst.testing.iam")
    if not isinstance(block, Mapping):
        raise PolicyError(f"statement {sid!r}: {operator} must map keys to values")
    return all(_key_holds(base, qualifier, if_exists, [_text(v) for v in _listed(wanted)],
                          context.get(str(key).lower()))
               for key, wanted in block.items())


def _key_holds(base: str, qualifier: str, if_exists: bool, wanted: list[str],
               have: list[str] | None) -> bool:
    if base == "null":
        absent = not have
        return any((w.lower() == "true") == absent for w in wanted)
    negated = base in _NEGATED
    if not have:
        if qualifier == "forallvalues":
            return True
        return negated or if_exists
    positive = base.replace("not", "", 1) if negated else base

    def one(value: str) -> bool:
        hit = any(_value_matches(positive, w, value) for w in wanted)
        return not hit if negated else hit

    if qualifier == "forallvalues":
        return all(one(v) for v in have)
    if qualifier == "foranyvalue" or not negated:
        return any(one(v) for v in have)
    return all(one(v) for v in have)  # negated, single-valued: matches none of the values


def _value_matches(operator: str, wanted: str, value: str) -> bool:
    if operator == "stringequals":
        return wanted == value
    if operator == "stringequalsignorecase":
        return wanted.casefold() == value.casefold()
    if operator == "stringlike":
        return matches(wanted, value)
    if operator in ("arnequals", "arnlike"):  # AWS documents the two as the same match
        return _arn_matches(wanted, value)
    if operator == "bool":
        return wanted.lower() == value.lower()
    raise PolicyError(f"condition operator {operator!r} is not supported")
