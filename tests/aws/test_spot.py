"""Fargate Spot: the spot= option, FARGATE_SPOT launches, fallback, interruption, cost.

The pure parts (option values, the arm64 rule, the scheduler's handling of
a Spot interruption, per-task pricing) run without AWS; the launch tests
drive :class:`FargateBackend` against the emulated ECS with a probe task
definition; one end-to-end run interrupts a worker mid-chunk the way
Fargate Spot does.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from _support import alive, wait_for, worker_of
from _tasks import double, marked_nap
from botocore.awsrequest import AWSResponse

import starburst
from starburst.aws import provision
from starburst.aws.clients import client
from starburst.aws.consistency import describe_tasks
from starburst.aws.propagation import retry_while_propagating
from starburst.aws.quota import vcpus_in_use
from starburst.backends.base import WorkerSpec
from starburst.backends.fargate import (
    ON_DEMAND,
    SPOT,
    FargateBackend,
    spot_mode,
)
from starburst.cost import computed_cost, format_money
from starburst.exceptions import BackendError, ConfigurationError
from starburst.options import ExecutorOptions
from starburst.pricing import SPOT_DISCOUNT_SOURCE, hourly_rate, lookup, spot_price
from starburst.scheduler import Fail, Redeliver, Scheduler
from starburst.scheduling.events import SPOT_INTERRUPTION, WorkerExit
from starburst.testing.task_runner import SPOT_STOPPED_REASON

CAPACITY = ("Capacity is unavailable at this time. Please try again later or in a different "
            "availability zone")
RATES = {ON_DEMAND: 0.05, SPOT: 0.015}


# -- without AWS ---------------------------------------------------------------------


@pytest.mark.parametrize(("value", "mode"), [
    (False, None), (None, None), (True, "prefer"), ("prefer", "prefer"),
    ("require", "require")])
def test_spot_values_map_to_modes(value, mode):
    assert spot_mode(value) == mode


@pytest.mark.parametrize("value", [1, "yes", "Spot", 0.5])
def test_other_spot_values_name_the_choices(value):
    with pytest.raises(ConfigurationError, match=r"spot=.* is not a choice: pass spot=False "
                                                 r".*spot=True or spot='prefer' .*"
                                                 r"spot='require'"):
        spot_mode(value)


def test_graviton_runs_on_fargate_spot(aws, monkeypatch):
    # AWS supports Fargate Spot for ARM64 since 2024 (platform version 1.4.0).
    monkeypatch.setenv("STARBURST_SPOT_VCPU_QUOTA", "1000")
    settings = starburst.Settings(poll=0.05, idle_timeout=30)
    with starburst.Executor(backend="fargate", platform="arm64", spot="require", workers=1,
                            settings=settings, progress=False) as ex:
        assert ex._client.backend.spot == "require"
        assert list(ex.map(abs, [-1, -2])) == [1, 2]
        sid = ex.session_id
    ecs = client("ecs")
    arns = ecs.list_tasks(cluster="starburst", desiredStatus="STOPPED")["taskArns"]
    ours = [t for t in describe_tasks(ecs, "starburst", arns, tags=True)
            if {"key": "starburst:session", "value": sid} in t.get("tags", [])]
    assert ours
    assert {t["capacityProviderName"] for t in ours} == {"FARGATE_SPOT"}
    definition = ecs.describe_task_definition(taskDefinition=ours[0]["taskDefinitionArn"])
    assert definition["taskDefinition"]["runtimePlatform"]["cpuArchitecture"] == "ARM64"


def test_a_spot_interruption_redelivers_without_charging_an_attempt():
    # The release notice was lost: only the exit says what happened.
    sched = Scheduler(max_workers=2, max_attempts=1)
    sched.submit(0, 3)
    sched.launched(["w1", "w2"], 2)
    assert sched.started(0, "w1", "r1", 0.0) == []
    spot = WorkerExit("w1", exit_code=0, stop_code=SPOT_INTERRUPTION,
                      reason=SPOT_STOPPED_REASON)
    assert sched.worker_exited(spot) == [Redeliver(0, "r1")]
    assert (sched.chunks[0].attempts, sched.total_attempts) == (0, 0)
    # The next holder's start is its first attempt, within max_attempts=1 ...
    assert sched.started(0, "w2", "r2", 1.0) == []
    # ... while an ordinary loss is charged and, at max_attempts, fails the chunk.
    crash = WorkerExit("w2", exit_code=137)
    [fail, _] = sched.worker_exited(crash)
    assert isinstance(fail, Fail)
    assert fail.attempts == 1


def test_computed_cost_prices_each_task_at_its_own_rate():
    spot = WorkerExit("a", started_at=0.0, stopped_at=120.0, details={"hourly_rate": "0.36"})
    plain = WorkerExit("b", started_at=0.0, stopped_at=120.0)
    dollars, seconds = computed_cost([spot, plain], 1.8)
    assert dollars == pytest.approx(0.36 * 120 / 3600 + 1.8 * 120 / 3600)
    assert seconds == pytest.approx(240.0)


# -- launches on the emulated ECS ------------------------------------------------------


def _probe(aws, **kwargs: Any) -> tuple[FargateBackend, WorkerSpec]:
    """A backend whose tasks run ``python -c pass`` (each ends at once)."""
    shared = aws.shared
    arn = retry_while_propagating(lambda: client("ecs").register_task_definition(
        family="spot-probe", taskRoleArn=shared.roles.task,
        executionRoleArn=shared.roles.execution, networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
        containerDefinitions=[{
            "name": "worker", "image": "probe", "command": ["python", "-c", "pass"],
            "memoryReservation": 512, "stopTimeout": 120}],
    ), what="a probe task definition", region=aws.region)["taskDefinition"]["taskDefinitionArn"]
    spec = WorkerSpec(env={"STARBURST_SESSION": "sb-spot"}, cpu=0.25, memory_mib=512,
                      image="probe")
    return FargateBackend(session="sb-spot", shared=shared, arch="x86_64",
                          task_definition=arn, spec=spec, rates=RATES, **kwargs), spec


def test_spot_task_definitions_are_their_own_and_reused(aws):
    shared = aws.shared
    kw = {"image": "img:1", "cpu": 1, "memory_mib": 2048, "region": shared.region,
          "roles": shared.roles, "log_group": shared.log_group}
    on_demand = provision.ensure_task_definition(**kw)
    spot = provision.ensure_task_definition(**kw, stop_timeout=provision.SPOT_STOP_TIMEOUT)
    assert spot != on_demand
    assert provision.ensure_task_definition(**kw, stop_timeout=120) == spot
    ecs = client("ecs")
    [plain] = ecs.describe_task_definition(
        taskDefinition=on_demand)["taskDefinition"]["containerDefinitions"]
    assert "stopTimeout" not in plain  # ECS's default, 30 s
    assert "STARBURST_STOP_TIMEOUT" not in {e["name"] for e in plain["environment"]}
    with pytest.raises(ConfigurationError, match="Fargate accepts 2 to 120 seconds"):
        provision.ensure_task_definition(**kw, stop_timeout=300)


def _refuse_spot(backend: FargateBackend) -> list[bool]:
    """Make RunTask on FARGATE_SPOT answer "no capacity"; return, per call, whether it was Spot."""
    calls: list[bool] = []
    backend.ecs.meta.events.register(
        "provide-client-params.ecs.RunTask",
        lambda params, **_: calls.append("capacityProviderStrategy" in params))

    def refuse(**_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if not calls[-1]:
            return None  # On-Demand: the emulator starts it
        return AWSResponse("http://127.0.0.1/", 200, {}, None), {
            "tasks": [], "failures": [{"reason": CAPACITY}]}

    backend.ecs.meta.events.register("before-call.ecs.RunTask", refuse)
    return calls


def _stopped(backend: FargateBackend, n: int) -> list[WorkerExit]:
    found: list[WorkerExit] = []

    def more() -> bool:
        found.extend(backend.poll())
        return len(found) >= n

    wait_for(more, timeout=20, what=f"{n} task(s) to stop")
    return found


def test_spot_tasks_run_on_fargate_spot_and_are_priced_as_spot(aws):
    backend, spec = _probe(aws, spot="require")
    sent: list[dict[str, Any]] = []
    backend.ecs.meta.events.register("provide-client-params.ecs.RunTask",
                                     lambda params, **_: sent.append(dict(params)))
    [arn] = backend.launch(1, spec)
    assert sent[0]["capacityProviderStrategy"] == [{"capacityProvider": "FARGATE_SPOT",
                                                    "weight": 1}]
    assert "launchType" not in sent[0]
    [task] = describe_tasks(client("ecs"), "starburst", [arn])
    assert task["capacityProviderName"] == "FARGATE_SPOT"
    [ex] = _stopped(backend, 1)
    assert ex.details["capacity_provider"] == "FARGATE_SPOT"
    assert float(ex.details["hourly_rate"]) == RATES[SPOT]


def test_prefer_falls_back_to_on_demand_once_said_and_tries_spot_again(aws):
    said: list[str] = []
    backend, spec = _probe(aws, spot="prefer",
                           on_output=lambda worker, stream, line: said.append(line))
    calls = _refuse_spot(backend)
    first = backend.launch(2, spec)
    assert len(first) == 2
    assert calls == [True, False]  # Spot refused, then one On-Demand call for both
    tasks = describe_tasks(client("ecs"), "starburst", first)
    assert {t.get("launchType") for t in tasks} == {"FARGATE"}
    assert said == [f"starburst: Fargate Spot capacity unavailable in {aws.region}: launched "
                    f"2 workers On-Demand at {format_money(RATES[ON_DEMAND], 3)}/h instead (Spot: "
                    f"{format_money(RATES[SPOT], 3)}/h); later launches try Spot first again"]
    second = backend.launch(1, spec)
    assert len(second) == 1
    assert calls == [True, False, True, False]  # Spot first again, On-Demand after it
    assert len(said) == 1  # said once
    assert backend.fallbacks == 3
    exits = _stopped(backend, 3)
    assert {float(ex.details["hourly_rate"]) for ex in exits} == {RATES[ON_DEMAND]}


@pytest.mark.parametrize(("limits", "why"), [
    ({"on_demand_limit": 1}, "the On-Demand vCPU quota has no room for them"),
    ({"max_hourly_cost": 0.11}, "max_hourly_cost=$0.11 does not pay for them On-Demand"),
])
def test_prefer_falls_back_only_as_far_as_quota_and_hourly_cap_allow(aws, limits, why):
    said: list[str] = []
    backend, spec = _probe(aws, spot="prefer", **limits,
                           on_output=lambda worker, stream, line: said.append(line))
    _refuse_spot(backend)
    assert len(backend.launch(3, spec)) == (1 if "on_demand_limit" in limits else 2)
    assert said[0].endswith(f" not started: {why}")
    _stopped(backend, 1)


def test_the_hourly_cap_counts_live_fallbacks_at_their_on_demand_rate(aws):
    said: list[str] = []
    backend, spec = _probe(aws, spot="prefer", max_hourly_cost=0.11,
                           on_output=lambda worker, stream, line: said.append(line))
    calls = _refuse_spot(backend)
    fallbacks = backend.launch(3, spec)
    assert len(fallbacks) == 2  # 2 x $0.05/h On-Demand of the $0.11/h
    assert [backend.rate_of(arn) for arn in fallbacks] == [RATES[ON_DEMAND]] * 2
    # $0.01/h is left: not even one Spot worker ($0.015/h) is asked for.
    assert backend.launch(1, spec) == []
    assert calls == [True, False]
    assert said[-1] == ("starburst: max_hourly_cost=$0.11: the workers running now (On-Demand "
                        "ones cost $0.05/h) leave room for 0 of 1 more; later launches start "
                        "the rest as room frees up")
    _stopped(backend, 2)
    assert [backend.rate_of(arn) for arn in fallbacks] == [None, None]  # gone: not asked


def test_require_starts_fewer_and_says_it_waits_for_spot(aws):
    said: list[str] = []
    backend, spec = _probe(aws, spot="require",
                           on_output=lambda worker, stream, line: said.append(line))
    calls = _refuse_spot(backend)
    assert backend.launch(3, spec) == []
    assert backend.launch(3, spec) == []
    assert calls == [True, True]  # never On-Demand
    assert said == [f"starburst: Fargate Spot capacity unavailable in {aws.region}: started "
                    "0 of 3 workers; spot='require' waits for Spot capacity (later launches "
                    "try again)"]


def _refuse_arm64_on_spot(backend: FargateBackend) -> None:
    """A region that still refuses ARM64 on Fargate Spot: RunTask on FARGATE_SPOT fails."""
    def refuse(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if b"FARGATE_SPOT" not in params.get("body", b""):
            return None  # the On-Demand fallback goes through
        return AWSResponse("http://127.0.0.1/", 400, {}, None), {"Error": {
            "Code": "InvalidParameterException",
            "Message": "The FARGATE_SPOT capacity provider does not support the ARM64 "
                       "CPU architecture."}}

    backend.ecs.meta.events.register("before-call.ecs.RunTask", refuse)


def test_a_region_refusing_arm64_on_spot_fails_a_require_session_saying_what_to_pass(aws):
    backend, spec = _probe(aws, spot="require")
    _refuse_arm64_on_spot(backend)
    with pytest.raises(BackendError) as info:
        backend.launch(1, spec)
    text = str(info.value)
    assert "AWS refused to run arm64 workers on Fargate Spot" in text
    assert "platform='x86_64'" in text
    assert "spot=False" in text


def test_a_region_refusing_arm64_on_spot_runs_a_prefer_session_on_demand(aws):
    said: list[str] = []
    backend, spec = _probe(aws, spot="prefer",
                           on_output=lambda worker, stream, line: said.append(line))
    _refuse_arm64_on_spot(backend)
    [arn] = backend.launch(1, spec)
    [task] = describe_tasks(client("ecs"), "starburst", [arn])
    assert task.get("launchType") == "FARGATE"
    assert backend.launch(1, spec)  # later launches go On-Demand at once
    assert len(said) == 1
    assert "refused arm64 workers on Fargate Spot" in said[0]
    assert "On-Demand" in said[0]


def test_open_session_plans_against_the_spot_quota_and_prices_spot(aws, monkeypatch):
    monkeypatch.setenv("STARBURST_SPOT_VCPU_QUOTA", "3")
    monkeypatch.setenv("STARBURST_VCPU_QUOTA", "2")
    options = ExecutorOptions.build(backend="fargate", spot=True, workers=5,
                                    image="example/worker:1")
    session = FargateBackend.open_session(session="sb-spot-open", options=options)
    backend = session.backend
    try:
        assert isinstance(backend, FargateBackend)
        assert (backend.spot, session.max_workers, backend.on_demand_limit) == ("prefer", 3, 2)
        on_demand = lookup(aws.region)
        public_ip = aws.shared.network.assign_public_ip
        assert session.hourly_rate == pytest.approx(
            hourly_rate(spot_price(on_demand), 1, 2048, public_ip=public_ip))
        assert backend.rates[ON_DEMAND] == pytest.approx(
            hourly_rate(on_demand, 1, 2048, public_ip=public_ip))
        assert "Fargate Spot" in session.price_note
        assert SPOT_DISCOUNT_SOURCE in session.price_note
        assert any(n.startswith("Fargate Spot: Quota allows 3 workers") for n in session.notes)
        ecs = client("ecs")
        [cluster] = ecs.describe_clusters(clusters=[aws.shared.cluster])["clusters"]
        assert {"FARGATE", "FARGATE_SPOT"} <= set(cluster["capacityProviders"])
        [arn] = [a for a in ecs.list_task_definitions()["taskDefinitionArns"]
                 if ":task-definition/starburst-x86_64-" in a]
        [container] = ecs.describe_task_definition(
            taskDefinition=arn)["taskDefinition"]["containerDefinitions"]
        assert container["stopTimeout"] == 120
        assert {"name": "STARBURST_STOP_TIMEOUT", "value": "120"} in container["environment"]
    finally:
        backend.close()
        session.transport.destroy()
        session.transport.close()


# -- end to end ----------------------------------------------------------------------


def test_an_interrupted_worker_finishes_its_task_and_hands_back_the_rest(aws, tmp_path: Path,
                                                                        monkeypatch):
    # moto has no Fargate quotas: inject the Spot one as the emulator does the On-Demand one.
    monkeypatch.setenv("STARBURST_SPOT_VCPU_QUOTA", "1000")
    settings = starburst.Settings(lease=4.0, heartbeat=1.0, poll=0.05, idle_timeout=30,
                                  client_heartbeat=1.0, client_stale=600, timeout_grace=1.0)
    with starburst.Executor(backend="fargate", spot=True, workers=2, max_attempts=1,
                            settings=settings, progress=False) as ex:
        results = ex.map(marked_nap, [tmp_path] * 6, range(6), [0.8] * 6, chunksize=3)
        start = tmp_path / "start-0"
        wait_for(start.exists, timeout=60, what="the first task to start")
        pid = int(start.read_text())  # the task process; its worker is its parent
        worker = worker_of(pid)
        by_pid = {p: arn for arn, p in aws.runner.pids().items()}
        aws.runner.interrupt(by_pid[worker])
        # Both hold Spot vCPUs: the interrupted one finishes its task first.
        assert vcpus_in_use(region=aws.region, spot=True) >= 1
        assert list(results) == list(range(6))
    [gone] = client("ecs").describe_tasks(cluster="starburst",
                                          tasks=[by_pid[worker]])["tasks"]
    assert (gone["containers"][0]["exitCode"], gone["stopCode"]) == (0, SPOT_INTERRUPTION)
    assert gone["stoppedReason"] == SPOT_STOPPED_REASON
    # Task 0 finished on the interrupted worker (not run again); 1 and 2 ran elsewhere.
    assert int((tmp_path / "start-0").read_text()) == pid
    assert int((tmp_path / "start-1").read_text()) != pid
    assert int((tmp_path / "start-2").read_text()) != pid
    status = ex.status()
    assert status.tasks_failed == 0
    report = ex.cost()
    assert report.computed == pytest.approx(
        report.hourly_rate * status.workers_launched / 60)  # every task Spot, < 1 minute


def test_a_prefer_session_without_spot_capacity_spends_at_the_on_demand_rate(aws, monkeypatch):
    monkeypatch.setenv("STARBURST_SPOT_VCPU_QUOTA", "1000")
    # Short intervals, so the retired worker stops (and the test ends) within a second.
    settings = starburst.Settings(poll=0.05, idle_timeout=30, heartbeat=1.0,
                                  client_heartbeat=1.0)
    with starburst.Executor(backend="fargate", spot="prefer", workers=1, max_cost=5.0,
                            settings=settings, progress=False) as ex:
        backend = ex._client.backend
        assert isinstance(backend, FargateBackend)
        calls = _refuse_spot(backend)  # before any work: nothing launched yet
        assert ex.submit(double, 21).result(timeout=60) == 42
        assert calls == [True, False]  # Spot refused, started On-Demand
        on_demand = backend.rates[ON_DEMAND]
        # The live spend and the budget count the worker's first minute On-Demand,
        # not at the session's (Spot) rate.
        assert ex.cost().spent == pytest.approx(on_demand / 60)
        assert ex._client.scheduler.spent(time.monotonic()) == pytest.approx(on_demand / 60)
        assert on_demand > 2 * ex.cost().hourly_rate  # the Spot rate


def test_a_task_that_outlasts_the_stop_window_is_interrupted_and_its_chunk_released(
        tmp_path: Path, monkeypatch):
    # A 0.6 s window after SIGTERM (stop timeout less the 15 s margin); the task needs 2 s.
    monkeypatch.setenv("STARBURST_STOP_TIMEOUT", "15.6")
    with starburst.Executor(backend="local", workers=2, max_attempts=1, progress=False) as ex:
        results = ex.map(marked_nap, [tmp_path] * 2, range(2), [2.0, 0.1], chunksize=2)
        start = tmp_path / "start-0"
        wait_for(start.exists, timeout=30, what="the first task to start")
        pid = int(start.read_text())
        os.kill(pid, signal.SIGTERM)
        time.sleep(0.3)
        assert alive(pid)  # the task was given its window ...
        wait_for(lambda: not alive(pid), timeout=1.2,
                 what="the worker to give up at the end of the window")  # ... and no more
        assert list(results) == [0, 1]
    assert int(start.read_text()) != pid  # the released chunk ran on another worker
    assert ex.status().tasks_failed == 0
