"""Cost and quota on the Fargate backend, in the emulated AWS."""

from __future__ import annotations

import pytest
from _tasks import double

import starburst
from starburst.cost import LABEL
from starburst.pricing import hourly_rate, lookup


@pytest.fixture
def settings() -> starburst.Settings:
    return starburst.Settings(lease=4.0, heartbeat=1.0, poll=0.05, idle_timeout=30,
                              client_heartbeat=1.0, client_stale=600, timeout_grace=1.0)


def test_cost_is_computed_from_task_timestamps(aws, settings, capsys) -> None:
    with starburst.Executor(backend="fargate", workers=2, settings=settings,
                            progress=False) as ex:
        assert list(ex.map(double, range(6))) == [0, 2, 4, 6, 8, 10]
    report = ex.cost()
    rate = hourly_rate(lookup("us-east-1"), 1, 2048, public_ip=True)
    assert report.finished
    assert report.hourly_rate == pytest.approx(rate)
    launched = ex.status().workers_launched
    # each emulated task ran well under a minute: Fargate bills the minimum
    assert report.worker_seconds == pytest.approx(60 * launched)
    assert report.computed == pytest.approx(rate * launched / 60)
    err = capsys.readouterr().err
    assert f"{launched} workers x ${rate:.4f}/h" in err or "workers x $" in err
    assert LABEL in err


def test_quota_cuts_the_worker_count_and_says_so(aws, settings, monkeypatch, capsys) -> None:
    monkeypatch.setenv("STARBURST_VCPU_QUOTA", "2")
    with starburst.Executor(backend="fargate", workers=5, settings=settings,
                            progress=False) as ex:
        assert ex.workers == 2
        assert list(ex.map(double, range(4))) == [0, 2, 4, 6]
    assert ("Quota allows 2 workers of 1 vCPU (2 vCPU, 0 in use); 5 workers requested: the "
            "work runs on 2 workers (about 3 waves of your tasks).") in capsys.readouterr().err


def test_no_free_vcpu_is_a_clear_error(aws, settings, monkeypatch) -> None:
    monkeypatch.setenv("STARBURST_VCPU_QUOTA", "0.5")
    with pytest.raises(starburst.ConfigurationError, match="quota increase"):
        starburst.Executor(backend="fargate", workers=2, settings=settings, progress=False)


def test_invalid_fargate_size_lists_the_choices(aws) -> None:
    with pytest.raises(starburst.ConfigurationError, match="use memory from"):
        starburst.Executor(backend="fargate", cpu=4, memory="2GB", progress=False)


def test_short_quota_says_how_to_ask_for_more_without_prompting(aws, settings, monkeypatch,
                                                                capsys) -> None:
    monkeypatch.setenv("STARBURST_VCPU_QUOTA", "2")
    with starburst.Executor(backend="fargate", workers=4, settings=settings,
                            progress=False) as ex:
        assert ex.workers == 2
    err = capsys.readouterr().err
    assert "ask for 50 vCPU" in err
    assert "starburst quota --region us-east-1 --cpu 1 --workers 4 --request" in err


def test_auto_quota_request_asks_aws_for_an_increase(aws, settings, monkeypatch,
                                                     capsys) -> None:
    from starburst.aws.quota import QuotaRequest
    from starburst.backends import fargate

    asked: list[float] = []

    def request_increase(desired: float, region: str | None = None) -> QuotaRequest:
        asked.append(desired)
        return QuotaRequest(id="req-1", quota_code="L-3032A538", desired=desired,
                            status="PENDING")

    monkeypatch.setattr(fargate, "request_increase", request_increase)
    monkeypatch.setenv("STARBURST_VCPU_QUOTA", "2")
    with starburst.Executor(backend="fargate", workers=4, settings=settings, progress=False,
                            auto_quota_request=True) as ex:
        assert ex.workers == 2
    assert asked == [50]
    assert "request req-1: PENDING" in capsys.readouterr().err
    with pytest.raises(starburst.ConfigurationError, match="auto_quota_request"):
        starburst.Executor(backend="fargate", auto_quota_request="yes", progress=False)
