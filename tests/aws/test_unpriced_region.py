"""A region without a known Fargate price runs, its cost shown as unknown; caps are refused.

The emulator runs in us-east-1, so the price table is made to lack us-east-1
(``starburst.pricing_cache.PRICES`` without its rows): exactly what a user in
a region the shipped table does not carry sees before `starburst pricing
refresh`.
"""

from __future__ import annotations

import math

import pytest
from _tasks import double

import starburst
from starburst import pricing_cache
from starburst.aws.clients import client


@pytest.fixture
def unpriced(aws, monkeypatch: pytest.MonkeyPatch, tmp_path) -> str:
    monkeypatch.setenv("STARBURST_CACHE_DIR", str(tmp_path / "cache"))  # no fetched prices
    monkeypatch.setattr(pricing_cache, "PRICES", {
        key: price for key, price in pricing_cache.PRICES.items() if key[0] != aws.region})
    return str(aws.region)


@pytest.fixture
def settings() -> starburst.Settings:
    return starburst.Settings(lease=4.0, heartbeat=1.0, poll=0.05, idle_timeout=30,
                              client_heartbeat=1.0, client_stale=600, timeout_grace=1.0)


def test_an_unpriced_region_runs_with_its_cost_unknown(unpriced, settings, capsys) -> None:
    with starburst.Executor(backend="fargate", workers=1, settings=settings,
                            progress=False) as ex:
        assert list(ex.map(double, range(3))) == [0, 2, 4]
    report = ex.cost()
    assert math.isnan(report.hourly_rate)
    text = str(report)
    assert text.startswith("cost unknown: no Fargate price is known for")
    assert f"starburst pricing refresh --region {unpriced}" in text
    err = capsys.readouterr().err
    assert f"no Fargate price is known for {unpriced!r}" in err
    assert "cost unknown" in err


@pytest.mark.parametrize("cap", [{"max_cost": 1.0}, {"max_hourly_cost": 1.0}])
def test_a_cap_in_an_unpriced_region_is_refused_before_anything_opens(
        unpriced, settings, cap) -> None:
    name = next(iter(cap))
    before = set(client("sqs").list_queues(QueueNamePrefix="starburst-").get("QueueUrls", []))
    with pytest.raises(starburst.ConfigurationError) as caught:
        starburst.Executor(backend="fargate", workers=1, settings=settings, progress=False,
                           **cap)
    message = str(caught.value)
    assert f"{name}= needs a Fargate price" in message
    assert f"starburst pricing refresh --region {unpriced}" in message
    after = set(client("sqs").list_queues(QueueNamePrefix="starburst-").get("QueueUrls", []))
    assert after == before  # no session queue was created
