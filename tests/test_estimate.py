"""The Fargate estimate: timing a sample, the options, the rule, the command, the demo line."""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from starburst import ConfigurationError
from starburst.cli import main
from starburst.estimate import (
    FASTER_WITHIN,
    MIN_SPEEDUP,
    Option,
    OptionEstimate,
    default_memory,
    demo_line,
    estimate,
    format_dollars,
    format_duration,
    local_seconds,
    options_grid,
    recommend,
    summarize_sample,
    time_sample,
)
from starburst.pricing import PRICES, SPOT_DISCOUNT, FargatePrice, hourly_rate, spot_price
from starburst.simulate import FargateModel


@pytest.fixture(autouse=True)
def _no_price_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's price cache never changes what these tests see."""
    monkeypatch.setenv("STARBURST_CACHE_DIR", str(tmp_path / "cache"))


def ticking(steps: list[float]) -> Iterator[float]:
    """A fake clock: each call advances by the next step (start, stop, start, stop...)."""
    now = 0.0
    for step in itertools.chain(*((0.0, s) for s in steps)):
        now += step
        yield now


# -- timing a sample ----------------------------------------------------------


def test_time_sample_times_k_items_here() -> None:
    seen: list[int] = []
    clock = ticking([0.5, 0.7, 0.6, 9.9])
    timing = time_sample(seen.append, range(100), 3, clock=lambda: next(clock))
    assert seen == [0, 1, 2]
    assert timing.seconds == pytest.approx((0.5, 0.7, 0.6))
    assert timing.per_task == pytest.approx(0.6)
    assert timing.median == pytest.approx(0.6)
    assert "timed 3 calls in this process" in timing.note


def test_a_warm_up_first_call_is_left_out() -> None:
    timing = summarize_sample([2.0, 0.1, 0.12, 0.08])
    assert timing.mean == pytest.approx(0.575)
    assert timing.per_task == pytest.approx(0.1)
    assert "warm-up" in timing.note
    # Too few calls to tell: kept.
    assert summarize_sample([2.0, 0.1]).per_task == pytest.approx(1.05)


def test_time_sample_needs_items_and_propagates_errors() -> None:
    with pytest.raises(ValueError, match="empty"):
        time_sample(print, [], 5)
    with pytest.raises(ValueError, match="k must be"):
        time_sample(print, [1], 0)
    with pytest.raises(ZeroDivisionError):
        time_sample(lambda x: 1 / x, [0], 1)


@given(st.lists(st.floats(0, 1e4, allow_nan=False), min_size=1, max_size=20))
def test_per_task_lies_within_the_measurements(seconds: list[float]) -> None:
    timing = summarize_sample(seconds)
    assert min(seconds) - 1e-9 <= timing.per_task <= max(seconds) + 1e-9
    assert timing.per_task <= timing.mean + 1e-9


# -- options -----------------------------------------------------------------------


def test_options_grid() -> None:
    options, notes = options_grid([10, 50], [1, 4], archs=("x86_64", "arm64"), spot=True)
    assert Option(10, 1, 2048) in options
    assert Option(50, 4, 8192, "x86_64", spot=True) in options
    assert not any(o.spot and o.arch == "arm64" for o in options)
    assert len(options) == 2 * 2 * (2 + 1)
    assert any("x86_64 Linux tasks only" in n for n in notes)
    options, notes = options_grid([10], [1, 4], [2048, 8192])
    assert {(o.cpu, o.memory_mib) for o in options} == {(1, 2048), (1, 8192), (4, 8192)}
    assert notes == ["4 vCPU/2 GiB is not a Fargate size (with 4 vCPU: 8-30 GiB): left out"]
    with pytest.raises(ConfigurationError, match="no valid Fargate size"):
        options_grid([10], [16], [2048])
    with pytest.raises(ConfigurationError, match="not a Fargate size"):
        options_grid([10], [3])
    with pytest.raises(ConfigurationError, match=">= 1"):
        options_grid([0], [1])
    assert [default_memory(c) for c in (0.25, 0.5, 1, 2, 4, 8, 16)] == [
        512, 1024, 2048, 4096, 8192, 16384, 32768]


# -- the estimate ---------------------------------------------------------------------


def test_short_work_stays_local() -> None:
    est = estimate(1_000, 0.01, local_cores=8)
    assert est.local_seconds == pytest.approx(1.25)
    assert est.recommendation.choice is None
    assert est.recommendation.text.startswith("Stay local")
    for o in est.options:
        assert o.wall_seconds > FargateModel().cold_start_min
        assert o.speedup < 1


def test_long_work_goes_to_fargate_by_the_rule() -> None:
    est = estimate(10_000, 1.0, local_cores=8)
    choice = est.recommendation.choice
    assert choice is not None
    qualifying = [o for o in est.options if o.speedup >= MIN_SPEEDUP]
    cheapest = min(o.cost for o in qualifying)
    assert choice.cost <= cheapest * (1 + FASTER_WITHIN)
    assert choice.wall_seconds == min(o.wall_seconds for o in qualifying
                                      if o.cost <= cheapest * (1 + FASTER_WITHIN))
    # More workers: sooner.
    walls = [o.wall_seconds for o in est.options]
    assert walls == sorted(walls, reverse=True)
    # The JSON names the pick, the rule and where every dollar figure comes from.
    data = est.to_json()
    assert data["recommendation"]["option"] == est.options.index(choice)
    assert data["currency"] == "USD"
    assert data["price_sources"] == [
        "https://aws.amazon.com/fargate/pricing/ (Linux, On-Demand), recorded 2026-11-28"]
    json.dumps(data)


def test_spot_uses_the_assumed_discount_and_says_so() -> None:
    est = estimate(2_000, 5.0, workers=[20], spot=True, public_ip=False, local_cores=4)
    on_demand, spot = est.options
    assert spot.option.spot
    assert spot.cost == pytest.approx(on_demand.cost * (1 - SPOT_DISCOUNT))
    assert spot.wall_seconds == on_demand.wall_seconds
    assert "assumed 70% below On-Demand" in spot.price.source
    assert any("assumed 70%" in s for s in est.sources())
    given_rates = estimate(2_000, 5.0, workers=[20], spot=True, spot_rates=(0.01, 0.001),
                           local_cores=4).options[1]
    assert (given_rates.price.vcpu_hour, given_rates.price.gib_hour) == (0.01, 0.001)
    listed = FargatePrice("us-east-1", "x86_64", 0.02, 0.002, 0.0001, source="listed",
                          recorded="2026-11-27")
    from_cache = estimate(2_000, 5.0, workers=[20], spot=True, local_cores=4,
                          spot_table={("us-east-1", "x86_64"): listed}).options[1]
    assert from_cache.price == listed


def test_quota_runs_the_work_in_waves() -> None:
    est = estimate(400, 30.0, workers=[100], cpus=[4], local_cores=8,
                   model=FargateModel(quota_vcpu=40))
    (only,) = est.options
    assert only.workers_running == 10
    assert only.wall_seconds >= 400 * 30 / 10
    assert any("vCPU quota: 40" in a for a in est.assumptions())


def test_the_table_in_use_decides_the_region() -> None:
    table = {("mx-central-1", "x86_64"): FargatePrice("mx-central-1", "x86_64", 0.05, 0.005,
                                                      0.0001, "fetched", "2026-11-28")}
    est = estimate(100, 60.0, workers=[10], region="mx-central-1", table=table)
    assert est.options[0].price.source == "fetched"
    with pytest.raises(ConfigurationError, match="no Fargate price is known for 'mx-central-1'"):
        estimate(100, 60.0, region="mx-central-1")


def test_huge_jobs_are_simulated_with_the_same_total_work() -> None:
    est = estimate(50_000_000, 0.01, workers=[100], local_cores=8)
    assert any("simulated as 1,000,000 tasks" in n for n in est.notes)
    (only,) = est.options
    assert only.wall_seconds >= 50_000_000 * 0.01 / 100


def test_bad_inputs() -> None:
    with pytest.raises(ConfigurationError):
        estimate(0, 1.0)
    with pytest.raises(ConfigurationError):
        estimate(10, math.nan)
    with pytest.raises(ConfigurationError, match="spot discount"):
        spot_price(PRICES[("us-east-1", "x86_64")], 1.0)


@settings(deadline=None, max_examples=40)
@given(tasks=st.integers(1, 3_000), seconds=st.floats(0.001, 120),
       workers=st.lists(st.integers(1, 60), min_size=1, max_size=3, unique=True),
       cpu=st.sampled_from([0.25, 1, 4]), cores=st.integers(1, 64), spot=st.booleans())
def test_every_option_is_bounded_by_the_work_it_pays_for(tasks: int, seconds: float,
                                                         workers: list[int], cpu: float,
                                                         cores: int, spot: bool) -> None:
    est = estimate(tasks, seconds, workers=workers, cpus=[cpu], local_cores=cores, spot=spot)
    assert est.local_seconds == pytest.approx(local_seconds(tasks, seconds, cores))
    for o in est.options:
        rate = hourly_rate(o.price, o.option.cpu, o.option.memory_mib, public_ip=True)
        assert o.worker_hourly == pytest.approx(rate)
        # Every task's seconds are paid at least once, and each worker a minute.
        assert o.cost >= rate * tasks * seconds / 3600 * (1 - 1e-9)
        assert o.cost >= rate * 60 / 3600 * (1 - 1e-9)
        # Nothing finishes before a worker is up plus one task, nor before the bound.
        assert o.wall_seconds >= FargateModel().cold_start_min + seconds - 1e-6
        assert o.wall_seconds >= o.lower_bound_seconds - 1e-6
        assert o.speedup == pytest.approx(est.local_seconds / o.wall_seconds)
    choice = est.recommendation.choice
    if choice is None:
        assert all(o.speedup < MIN_SPEEDUP for o in est.options)
    else:
        assert choice.speedup >= MIN_SPEEDUP
        assert all(choice.cost <= o.cost * (1 + FASTER_WITHIN) + 1e-12
                   for o in est.options if o.speedup >= MIN_SPEEDUP)


@given(st.lists(st.tuples(st.floats(1, 1e5), st.floats(0, 100)), max_size=8),
       st.floats(1, 1e6))
def test_recommend_follows_the_rule(walls_costs: list[tuple[float, float]],
                                    local: float) -> None:
    price = PRICES[("us-east-1", "x86_64")]
    options = [OptionEstimate(Option(i + 1), i + 1, wall, cost, 0.05, local / wall, price,
                              wall) for i, (wall, cost) in enumerate(walls_costs)]
    rec = recommend(options, local)
    good = [o for o in options if o.speedup >= MIN_SPEEDUP]
    if not good:
        assert rec.choice is None
        assert rec.text.startswith("Stay local")
    else:
        assert rec.choice in good
        cheapest = min(o.cost for o in good)
        near = [o for o in good if o.cost <= cheapest * (1 + FASTER_WITHIN)]
        assert rec.choice in near
        assert rec.choice.wall_seconds == min(o.wall_seconds for o in near)
        assert rec.text.startswith("Fargate:")
        assert rec.cheapest is not None
        assert rec.cheapest.cost == cheapest
        assert rec.fastest is not None
        assert rec.fastest.wall_seconds == min(o.wall_seconds for o in options)


def _option(workers: int, wall_min: float, cost: float, *, spot: bool = False) -> OptionEstimate:
    price = PRICES[("us-east-1", "x86_64")]
    return OptionEstimate(Option(workers, spot=spot), workers, wall_min * 60, cost, 0.05,
                          10 * 3600 / (wall_min * 60), price, wall_min * 60)


def test_recommend_prefers_the_faster_plan_within_10_percent_and_shows_both() -> None:
    """10 Spot workers for 102 min at $0.33 was recommended over 100 workers for 11 min at
    $0.35: 6% dearer and 9x sooner, so the faster one is the pick, the cheapest shown too."""
    slow_cheap = _option(10, 102, 0.33, spot=True)
    fast = _option(100, 11, 0.35)
    rec = recommend([slow_cheap, fast], 10 * 3600.0)
    assert rec.choice is fast
    assert rec.cheapest is slow_cheap
    assert rec.fastest is fast
    assert "100 workers" in rec.text
    assert "The cheapest, 10 workers" in rec.text
    assert "needs ~102.0 min for ~$0.33" in rec.text
    assert "within 10% of the cheapest" in rec.text
    dearer = _option(100, 11, 0.40)  # 21% dearer: the cheapest stays the pick
    assert recommend([slow_cheap, dearer], 10 * 3600.0).choice is slow_cheap


def test_formatting() -> None:
    assert [format_duration(s) for s in (0.0061, 4.24, 95.2, 750, 11_160)] == [
        "0.006 s", "4.2 s", "95 s", "12.5 min", "3.1 h"]
    assert [format_dollars(d) for d in (0.00724, 1.4249, 12_345.6)] == [
        "$0.0072", "$1.42", "$12,346"]


# -- the demo line -----------------------------------------------------------------------


def test_demo_line() -> None:
    line = demo_line(5_000, 0.006)
    match = re.fullmatch(
        r"On Fargate \(us-east-1, 1 vCPU/2 GiB, 10 workers\): ~(\d+) s, ~\$(0\.\d{4}) "
        r"\(estimate from the scale model; prices recorded 2026-11-28 from "
        r"https://aws\.amazon\.com/fargate/pricing/ \(Linux, On-Demand\)\)\. "
        r"(Staying local is faster|That is [0-9.]+x (sooner|later) than here)[^`]*"
        r"`starburst estimate --tasks 5000 --task-seconds 0\.006` compares more options\.",
        line)
    assert match, line
    # Ten workers, each billed its one-minute minimum: 10 x 60 s at the hourly rate.
    rate = hourly_rate(PRICES[("us-east-1", "x86_64")], 1, 2048, public_ip=True)
    assert float(match.group(2)) == pytest.approx(10 * 60 * rate / 3600, abs=1e-4)


def test_demo_line_says_when_staying_local_is_faster() -> None:
    """The demo's own work (5,000 tasks of 6 ms) takes ~15 s on 2 cores: no Fargate fleet
    of 10 workers (30-90 s to start) beats that, and the line says so."""
    line = demo_line(5_000, 0.006, local_cores=2, local_wall=15.0)
    assert "Staying local is faster: ~15 s here on 2 cores" in line
    long = demo_line(5_000, 60.0, local_cores=2, local_wall=150_000.0)
    assert "Staying local is faster" not in long
    assert re.search(r"That is [0-9.]+x sooner than here on 2 cores \(~41\.7 h\)\. ", long)
    close = demo_line(200, 1.0, local_cores=2, local_wall=140.0)  # sooner, not 2x sooner
    assert re.search(r"That is 1\.[0-9]x sooner than here on 2 cores \(~2\.3 min\); less "
                     r"than 2x sooner, so `starburst estimate` would stay local\.", close)


def test_demo_prints_the_estimate_after_the_local_run() -> None:
    result = CliRunner().invoke(main, ["demo", "--tasks", "20", "--samples", "2000",
                                       "--workers", "1"])
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("On Fargate (us-east-1, 1 vCPU/2 GiB, 10 workers): ~")
    assert "prices recorded 2026-11-28 from https://aws.amazon.com/fargate/pricing/" in last
    assert "--tasks 20 --task-seconds" in last
    # 20 tiny tasks on one local worker take well under a Fargate worker's start-up.
    assert "Staying local is faster: ~" in last
    assert "here on 1 core;" in last


# -- the command ---------------------------------------------------------------------------


def test_estimate_command_table() -> None:
    result = CliRunner().invoke(main, ["estimate", "--tasks", "10000", "--task-seconds", "1",
                                       "--local-cores", "8"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "10,000 tasks x 1.0 s on Fargate (us-east-1)" in out
    assert "local (8 cores)" in out
    assert re.search(r"x86_64 On-Demand \* .*\b50\b", out), out
    assert "Fargate: 50 workers of 1 vCPU/2 GiB (x86_64 On-Demand)" in out
    assert ("Rule: of the Fargate options that finish at least 2x sooner than the local cores, "
            "the fastest costing within 10% of the cheapest") in out
    assert "https://aws.amazon.com/fargate/pricing/ (Linux, On-Demand), recorded 2026-11-28" \
        in out


def test_estimate_command_json_and_options() -> None:
    result = CliRunner().invoke(main, [
        "estimate", "--tasks", "500", "--task-seconds", "0.2", "--workers", "5,20",
        "--cpu", "1,4", "--memory", "2GB,8GB", "--spot", "--arm", "--region", "us-west-2",
        "--local-cores", "4", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["region"] == "us-west-2"
    labels = {(o["label"], o["workers"], o["cpu"], o["memory_mib"]) for o in data["options"]}
    assert ("arm64 On-Demand", 20, 4.0, 8192) in labels
    assert ("x86_64 Spot", 5, 1.0, 8192) in labels
    assert not any(label == "arm64 Spot" for label, *_ in labels)
    assert len(labels) == 2 * 3 * 3  # workers x sizes x (x86 OD, x86 Spot, arm OD)
    assert data["recommendation"]["stay_local"] is True
    assert any("4 vCPU/2 GiB is not a Fargate size" in n for n in data["notes"])


def test_estimate_command_times_a_function(tmp_path: Path) -> None:
    module = tmp_path / "work.py"
    module.write_text("import time\n\ndef job(x):\n    time.sleep(0.01)\n    return x * 2\n")
    items = tmp_path / "items.jsonl"
    items.write_text("\n".join(str(i) for i in range(40)) + "\n")
    result = CliRunner().invoke(main, [
        "estimate", "--function", f"{module}:job", "--sample", "3", "--args-file", str(items),
        "--workers", "10", "--local-cores", "2", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["tasks"] == 40  # from the args file
    assert len(data["sample"]["seconds"]) == 3
    assert 0.009 <= data["task_seconds"] < 1.0
    assert data["sample"]["per_task"] == data["task_seconds"]


def test_estimate_command_imports_module_names(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sbjobs_for_test.py").write_text("def double(x):\n    return 2 * x\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = CliRunner().invoke(main, ["estimate", "--tasks", "1000", "--function",
                                       "sbjobs_for_test:double", "--sample", "2"])
    assert result.exit_code == 0, result.output
    assert "sbjobs_for_test:double: timed 2 calls in this process" in result.output
    assert "Stay local" in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--tasks", "10"], "exactly one of --task-seconds and --function"),
    (["--tasks", "10", "--task-seconds", "1", "--function", "m:f"], "exactly one"),
    (["--task-seconds", "1"], "give --tasks"),
    (["--tasks", "10", "--task-seconds", "1", "--workers", "0"], "whole numbers >= 1"),
    (["--tasks", "10", "--task-seconds", "1", "--cpu", "3"], "not a Fargate size"),
    (["--tasks", "10", "--task-seconds", "1", "--memory", "lots"], "not a size"),
    (["--tasks", "10", "--task-seconds", "1", "--spot-rates", "0.1"], "two numbers"),
    (["--tasks", "10", "--function", "no_such_module_x:f"], "cannot import"),
    (["--tasks", "10", "--function", "json:no_such_fn"], "has no function"),
    (["--tasks", "10", "--function", "math:sqrt", "--args-file", "/dev/null"], "no items"),
    (["--tasks", "3", "--function", "math:log", "--sample", "1"], "the sample failed"),
])
def test_estimate_command_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["estimate", *args])
    assert result.exit_code != 0
    assert message in result.output, result.output
