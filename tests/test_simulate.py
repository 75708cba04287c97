"""The scale model and the price arithmetic it uses (pure, property-tested)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starburst import ConfigurationError
from starburst.pricing import billed_seconds, hourly_rate, lookup, task_cost
from starburst.simulate import (
    FargateModel,
    Workload,
    lower_bound,
    simulate,
    simulate_seed_design,
)

workloads = st.builds(
    Workload,
    tasks=st.integers(1, 400),
    task_seconds=st.one_of(st.floats(0.5, 300), st.tuples(st.floats(0.5, 20),
                                                          st.floats(20, 200))),
    workers=st.integers(1, 120),
)


@settings(deadline=None, max_examples=60)
@given(workloads, st.integers(0, 5))
def test_lower_bound_never_exceeds_the_simulated_run(wl: Workload, seed: int) -> None:
    result = simulate(wl, seed=seed)
    assert result.failed_tasks == 0
    assert result.lower_bound_makespan <= result.makespan + 1e-6
    assert result.lower_bound_cost <= result.cost + 1e-9
    seed_design = simulate_seed_design(wl, seed=seed)
    assert result.lower_bound_makespan <= seed_design.makespan + 1e-6


def test_simulation_is_reproducible_and_meets_the_makespan_target() -> None:
    wl = Workload(10_000, 1.0, 50)
    a, b = simulate(wl, seed=3), simulate(wl, seed=3)
    assert (a.makespan, a.cost, a.chunks) == (b.makespan, b.cost, b.chunks)
    assert a.makespan_ratio <= 1.05
    assert a.cost_ratio <= 1.05


def test_quota_caps_workers_and_runs_in_waves() -> None:
    model = FargateModel(quota_vcpu=8)
    wl = Workload(100, 60.0, 100, cpu=4)
    assert wl.effective_workers(model) == 2
    result = simulate(wl, model)
    assert result.workers_launched <= 4  # two slots, retired/relaunched at most once more
    assert result.makespan >= 100 * 60 / 2


def test_lost_workers_are_replaced_and_no_task_is_lost() -> None:
    model = FargateModel(worker_loss_per_hour=20.0, max_attempts=50)
    result = simulate(Workload(500, 30.0, 20), model, seed=1)
    assert result.failed_tasks == 0
    assert result.attempts > result.chunks  # some chunks ran twice
    assert result.workers_launched > 20


def test_lower_bound_for_identical_tasks_is_greedy_optimal() -> None:
    model = FargateModel(cold_start_min=10, cold_start_max=10, launch_burst=1000)
    makespan, _ = lower_bound([5.0] * 10, 2, model)
    assert makespan == pytest.approx(10 + 5 * 5)


@given(st.floats(0, 1e6), st.floats(0, 1e4))
def test_billing_has_a_one_minute_minimum(start: float, length: float) -> None:
    billed = billed_seconds(start, start + length)
    assert billed >= 60
    assert billed >= length
    assert billed - max(60.0, length) < 1.0 + 1e-6


def test_prices_have_source_and_date_and_unknown_regions_fail() -> None:
    price = lookup("us-east-1")
    assert price.source.startswith("https://")
    assert price.recorded
    rate = hourly_rate(price, 4, 8192)
    assert rate == pytest.approx(4 * 0.04048 + 8 * 0.004445)
    assert task_cost(rate, 0, 30) == pytest.approx(rate / 60)
    assert lookup("us-east-1", "arm64").vcpu_hour < price.vcpu_hour
    with pytest.raises(ConfigurationError, match="pricing refresh"):
        lookup("mars-north-1")
    assert math.isfinite(rate)
