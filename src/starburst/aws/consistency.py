"""Describing what AWS just created: ECS and Batch are eventually consistent.

A task that RunTask (or ListTasks) returned a moment ago may be answered
``MISSING`` by DescribeTasks, and a job SubmitJob accepted may be left out
of DescribeJobs, for a few seconds. Code that lists and then describes
(attach, status, cleanup, the vCPU count of the quota check) asks again
for those, with a short backoff, instead of taking them for gone. The
backends' pollers do not wait here: they give a just-launched worker a
grace period instead (``_MISSING_GRACE`` in ``backends/fargate.py`` and
``backends/batch.py``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_batch import BatchClient
    from mypy_boto3_batch.type_defs import JobDetailTypeDef
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_ecs.type_defs import TaskTypeDef

__all__ = ["SETTLE_S", "describe_jobs", "describe_tasks"]

#: Seconds to keep asking about a listed task or job Describe* does not know
#: yet: AWS documents no bound, seconds are what is seen; ten is well above
#: that and short enough for a command a person waits on.
SETTLE_S = 10.0
#: DescribeTasks and DescribeJobs take at most 100 ids per call.
_BATCH = 100
#: First pause before asking again (doubling, at most _MAX_PAUSE).
_FIRST_PAUSE = 0.25
_MAX_PAUSE = 2.0


def _settled(ask: Any, ids: Sequence[str], key: Any, settle: float) -> list[Any]:
    """Call ``ask(batch)`` for ``ids`` until each id is answered or ``settle`` s passed."""
    wanted = list(dict.fromkeys(ids))
    found: dict[str, Any] = {}
    deadline = time.monotonic() + settle
    pause = _FIRST_PAUSE
    while True:
        for start in range(0, len(wanted), _BATCH):
            for item in ask(wanted[start:start + _BATCH]):
                found[key(item)] = item
        wanted = [i for i in wanted if i not in found]
        if not wanted or time.monotonic() + pause > deadline:
            return [found[i] for i in ids if i in found]
        time.sleep(pause)
        pause = min(_MAX_PAUSE, pause * 2)


def describe_tasks(ecs: ECSClient, cluster: str, arns: Sequence[str], *,
                   tags: bool = False, settle: float = SETTLE_S) -> list[TaskTypeDef]:
    """DescribeTasks for ``arns``, asking again for the ones answered MISSING.

    Returns the tasks ECS knows within ``settle`` seconds, in the order of
    ``arns``; an ARN still unknown then is left out (it ended long ago).
    """
    def ask(batch: list[str]) -> list[TaskTypeDef]:
        if tags:
            return list(ecs.describe_tasks(cluster=cluster, tasks=batch,
                                           include=["TAGS"]).get("tasks", []))
        return list(ecs.describe_tasks(cluster=cluster, tasks=batch).get("tasks", []))

    return list(_settled(ask, arns, lambda task: task["taskArn"], settle))


def describe_jobs(batch_client: BatchClient, ids: Sequence[str], *,
                  settle: float = SETTLE_S) -> list[JobDetailTypeDef]:
    """DescribeJobs for ``ids``, asking again for the ones it leaves out (see the module)."""
    def ask(batch: list[str]) -> list[JobDetailTypeDef]:
        return list(batch_client.describe_jobs(jobs=batch).get("jobs", []))

    return list(_settled(ask, ids, lambda job: job["jobId"], settle))
