"""Cost before, during and after, and the max_cost cap, on real worker processes."""

from __future__ import annotations

import time
from pathlib import Path

import _tasks
import pytest

import starburst
from starburst import backends
from starburst.cost import LABEL, computed_cost
from starburst.scheduling.events import WorkerExit


@pytest.fixture
def billed(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(backends._REGISTRY, "billed",
                        ("_billed_backend", "BilledLocalBackend", ""))
    return "billed"


def test_computed_cost_uses_the_one_minute_minimum() -> None:
    exits = [WorkerExit("a", started_at=0.0, stopped_at=30.0),
             WorkerExit("b", started_at=0.0, stopped_at=90.5),
             WorkerExit("c")]  # never started: costs nothing
    dollars, seconds = computed_cost(exits, 36.0)
    assert seconds == pytest.approx(60 + 91)
    assert dollars == pytest.approx(1.51)


def test_local_backend_costs_nothing(fast_settings: starburst.Settings) -> None:
    with starburst.Executor(workers=1, settings=fast_settings, progress=False) as ex:
        assert list(ex.map(abs, [-1])) == [1]
    report = ex.cost()
    assert report.computed == 0.0
    assert "no cloud cost" in str(report)


def test_cost_after_the_run_comes_from_worker_timestamps(
        billed: str, fast_settings: starburst.Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    with starburst.Executor(billed, workers=2, settings=fast_settings, progress=False) as ex:
        assert list(ex.map(abs, range(-5, 0))) == [5, 4, 3, 2, 1]
        during = ex.cost()
        assert not during.finished
        assert during.spent >= 0.60  # at least one worker's minute at a cent a second
    after = ex.cost()
    assert after.finished
    assert after.estimated_hourly == pytest.approx(72.0)
    # each worker ran well under a minute: billed the minimum
    assert after.worker_seconds == pytest.approx(60 * ex.status().workers_launched)
    assert after.computed == pytest.approx(0.01 * after.worker_seconds)
    err = capsys.readouterr().err
    assert "2 workers x $36.00/h" in err
    assert LABEL in err


def test_max_cost_stops_the_run_and_fails_the_rest(
        billed: str, fast_settings: starburst.Settings) -> None:
    # Two workers commit $1.20 at launch (one minute each at $0.01/s); each
    # task takes ~0.5 s, so 100 tasks project ~$0.50 more: over $1.50.
    started = time.monotonic()
    with starburst.Executor(billed, workers=2, settings=fast_settings, progress=False,
                            max_cost=1.5) as ex:
        out = list(ex.map(_tasks.nap, [0.5] * 100, chunksize=1,
                          return_exceptions=True))
    done = [r for r in out if not isinstance(r, BaseException)]
    over = [r for r in out if isinstance(r, starburst.BudgetExceededError)]
    assert done
    assert over
    assert len(done) + len(over) == 100
    assert "max_cost=$1.50" in str(over[0])
    assert time.monotonic() - started < 30  # it did not run all 100 tasks
    assert ex.status().workers == 0


def test_max_hourly_cost_caps_workers(billed: str, fast_settings: starburst.Settings) -> None:
    with starburst.Executor(billed, workers=8, settings=fast_settings, progress=False,
                            max_hourly_cost=80.0) as ex:
        assert ex.workers == 2
    with pytest.raises(starburst.ConfigurationError, match="max_hourly_cost"):
        starburst.Executor(billed, workers=2, settings=fast_settings, progress=False,
                           max_hourly_cost=1.0)


def test_max_cost_below_one_worker_minute_is_refused_at_once(
        billed: str, fast_settings: starburst.Settings, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # $0.01 per worker-second: the least a run costs is one worker's minute, $0.60.
    # Before: no worker was affordable, nothing failed, the map waited forever.
    monkeypatch.setenv("STARBURST_LOCAL_DIR", str(tmp_path))
    started = time.monotonic()
    with pytest.raises(starburst.BudgetExceededError) as info:
        starburst.Executor(billed, workers=2, settings=fast_settings, progress=False,
                           max_cost=0.5)
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert "max_cost=$0.50 cannot pay for one worker" in message
    assert "at least $0.60" in message
    assert list(tmp_path.iterdir()) == []  # the refused session left nothing behind


def test_max_cost_that_cannot_pay_the_next_worker_fails_the_rest_promptly(
        billed: str, fast_settings: starburst.Settings) -> None:
    # $0.90 pays one worker's first minute ($0.60), not a second one. A worker
    # that dies leaves work nobody can afford to run: it fails, it does not hang.
    with starburst.Executor(billed, workers=1, settings=fast_settings, progress=False,
                            max_cost=0.9, max_attempts=5) as ex:
        out = list(ex.map(_tasks.crash_if, [0, 1, 2], [0, 0, 0], chunksize=1,
                          return_exceptions=True, timeout=30))
    over = [r for r in out if isinstance(r, starburst.BudgetExceededError)]
    assert over, out
    assert "no worker is left" in str(over[0])
    assert "$0.60" in str(over[0])
