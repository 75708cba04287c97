"""GPU workers on AWS Batch (``gpu="nvidia-t4"``), inside the emulated AWS.

The Batch resources are checked against moto's Batch API; jobs run as
local worker processes through the emulated Batch runner, which owns
their status and exit codes (moto alone would mark them FAILED without
Docker).
"""

from __future__ import annotations

import json
import math
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from _support import wait_for, worker_of
from _tasks import double, marked_nap
from click.testing import CliRunner

import starburst
from starburst.aws.clients import client
from starburst.aws.policy_lint import wildcard_writes
from starburst.backends import get_backend_class
from starburst.backends.batch import BatchBackend, job_exit
from starburst.backends.fargate import FargateBackend
from starburst.cli import main
from starburst.gpu import InstancePrice
from starburst.pricing_cache import PriceCache, save
from starburst.scheduling.events import FAILED_TO_START, SPOT_INTERRUPTION
from starburst.testing.batch_runner import HOST_TERMINATED

_TAG = {"starburst:managed": "true"}


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def config_file(aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config file of this test's own (setup writes it), with the emulator's image."""
    path = tmp_path / "config.toml"
    path.write_text(aws.config_path.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setenv("STARBURST_CONFIG", str(path))
    return path


def _settings(idle_timeout: float = 30) -> starburst.Settings:
    """Short intervals: a lost worker is noticed within seconds."""
    return starburst.Settings(lease=4.0, heartbeat=1.0, poll=0.05, idle_timeout=idle_timeout,
                              client_heartbeat=1.0, client_stale=600, timeout_grace=1.0)


@pytest.fixture
def gpu_executor(aws, request) -> Iterator[starburst.Executor]:
    idle = getattr(request, "param", 30)
    ex = starburst.Executor(backend="fargate", gpu="nvidia-t4", workers=2, max_attempts=2,
                            settings=_settings(idle), progress=False)
    try:
        yield ex
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
        wait_for(lambda: not aws.batch.pids(), timeout=20,
                 what="every job process to exit after shutdown")


def test_fargate_with_gpu_and_batch_resolve_to_the_batch_backend():
    assert get_backend_class("fargate", {"gpu": "nvidia-t4"}) is BatchBackend
    assert get_backend_class("batch") is BatchBackend
    assert get_backend_class("fargate", {"gpu": None}) is FargateBackend


@pytest.mark.parametrize(("options", "needles"), [
    ({"gpu": "nvidia-x1"}, ["unknown gpu 'nvidia-x1'", "nvidia-t4"]),
    ({"gpu": "nvidia-t4", "instance_type": "g5.xlarge"},
     ["g5.xlarge carries nvidia-a10g", "g4dn.xlarge"]),
    ({"gpu": "nvidia-t4g", "arch": "x86_64"}, ["arch='x86_64'", "g5g.xlarge", "arm64"]),
    ({"gpu": "nvidia-t4", "spot": "yes"}, ["spot='yes'", "True"]),
    ({"gpu": "nvidia-t4", "cpus": 4}, ["unknown option(s) cpus", "instance_type"]),
    ({"gpu": "nvidia-t4", "cpu": 8, "memory": "20GB"},
     ["cpu=8 and memory=20480 MiB", "4 vCPU and 14592 MiB", "instance_type='g4dn.2xlarge'"]),
])
def test_bad_gpu_options_name_the_cause_and_the_choices(emulated, options, needles):
    with pytest.raises(starburst.ConfigurationError) as info:
        starburst.Executor(backend="fargate", progress=False, **options)
    for needle in needles:
        assert needle in str(info.value)


@pytest.fixture
def price_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private price cache: none on the developer's machine prices a region here."""
    monkeypatch.setenv("STARBURST_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "prices.json"


@pytest.mark.parametrize("cap", ["max_cost", "max_hourly_cost"])
def test_a_cap_in_a_region_without_a_recorded_price_fails_before_anything_exists(
        aws, cap, price_cache):
    with pytest.raises(starburst.ConfigurationError) as info:
        starburst.Executor(backend="fargate", gpu="nvidia-t4", region="eu-west-3",
                           progress=False, **{cap: 1.0})
    assert f"{cap}= needs a price" in str(info.value)
    assert "eu-west-3" in str(info.value)
    assert "instance_rate=" in str(info.value)
    sqs = client("sqs", region="eu-west-3")
    assert not sqs.list_queues().get("QueueUrls")
    assert not client("batch", region="eu-west-3").describe_job_queues()["jobQueues"]


def test_a_region_without_a_recorded_price_runs_with_its_cost_unknown(aws, price_cache):
    """It was refused; now it runs and says the cost is unknown and how to price it."""
    ex = starburst.Executor(backend="fargate", gpu="nvidia-t4", region="eu-west-3",
                            workers=1, progress=False)
    try:
        assert math.isnan(ex._client.session.hourly_rate)
        note = ex._client.session.price_note
        assert note.startswith("cost unknown: no On-Demand price is recorded for g4dn.xlarge "
                               "in 'eu-west-3'")
        assert "instance_rate=" in note
        assert str(ex.cost()) == note
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def test_a_price_from_pricing_refresh_prices_a_region_without_a_shipped_one(aws, price_cache):
    """The GPU price `starburst pricing refresh` cached (GetProducts AmazonEC2) is used."""
    row = InstancePrice("g4dn.xlarge", "eu-west-3", 0.615, False,
                        "AWS Price List API (GetProducts AmazonEC2, endpoint us-east-1) "
                        "(Linux, On-Demand, shared tenancy)", "2026-12-01")
    save(PriceCache(fetched="2026-12-01T00:00:00Z", source="test",
                    gpu={("g4dn.xlarge", "eu-west-3"): row}), price_cache)
    ex = starburst.Executor(backend="fargate", gpu="nvidia-t4", region="eu-west-3",
                            workers=1, progress=False, max_hourly_cost=5.0)
    try:
        assert ex._client.session.hourly_rate == pytest.approx(0.615)
        assert "GetProducts AmazonEC2" in ex._client.session.price_note
        assert "2026-12-01" in ex._client.session.price_note
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def test_instance_rate_prices_a_region_without_a_recorded_price(aws):
    ex = starburst.Executor(backend="fargate", gpu="nvidia-t4", region="eu-west-3",
                            instance_rate=0.6, workers=1, progress=False)
    try:
        assert ex._client.session.hourly_rate == pytest.approx(0.6)
        assert "your On-Demand rate for g4dn.xlarge" in ex._client.session.price_note
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
    with pytest.raises(starburst.ConfigurationError, match="instance_rate=-1"):
        starburst.Executor(backend="fargate", gpu="nvidia-t4", instance_rate=-1,
                           progress=False)


def test_batch_without_gpu_says_what_to_pass(emulated):
    with pytest.raises(starburst.ConfigurationError, match=r"pass gpu=.*nvidia-t4"):
        starburst.Executor(backend="batch", progress=False)


def test_a_host_terminated_job_is_a_spot_interruption():
    job = {"jobId": "j-1", "status": "FAILED", "statusReason": HOST_TERMINATED,
           "startedAt": 1_700_000_000_000, "stoppedAt": 1_700_000_090_500,
           "container": {"exitCode": 137, "reason": "lost"}}
    ex = job_exit(job, "w1", spot=True)
    assert (ex.worker, ex.exit_code, ex.stop_code) == ("w1", 137, SPOT_INTERRUPTION)
    assert ex.started_at == 1_700_000_000.0
    assert ex.stopped_at == 1_700_000_090.5
    assert "container: lost" in (ex.reason or "")
    assert job_exit(job, "w1", spot=False).stop_code == "HostTerminated"
    done = job_exit({"jobId": "j-2", "status": "SUCCEEDED", "container": {"exitCode": 0}},
                    "w2", spot=True)
    assert (done.exit_code, done.stop_code, done.started_at) == (0, None, None)


def test_a_job_whose_container_never_started_is_a_start_failure():
    # Counted toward "workers keep failing to start" (no exit code to go by), so
    # a session whose jobs cannot pull their image or secret ends, naming why.
    for reason in ("CannotPullContainerError: pull access denied",
                   "ResourceInitializationError: unable to pull secrets or registry auth"):
        ex = job_exit({"jobId": "j-3", "status": "FAILED", "statusReason": reason,
                       "container": {}}, "w3", spot=False)
        assert (ex.exit_code, ex.stop_code) == (None, FAILED_TO_START)
        assert reason in (ex.reason or "")


def test_setup_gpu_creates_tagged_batch_resources_and_teardown_removes_them(config_file):
    code, out = _run("setup", "--yes", "--gpu", "nvidia-t4", "--spot")
    assert code == 0, out
    assert "0 vCPU minimum" in out
    assert "ec2/pricing" in out  # the instance price names its source
    batch = client("batch")
    name = "starburst-gpu-g4dn-xlarge-spot"
    env = batch.describe_compute_environments(computeEnvironments=[name])[
        "computeEnvironments"][0]
    resources = env["computeResources"]
    assert resources["type"] == "SPOT"
    assert resources["instanceTypes"] == ["g4dn.xlarge"]
    assert resources["minvCpus"] == 0
    assert resources["ec2Configuration"] == [{"imageType": "ECS_AL2023_NVIDIA"}]
    assert env["tags"] == _TAG
    queue = batch.describe_job_queues(jobQueues=[name])["jobQueues"][0]
    assert queue["computeEnvironmentOrder"][0]["computeEnvironment"] == \
        env["computeEnvironmentArn"]
    assert queue["tags"] == _TAG
    [definition] = batch.describe_job_definitions(status="ACTIVE")["jobDefinitions"]
    props = definition["containerProperties"]
    assert {r["type"]: r["value"] for r in props["resourceRequirements"]} == \
        {"GPU": "1", "VCPU": "4", "MEMORY": "14592"}
    assert props["command"] == ["python", "-m", "starburst.worker"]
    assert props["jobRoleArn"].endswith("role/starburst-task")
    assert definition["tags"] == _TAG
    iam = client("iam")
    policy = iam.get_role_policy(RoleName="starburst-ecs-instance",
                                 PolicyName="starburst-ecs-instance")["PolicyDocument"]
    assert wildcard_writes(policy) == []
    code, out = _run("setup", "--yes", "--gpu", "nvidia-t4", "--spot", "--json")
    assert code == 0, out
    assert json.loads(out)["changes"] == []  # converged
    code, out = _run("setup", "--print-policy", "--gpu", "nvidia-t4")
    assert code == 0, out
    policy = json.loads(out)
    assert wildcard_writes(policy) == []
    jobs = next(st for st in policy["Statement"] if st["Sid"] == "GpuJobs")
    assert "batch:SubmitJob" in jobs["Action"]
    assert all("starburst-gpu-" in r or r.endswith(":job/*") for r in jobs["Resource"])
    code, out = _run("teardown", "--yes")
    assert code == 0, out
    assert not batch.describe_job_queues()["jobQueues"]
    assert not batch.describe_compute_environments()["computeEnvironments"]
    assert not batch.describe_job_definitions(status="ACTIVE")["jobDefinitions"]
    assert "starburst-ecs-instance" not in {
        p["InstanceProfileName"] for p in iam.list_instance_profiles()[
            "InstanceProfiles"]}


# Workers that go idle for a second exit 0 by themselves: their jobs SUCCEED.
# (A job that TerminateJob ends is FAILED on Batch, whatever its exit code.)
@pytest.mark.parametrize("gpu_executor", [1.0], indirect=True)
def test_gpu_map_runs_as_batch_jobs(aws, gpu_executor):
    session = gpu_executor._client.session  # the backend's session: rate and notes
    assert session.hourly_rate == pytest.approx(0.526)  # g4dn.xlarge, us-east-1
    assert "g4dn.xlarge" in session.price_note
    assert "aws.amazon.com/ec2/pricing" in session.price_note
    assert "recorded 2026-" in session.price_note
    assert list(gpu_executor.map(double, range(20))) == [2 * i for i in range(20)]
    batch = client("batch")
    queue = "starburst-gpu-g4dn-xlarge"

    def finished() -> list:
        jobs = [j for status in ("SUBMITTED", "RUNNABLE", "STARTING", "RUNNING",
                                 "SUCCEEDED", "FAILED")
                for j in batch.list_jobs(jobQueue=queue, jobStatus=status)["jobSummaryList"]]
        return jobs if jobs and all(j["status"] in ("SUCCEEDED", "FAILED")
                                    for j in jobs) else []

    jobs = wait_for(finished, timeout=30, what="the idle workers' jobs to end")
    described = batch.describe_jobs(jobs=[j["jobId"] for j in jobs])["jobs"]
    assert {j["status"] for j in described} == {"SUCCEEDED"}
    assert all(j["container"]["exitCode"] == 0 for j in described)
    assert all(j["startedAt"] <= j["stoppedAt"] for j in described)
    assert all(j["tags"]["starburst:session"] == gpu_executor.session_id for j in described)
    assert all(j["container"]["logStreamName"].startswith("starburst-gpu/") for j in described)


def test_a_gpu_worker_killed_mid_chunk_reruns_the_chunk(aws, gpu_executor, tmp_path: Path):
    future = gpu_executor.submit(marked_nap, str(tmp_path), "victim", 2.0)
    marker = tmp_path / "start-victim"
    wait_for(marker.exists, timeout=30, what="the job to start")
    task_pid = int(wait_for(marker.read_text, timeout=5, what="the start marker"))
    first_pid = worker_of(task_pid)  # the job's worker: the task process's parent
    job_id = wait_for(lambda: next((j for j, p in aws.batch.pids().items() if p == first_pid),
                                   None), timeout=10, what="the job running the task")
    marker.unlink()
    aws.batch.kill(job_id, signal.SIGKILL)
    assert future.result(timeout=60) == "victim"
    assert int(marker.read_text()) != task_pid  # it ran again, in another job
    assert gpu_executor.status().attempts >= 2
    [killed] = client("batch").describe_jobs(jobs=[job_id])["jobs"]
    assert killed["status"] == "FAILED"
    assert killed["container"]["exitCode"] == 137


def test_the_gpu_image_swaps_cpu_only_pins_and_says_so():
    from starburst.backends.batch import _gpu_snapshot
    from starburst.envsync.snapshot import Distribution, Snapshot
    from starburst.envsync.target import Target

    snapshot = Snapshot(Target(), (Distribution("numpy", "2.1.0"),
                                   Distribution("torch", "2.5.1+cpu")))
    swapped, note = _gpu_snapshot(snapshot)
    assert [(d.name, d.version) for d in swapped.distributions] == \
        [("numpy", "2.1.0"), ("torch", "2.5.1")]
    assert "torch 2.5.1+cpu -> 2.5.1" in note
    assert _gpu_snapshot(swapped) == (swapped, "")  # nothing left to swap


def test_quota_gpu_reads_the_ec2_quota_and_says_what_fits(aws, monkeypatch):
    from moto.servicequotas.responses import ServiceQuotasResponse

    # moto's Service Quotas has no request history and no ec2 quotas: a fake
    # of the two calls, in the in-process server.
    requests: list[dict] = []

    def request_service_quota_increase(response) -> str:
        p = json.loads(response.body)
        requests.append({"Id": f"r-{len(requests) + 1}", "ServiceCode": p["ServiceCode"],
                         "QuotaCode": p["QuotaCode"], "DesiredValue": p["DesiredValue"],
                         "Status": "PENDING"})
        return json.dumps({"RequestedQuota": requests[-1]})

    def list_requested_service_quota_change_history(response) -> str:
        service = json.loads(response.body or "{}").get("ServiceCode")
        return json.dumps({"RequestedQuotas": [r for r in requests
                                               if r["ServiceCode"] == service]})

    for fn in (request_service_quota_increase, list_requested_service_quota_change_history):
        monkeypatch.setattr(ServiceQuotasResponse, fn.__name__, fn, raising=False)
    monkeypatch.setenv("STARBURST_GPU_VCPU_QUOTA", "64")
    result = CliRunner().invoke(main, ["quota", "--gpu", "nvidia-t4", "--workers", "20",
                                       "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert (out["instance_type"], out["quota_code"]) == ("g4dn.xlarge", "L-DB2E81BA")
    assert (out["quota_vcpu"], out["instances_requested"], out["instances_fit"]) == (64, 20, 16)
    assert out["suggested_quota_vcpu"] == 80
    assert "allows 16 g4dn.xlarge" in out["message"]
    result = CliRunner().invoke(main, ["quota", "--gpu", "nvidia-t4", "--spot",
                                       "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert "'All G and VT Spot Instance Requests' (L-3819A6DF)" in result.output
    assert "2 g4dn.xlarge (4 vCPU, 1 x nvidia-t4 each) fit" in result.output
    result = CliRunner().invoke(main, ["quota", "--gpu", "nvidia-t4", "--workers", "20",
                                       "--request"])
    assert result.exit_code == 0, result.output
    assert "Requested 'Running On-Demand G and VT instances' 80 vCPU" in result.output
    assert (requests[0]["ServiceCode"], requests[0]["QuotaCode"]) == ("ec2", "L-DB2E81BA")
    assert "Open increase request r-1: 80 vCPU, PENDING." in result.output
    bad = CliRunner().invoke(main, ["quota", "--instance-type", "g5.xlarge"])
    assert bad.exit_code != 0
    assert "--instance-type goes with --gpu" in bad.output


def test_teardown_terminates_the_jobs_of_every_page():
    from starburst.aws import batch as aws_batch

    class Pages:
        def paginate(self, jobQueue, jobStatus):
            if jobStatus == "RUNNING":
                yield {"jobSummaryList": [{"jobId": f"j{i}"} for i in range(100)]}
                yield {"jobSummaryList": [{"jobId": "j100"}]}

    class Batch:
        terminated: list[str] = []

        def get_paginator(self, name):
            assert name == "list_jobs"
            return Pages()

        def list_jobs(self, jobQueue, jobStatus):  # one page at most, as AWS answers
            page = next(Pages().paginate(jobQueue, jobStatus), {"jobSummaryList": []})
            return {**page, "nextToken": "more"} if page["jobSummaryList"] else page

        def terminate_job(self, jobId, reason):
            self.terminated.append(jobId)

    fake = Batch()
    aws_batch._terminate_jobs(fake, "starburst-gpu-g4dn-xlarge")
    assert len(fake.terminated) == 101  # the second page too
