"""Waiting out IAM propagation, and the ECS service-linked role of a fresh account.

IAM is eventually consistent: a role created seconds ago can make ECS
refuse it ("Role is not valid" at RegisterTaskDefinition, "unable to
assume the role" at RunTask), and in an account that never used ECS the
service-linked role ``AWSServiceRoleForECS`` may not exist yet ("Unable
to assume the service linked role"). Those errors, and only those, are
retried with backoff for about a minute, saying once what is awaited;
every other error propagates at once.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable
from typing import TypeVar

from botocore.exceptions import ClientError

from .clients import client
from .errors import error_code, translate_errors

__all__ = ["ECS_SERVICE", "PROPAGATION_WAIT_S", "ensure_ecs_service_linked_role",
           "is_propagation_error", "retry_while_propagating"]

log = logging.getLogger("starburst")
T = TypeVar("T")

#: The service whose service-linked role Fargate tasks need.
ECS_SERVICE = "ecs.amazonaws.com"
#: How long to keep retrying: AWS says IAM changes take "a few seconds" and
#: sometimes longer to be seen everywhere; a minute covers what is reported
#: without hiding a role that is really wrong for long.
PROPAGATION_WAIT_S = 60.0
#: First pause between tries (doubling, jittered, at most _MAX_PAUSE).
_FIRST_PAUSE = 0.25
_MAX_PAUSE = 8.0
#: What ECS says while a new role (or the service-linked role) propagates.
_PROPAGATING = re.compile(
    r"role is not valid|unable to assume the role|unable to assume the service linked role"
    r"|service linked role.*(?:exist|not found)", re.IGNORECASE)
_SERVICE_LINKED = re.compile(r"service linked role", re.IGNORECASE)


def is_propagation_error(exc: BaseException) -> bool:
    """Whether ``exc`` is ECS refusing a role that IAM has not propagated yet."""
    if not isinstance(exc, ClientError):
        return False
    message = str(exc.response.get("Error", {}).get("Message", ""))
    return bool(_PROPAGATING.search(message))


def retry_while_propagating(call: Callable[[], T], *, what: str, region: str,
                            wait: float = PROPAGATION_WAIT_S,
                            sleep: Callable[[float], None] = time.sleep) -> T:
    """``call()``, retried while it fails with a propagation error, for ``wait`` seconds.

    A refusal naming the service-linked role first creates that role
    (:func:`ensure_ecs_service_linked_role`). The first retry logs what is
    awaited; the last error propagates when ``wait`` has passed.
    """
    deadline = time.monotonic() + wait
    pause = _FIRST_PAUSE
    said = False
    linked = False
    while True:
        try:
            return call()
        except ClientError as exc:
            if not is_propagation_error(exc) or time.monotonic() + pause > deadline:
                raise
            message = exc.response.get("Error", {}).get("Message", "")
            if not linked and _SERVICE_LINKED.search(message):
                linked = True
                ensure_ecs_service_linked_role(region=region)
            if not said:
                said = True
                log.warning("starburst: %s: AWS says %r; IAM changes take a while to reach "
                            "ECS, retrying for up to %.0f s", what, message, wait)
            sleep(pause * random.uniform(0.8, 1.0))
            pause = min(_MAX_PAUSE, pause * 2)


def ensure_ecs_service_linked_role(*, region: str) -> None:
    """Create ECS's service-linked role if the account lacks it (AWS's own; never deleted).

    An account that already has it answers ``InvalidInput`` ("has been
    taken"); an identity that may not create it gets AccessDenied, which is
    left to the ECS call that needs the role to report.
    """
    iam = client("iam", region=region)
    with translate_errors("IAM CreateServiceLinkedRole for ECS (AWSServiceRoleForECS)"):
        try:
            iam.create_service_linked_role(AWSServiceName=ECS_SERVICE)
        except ClientError as exc:
            code = error_code(exc)
            if code in ("InvalidInput", "EntityAlreadyExists"):
                return
            if code in ("AccessDenied", "AccessDeniedException"):
                log.info("starburst: may not create ECS's service-linked role (%s); "
                         "assuming it exists", exc)
                return
            raise
