"""GPU options in the estimate: beside Fargate, priced per instance, slower to start, honest."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from starburst import ConfigurationError
from starburst.cli import main
from starburst.estimate import (
    BATCH_START_MAX,
    BATCH_START_MIN,
    RULE,
    RULE_WITH_GPU,
    Option,
    batch_model,
    estimate,
    gpu_options,
    parse_gpus,
)
from starburst.gpu import GPU_SPOT_DISCOUNT, gpu_instance, resolve_gpu
from starburst.pricing import IPV4_PER_HOUR, PRICES, FargatePrice

T4 = resolve_gpu("nvidia-t4")
A10G_X4 = gpu_instance("g5.12xlarge")


@pytest.fixture(autouse=True)
def _no_price_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's price cache never changes what these tests see."""
    monkeypatch.setenv("STARBURST_CACHE_DIR", str(tmp_path / "cache"))


def fargate_price(region: str) -> FargatePrice:
    """A Fargate price row for a region the shipped table lacks (us-east-1's figures)."""
    return replace(PRICES[("us-east-1", "x86_64")], region=region)


# -- options --------------------------------------------------------------------------


def test_parse_gpus_takes_names_and_instance_types() -> None:
    assert parse_gpus(["nvidia-t4", " g5.12xlarge", "", "T4"]) == [T4, A10G_X4]
    with pytest.raises(ConfigurationError, match="unknown gpu 'tpu'"):
        parse_gpus(["tpu"])
    with pytest.raises(ConfigurationError, match=r"'m5\.large' is not a GPU instance type"):
        parse_gpus(["m5.large"])


def test_gpu_option_is_one_worker_per_gpu() -> None:
    one = Option.on_gpu(3, A10G_X4, spot=True)
    assert (one.cpu, one.memory_mib, one.arch) == (12.0, 49152, "x86_64")
    assert (one.label, one.size, one.backend) == ("nvidia-a10g Spot",
                                                  "g5.12xlarge, 1 of 4 GPUs", "batch")
    assert Option.on_gpu(1, T4).size == "g4dn.xlarge"
    assert Option(1).backend == "fargate"


def test_gpu_options_round_up_to_whole_instances() -> None:
    options, notes = gpu_options([2, 4, 5], [T4, A10G_X4], spot=True)
    counts = [(o.gpu.instance_type, o.workers, o.spot) for o in options if o.gpu]
    assert counts == [
        ("g4dn.xlarge", 2, False), ("g4dn.xlarge", 2, True),
        ("g4dn.xlarge", 4, False), ("g4dn.xlarge", 4, True),
        ("g4dn.xlarge", 5, False), ("g4dn.xlarge", 5, True),
        ("g5.12xlarge", 4, False), ("g5.12xlarge", 4, True),  # 2 and 4 -> one instance
        ("g5.12xlarge", 8, False), ("g5.12xlarge", 8, True),
    ]
    assert notes == [
        "2 workers on g5.12xlarge (4 GPUs each) rounded up to 4: the instance is billed whole",
        "5 workers on g5.12xlarge (4 GPUs each) rounded up to 8: the instance is billed whole"]


# -- the model ------------------------------------------------------------------------


def test_gpu_rows_sit_beside_fargate_with_their_own_start_up_and_price() -> None:
    est = estimate(400, 2.0, workers=[4], gpus=["nvidia-t4"], local_cores=4)
    fargate, gpu = est.options
    assert fargate.option.gpu is None
    assert gpu.option.gpu == T4
    assert gpu.startup_seconds == (BATCH_START_MIN, BATCH_START_MAX)
    assert fargate.startup_seconds == (30.0, 90.0)
    # Same task time unless told otherwise, and the estimate says so.
    assert gpu.task_seconds == fargate.task_seconds == 2.0
    assert any("assume the same task time on GPU as here; pass --gpu-speedup" in line
               for line in est.assumptions())
    # Billed at the instance price (plus its IPv4), every task paid at least once.
    assert gpu.price.source.startswith("https://aws.amazon.com/ec2/pricing/on-demand/")
    assert gpu.worker_hourly == pytest.approx(0.526 + IPV4_PER_HOUR)
    assert gpu.cost >= gpu.worker_hourly * 400 * 2.0 / 3600
    # A worker is up no sooner than the GPU start-up, so the wall time says it.
    assert gpu.wall_seconds >= BATCH_START_MIN + 2.0
    assert gpu.wall_seconds > fargate.wall_seconds
    assert est.rule == RULE_WITH_GPU


def test_speedup_is_the_callers_and_can_win() -> None:
    same = estimate(20_000, 1.0, workers=[10], gpus=["nvidia-t4"], local_cores=8)
    fast = estimate(20_000, 1.0, workers=[10], gpus=["nvidia-t4"], local_cores=8,
                    gpu_speedup=25)
    # 10 workers are not 2x sooner than 8 cores at the same task time: stay local.
    assert same.recommendation.choice is None
    gpu = fast.options[1]
    assert gpu.task_seconds == pytest.approx(0.04)
    assert gpu.wall_seconds < same.options[1].wall_seconds / 3
    assert fast.recommendation.choice is gpu
    assert fast.recommendation.text.startswith(
        "GPU (AWS Batch): 10 workers of g4dn.xlarge (nvidia-t4 On-Demand)")
    assert any("25x faster on the GPU than here, your figure" in line
               for line in fast.assumptions())
    with pytest.raises(ConfigurationError, match="gpu speed-up must be a positive number"):
        estimate(10, 1.0, gpus=["nvidia-t4"], gpu_speedup=0)


def test_short_gpu_jobs_stay_local_and_say_why() -> None:
    est = estimate(40, 0.5, workers=[4], gpus=["nvidia-t4"], local_cores=4)
    assert est.recommendation.choice is None
    assert "no Fargate or GPU option finishes" in est.recommendation.text
    assert "(a GPU instance 2-4 min)" in est.recommendation.text


def test_spot_and_given_rates() -> None:
    est = estimate(100, 1.0, workers=[2], gpus=["nvidia-t4"], spot=True, local_cores=2,
                   public_ip=False)
    spot = next(o for o in est.options if o.option.gpu and o.option.spot)
    assert spot.price.hourly == pytest.approx(0.526 * (1 - GPU_SPOT_DISCOUNT))
    assert spot.price.source.startswith("assumed 60% below On-Demand")
    given = estimate(100, 1.0, workers=[2], gpus=["nvidia-t4"], spot=True, local_cores=2,
                     public_ip=False, region="ap-south-1", cpus=[1],
                     table={("ap-south-1", "x86_64"): fargate_price("ap-south-1")},
                     gpu_rates={"g4dn.xlarge": 0.6}, gpu_spot_rates={"g4dn.xlarge": 0.2})
    od, sp = (o for o in given.options if o.option.gpu)
    assert (od.worker_hourly, od.price.source) == (0.6, "your On-Demand rate for g4dn.xlarge")
    assert (sp.worker_hourly, sp.price.source) == (0.2, "your Spot rate for g4dn.xlarge")
    # An On-Demand rate alone: Spot is that rate less the assumed discount.
    derived = estimate(100, 1.0, workers=[2], gpus=["nvidia-t4"], spot=True, local_cores=2,
                       public_ip=False, gpu_rates={"g4dn.xlarge": 1.0}, gpu_spot_discount=0.5)
    sp = next(o for o in derived.options if o.option.gpu and o.option.spot)
    assert sp.worker_hourly == pytest.approx(0.5)
    assert sp.price.source == ("assumed 50% below On-Demand (your figure); On-Demand: your "
                               "On-Demand rate for g4dn.xlarge")


def test_unpriced_instance_is_an_error_naming_the_fix() -> None:
    with pytest.raises(ConfigurationError, match="--gpu-rate"):
        estimate(10, 1.0, workers=[1], gpus=["g6e.12xlarge"])


def test_gpu_quota_runs_instances_in_waves() -> None:
    est = estimate(200, 1.0, workers=[4], gpus=["nvidia-t4"], local_cores=2,
                   gpu_model=batch_model(quota_vcpu=8))
    gpu = est.options[1]
    assert (gpu.option.workers, gpu.workers_running) == (4, 2)  # 8 vCPU / 4 per g4dn.xlarge
    assert est.options[0].workers_running == 4  # Fargate's own quota is not the GPU one
    assert any("EC2 GPU vCPU quota: 8" in line for line in est.assumptions())


def test_without_gpus_nothing_changes() -> None:
    est = estimate(100, 1.0, workers=[2], local_cores=2)
    assert not est.has_gpu
    assert est.rule == RULE
    assert est.to_json()["gpu_speedup"] is None
    assert not any("GPU" in line for line in est.assumptions())


# -- the command ----------------------------------------------------------------------


def test_command_table_shows_what_each_row_assumes() -> None:
    result = CliRunner().invoke(main, [
        "estimate", "--tasks", "2000", "--task-seconds", "1", "--workers", "10",
        "--local-cores", "4", "--gpu", "nvidia-t4,g5.12xlarge", "--spot"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "2,000 tasks x 1.0 s on Fargate, GPU instances (us-east-1) and here" in out
    for column in ("task time", "start-up", "$/h each"):
        assert column in out
    assert re.search(r"nvidia-t4 .*\b10\b.*g4dn\.xlarge.*1\.0 s \(same\).*2-4 min", out), out
    assert re.search(r"nvidia-a10g .*\b12\b.*g5\.12xlarge", out), out
    assert "GPU rows assume the same task time on GPU; pass --gpu-speedup" in out
    assert "Rule: of the options (Fargate or GPU) that finish at least 2x sooner" in out
    assert "https://aws.amazon.com/ec2/pricing/on-demand/ (Linux, On-Demand), us-east-1, " \
           "recorded 2026-11-28" in out


def test_command_json_includes_the_gpu_options() -> None:
    result = CliRunner().invoke(main, [
        "estimate", "--tasks", "500", "--task-seconds", "0.5", "--workers", "4",
        "--local-cores", "2", "--gpu", "nvidia-t4", "--gpu-speedup", "4",
        "--gpu-spot-rate", "g4dn.xlarge=0.21", "--spot", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    gpu = [o for o in data["options"] if o["backend"] == "batch"]
    assert [o["capacity"] for o in gpu] == ["On-Demand", "Spot"]
    first = gpu[0]
    assert first["gpu"] == {"name": "nvidia-t4", "instance_type": "g4dn.xlarge", "gpus": 1,
                            "vcpus": 4, "memory_mib": 16384, "instances": 4}
    assert first["task_seconds"] == pytest.approx(0.125)
    assert first["startup_seconds"] == [BATCH_START_MIN, BATCH_START_MAX]
    assert first["price"]["instance_hourly"] == pytest.approx(0.526)
    assert gpu[1]["price"]["source"] == "your Spot rate for g4dn.xlarge"
    assert data["gpu_speedup"] == 4
    assert data["recommendation"]["rule"] == RULE_WITH_GPU
    fargate = [o for o in data["options"] if o["backend"] == "fargate"]
    assert fargate
    assert all(o["gpu"] is None for o in fargate)
    assert all(math.isclose(o["task_seconds"], 0.5) for o in fargate)


@pytest.mark.parametrize(("args", "message"), [
    (["--gpu", "nvidia-k80"], "unknown gpu 'nvidia-k80'; known GPUs: nvidia-a100"),
    (["--gpu", "nvidia-t4", "--gpu-rate", "g4dn.xlarge"], "is not INSTANCE_TYPE=DOLLARS"),
    (["--gpu", "nvidia-t4", "--gpu-rate", "g4dn.xlarge=-1"], "is not INSTANCE_TYPE=DOLLARS"),
    (["--gpu-rate", "g4dn.xlarge=0.5"], "go with --gpu"),
    (["--gpu", "nvidia-t4", "--gpu-spot-rate", "g5.xlarge=0.3"],
     "g5.xlarge is not among the --gpu instance types (g4dn.xlarge)"),
    (["--gpu", "nvidia-t4", "--gpu-speedup", "0"], "--gpu-speedup"),
    (["--gpu", "nvidia-t4", "--region", "eu-west-1"],
     "no On-Demand price is recorded for g4dn.xlarge in 'eu-west-1'"),
])
def test_command_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["estimate", "--tasks", "10", "--task-seconds", "1",
                                       *args])
    assert result.exit_code != 0
    assert message in result.output


def test_command_takes_a_rate_where_no_price_is_recorded() -> None:
    result = CliRunner().invoke(main, [
        "estimate", "--tasks", "10", "--task-seconds", "1", "--workers", "2",
        "--region", "eu-west-1", "--gpu", "nvidia-t4", "--gpu-rate", "G4DN.xlarge=0.587",
        "--json"])
    assert result.exit_code == 0, result.output
    gpu = json.loads(result.output)["options"][-1]
    assert gpu["price"]["instance_hourly"] == 0.587
    assert gpu["price"]["region"] == "eu-west-1"
