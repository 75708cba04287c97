"""A construction that is refused leaves nothing behind (issue #17, defects 5 and 9).

Each refusal (a cap that cannot pay for one worker, no quota, an unknown
option, a failure after the session opened) raises at once, and no
resource carrying the session's id remains: no SQS queue, no S3 object, no
ECS task, no worker process.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

import starburst
from starburst import executor as executor_module
from starburst.aws.clients import client
from starburst.client import Client
from starburst.exceptions import TransportError


@pytest.fixture
def settings() -> starburst.Settings:
    return starburst.Settings(lease=4.0, heartbeat=1.0, poll=0.05, idle_timeout=30,
                              client_heartbeat=1.0, client_stale=600, timeout_grace=1.0)


def _leftovers(aws: Any, session: str) -> list[str]:
    """Every resource of the emulated AWS that carries ``session``."""
    found = list(client("sqs").list_queues(QueueNamePrefix=f"starburst-{session}")
                 .get("QueueUrls", []))
    listing = client("s3").list_objects_v2(Bucket=aws.shared.bucket)
    found += [obj["Key"] for obj in listing.get("Contents", []) if session in obj["Key"]]
    found += client("ecs").list_tasks(cluster=aws.shared.cluster).get("taskArns", [])
    found += [f"pid {pid}" for pid in aws.runner.pids()]
    return found


def _boom(self: Client, state: str) -> None:
    raise TransportError("injected: the first record write failed")


REFUSALS = [
    pytest.param({"max_hourly_cost": 0.0001}, starburst.ConfigurationError,
                 r"max_hourly_cost=\$0.0001 does not pay for one worker", id="max_hourly_cost"),
    pytest.param({"max_cost": 0.0001}, starburst.BudgetExceededError,
                 r"max_cost=\$0.0001 cannot pay .*one-minute minimum", id="max_cost"),
    pytest.param({"bogus": 1}, starburst.ConfigurationError, "bogus", id="unknown-option"),
    pytest.param({"quota": "0.5"}, starburst.ConfigurationError, "quota increase",
                 id="no-quota"),
    pytest.param({"fail_after_open": True}, TransportError, "injected", id="after-open"),
]


@pytest.mark.parametrize(("kwargs", "error", "match"), REFUSALS)
def test_a_refused_construction_leaves_nothing_of_its_session(
        aws: Any, settings: starburst.Settings, monkeypatch: pytest.MonkeyPatch,
        kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    session = f"sb-refused-{time.monotonic_ns()}"
    monkeypatch.setattr(executor_module, "new_session_id", lambda: session)
    kwargs = dict(kwargs)
    if "quota" in kwargs:
        monkeypatch.setenv("STARBURST_VCPU_QUOTA", kwargs.pop("quota"))
    if kwargs.pop("fail_after_open", False):
        monkeypatch.setattr(Client, "_write_record", _boom)
    started = time.monotonic()
    with pytest.raises(error, match=match):
        starburst.Executor(backend="fargate", workers=2, settings=settings, progress=False,
                           **kwargs)
    assert time.monotonic() - started < 30  # at once, not after minutes of waiting
    assert _leftovers(aws, session) == []
