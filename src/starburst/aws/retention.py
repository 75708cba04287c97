"""How long a session's data lives on AWS: one rule for the bucket, the queues and the
session timeout, so a detached run never outlives its own data.

A detached session runs for at most :data:`MAX_SESSION_TIMEOUT`; its task
messages wait in SQS for up to :data:`QUEUE_RETENTION_S` (SQS's maximum),
which is longer; its payloads, results, manifests and session record
live in S3 for :data:`RUN_DATA_DAYS` after they were written, which covers
the longest session and then two weeks to attach and collect results.
Setup and first-use provisioning write the same lifecycle rule
(:func:`lifecycle_rule`).
"""

from __future__ import annotations

from typing import Any

# The longest a detached session may run: a week, well inside the queues'
# 14 days, so no task message expires while its session still runs. It is
# checked with the Executor's options, which must not need boto3; it lives
# with the protocol's other limits, which import nothing of the layers above.
from ..settings import MAX_SESSION_TIMEOUT

__all__ = ["LIFECYCLE_RULE_ID", "LOG_RETENTION_DAYS", "MAX_SESSION_TIMEOUT",
           "QUEUE_RETENTION_S", "RUN_DATA_DAYS", "lifecycle_rule"]

_DAY = 24 * 3600
#: SQS keeps a message at most 14 days (MessageRetentionPeriod's maximum).
QUEUE_RETENTION_S = 14 * _DAY
#: Run data expires this long after it is written: the longest session (7
#: days) plus two weeks to attach and collect the results, rounded up to a
#: month; deleted at shutdown anyway, so this only bounds what a crash leaves.
RUN_DATA_DAYS = 30
#: Worker logs are kept a month, like the run data they explain.
LOG_RETENTION_DAYS = 30
#: Incomplete multipart uploads are billed until aborted: a day is plenty.
ABORT_UPLOADS_DAYS = 1
#: The one lifecycle rule's ID (setup and provisioning write the same rule).
LIFECYCLE_RULE_ID = "starburst-run-data"


def lifecycle_rule(prefix: str) -> dict[str, Any]:
    """The S3 lifecycle rule of the run data under ``prefix``."""
    rule_prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    return {"ID": LIFECYCLE_RULE_ID, "Status": "Enabled", "Filter": {"Prefix": rule_prefix},
            "Expiration": {"Days": RUN_DATA_DAYS},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_UPLOADS_DAYS}}
