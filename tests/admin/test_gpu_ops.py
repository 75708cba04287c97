"""GPU sessions (AWS Batch jobs) in the operations commands, and attach to a GPU session.

`starburst cleanup` must find and stop the Batch jobs of a session that
ended without stopping them, `logs` show their output, `status`/`sessions`
count them and `cost` price them; `starburst.attach` takes a detached GPU
session over. Each end-to-end test starts one GPU executor on the emulator.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from _support import wait_for
from _tasks import chatty, marked_nap
from botocore.stub import Stubber
from click.testing import CliRunner

import starburst
from starburst.aws import inventory
from starburst.aws.clients import client
from starburst.aws.consistency import describe_jobs
from starburst.backends.batch import queue_instance
from starburst.cli import main
from starburst.commands.ops import _Rates
from starburst.pricing import hourly_rate, lookup
from starburst.pricing_cache import spot_price_in_use, table_in_use
from starburst.session import SessionRecord
from starburst.wire.keys import record_key

_QUEUE = "starburst-gpu-g4dn-xlarge"


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def _settings() -> starburst.Settings:
    """Short intervals: a killed worker's chunk is visible again within 2 s."""
    return starburst.Settings(lease=2.0, heartbeat=0.5, poll=0.05, idle_timeout=30,
                              client_heartbeat=1.0, client_stale=600, timeout_grace=1.0)


def _jobs(session: str) -> list[dict]:
    """Every Batch job of ``session`` in the On-Demand T4 queue, any state."""
    batch = client("batch")
    listed = batch.list_jobs(jobQueue=_QUEUE, filters=[
        {"name": "JOB_NAME", "values": [f"{session}-w*"]}])["jobSummaryList"]
    return describe_jobs(batch, [j["jobId"] for j in listed])  # waits for just-submitted ones


def _detached_with_a_running_job(tmp_path: Path, *tasks: tuple) -> str:
    """A detached GPU session whose one job runs the first task when its client leaves."""
    ex = starburst.Executor(backend="fargate", gpu="nvidia-t4", workers=1, detached=True,
                            settings=_settings(), progress=False)
    for fn, *args in tasks:
        ex.submit(fn, *args)
    wait_for((tmp_path / "start-a").exists, timeout=30, what="the first task to start")
    ex.shutdown()  # detached: returns at once, the job runs on
    return ex.session_id


def _mark_ended(aws, session: str) -> None:
    """Rewrite the session's record as ended, as a crashed client past its deadline leaves
    it for `cleanup --orphans`."""
    s3 = client("s3")
    key = f"starburst/{record_key(session)}"
    record = SessionRecord.from_bytes(
        s3.get_object(Bucket=aws.shared.bucket, Key=key)["Body"].read())
    record.state = "ended"
    s3.put_object(Bucket=aws.shared.bucket, Key=key, Body=record.to_bytes())


def test_cleanup_terminates_the_gpu_jobs_an_ended_session_left_running(aws, tmp_path: Path):
    session = _detached_with_a_running_job(tmp_path, (marked_nap, str(tmp_path), "a", 60))
    [job] = _jobs(session)
    assert job["status"] == "RUNNING"
    code, out = _run("status", session, "--json")
    assert code == 0, out
    status = json.loads(out)
    assert (status["running"], status["gpu_jobs"]) == (1, {"RUNNING": 1})
    code, out = _run("sessions", "--json")
    assert code == 0, out
    [row] = json.loads(out)
    assert (row["session"], row["backend"], row["running"]) == (session, "batch", 1)
    code, out = _run("cleanup", "--orphans", "--min-age", "0")
    assert "Nothing to clean up" in out  # its record says it is live: left alone
    _mark_ended(aws, session)
    code, out = _run("cleanup", session, "--dry-run")
    assert code == 0, out
    assert f"would terminate GPU job {job['jobId']} ({session}-w1, RUNNING)" in out
    code, out = _run("cleanup", "--orphans", "--min-age", "0", "--dry-run")
    assert code == 0, out
    assert f"would terminate GPU job {job['jobId']} ({session}-w1, RUNNING)" in out
    assert aws.batch.pids()  # a dry run touches nothing
    code, out = _run("cleanup", "--orphans", "--min-age", "0", "--json")
    assert code == 0, out
    assert any(a.startswith(f"terminate GPU job {job['jobId']}")
               for a in json.loads(out)["actions"])
    wait_for(lambda: not aws.batch.pids(), timeout=20, what="the job's process to stop")
    [job] = _jobs(session)
    assert job["status"] == "FAILED"
    assert f"starburst cleanup (session {session})" in job["statusReason"]
    code, out = _run("cleanup", "--orphans", "--min-age", "0")
    assert "Nothing to clean up" in out


def test_attach_adopts_the_gpu_job_still_running(aws, tmp_path: Path):
    """Attach while the detached session's one job still runs: that job finishes
    the work (no second GPU instance is started beside it) and closing the
    attached client stops it."""
    session = _detached_with_a_running_job(
        tmp_path, (marked_nap, str(tmp_path), "a", 3.0), (chatty, 7))
    with starburst.attach(session, backend="batch", progress=False,
                          settings=_settings()) as handle:
        assert handle.results(timeout=60) == ["a", 7]
        assert handle.status().workers_launched == 0
    [job] = _jobs(session)
    assert job["jobName"] == f"{session}-w1"
    wait_for(lambda: not aws.batch.pids(), timeout=20, what="the adopted job to stop")
    [job] = _jobs(session)
    assert job["status"] in ("SUCCEEDED", "FAILED")


def test_attach_takes_over_a_detached_gpu_session(aws, tmp_path: Path, capsys):
    session = _detached_with_a_running_job(
        tmp_path, (marked_nap, str(tmp_path), "a", 1.0), (chatty, 7))
    # The detached client says how to attach: on Batch, where the session runs.
    assert f"starburst.attach({session!r}, backend='batch')" in capsys.readouterr().err
    aws.batch.kill_all()  # its only worker is lost: attach must start new ones
    # backend="fargate" (what the session was opened with, plus gpu=) finds it too.
    with starburst.attach(session, backend="fargate", progress=False,
                          settings=_settings()) as handle:
        assert handle.results(timeout=60) == ["a", 7]
        assert handle.status().workers_launched >= 1
    jobs = _jobs(session)
    names = [j["jobName"] for j in jobs]
    assert f"{session}-w1" in names
    assert len(names) == len(set(names)) >= 2  # replacements numbered after w1

    def printed() -> str | None:
        code, out = _run("logs", session)
        return out if code == 0 and "hello from stdout 7" in out else None

    out = wait_for(printed, timeout=20, what="the GPU job's output in CloudWatch Logs")
    assert any(line.split()[2].startswith("w") for line in out.splitlines()
               if "hello from stdout 7" in line)  # the worker shown by its job name
    code, out = _run("cost", session, "--json")
    assert code == 0, out
    report = json.loads(out)
    assert (report["state"], report["tasks"], report["gpu_jobs"]) == ("gone", 0, len(jobs))
    gpu = report["rates"]["GPU g4dn.xlarge"]
    assert gpu["hourly_rate"] == pytest.approx(0.526)  # one T4 per g4dn.xlarge
    assert "aws.amazon.com/ec2/pricing" in gpu["source"]
    # Every job that started is billed at least Batch's one-minute minimum.
    assert report["computed"] >= 0.526 / 60 * sum("startedAt" in j for j in jobs) - 1e-9


def test_attach_to_a_gpu_session_that_is_not_there_names_the_cause(aws):
    with pytest.raises(starburst.ConfigurationError,
                       match=r"no GPU session sb-nope in bucket '[^']+' under prefix "
                             r"'starburst'.*pass bucket=, prefix=, region="):
        starburst.attach("sb-nope", backend="batch", progress=False)
    record = SessionRecord(session="sb-cpu", backend="fargate", transport="aws:...")
    client("s3").put_object(Bucket=aws.shared.bucket, Key=f"starburst/{record_key('sb-cpu')}",
                            Body=record.to_bytes())
    with pytest.raises(starburst.ConfigurationError,
                       match=r"without GPU workers.*attach with backend='fargate'"):
        starburst.attach("sb-cpu", backend="batch", progress=False)


def test_cost_prices_fargate_spot_tasks_at_the_spot_rate():
    rates = _Rates("us-east-1", {"spot_discount": 0.5})
    spot = rates.task({"capacityProviderName": "FARGATE_SPOT", "cpu": "1024",
                       "memory": "2048"})
    on_demand = rates.task({"capacityProviderName": "FARGATE", "cpu": "1024",
                            "memory": "2048"})
    arm = rates.task({"cpu": "1024", "memory": "2048",
                      "attributes": [{"name": "ecs.cpu-architecture", "value": "arm64"}]})
    assert spot["hourly_rate"] == pytest.approx(hourly_rate(
        spot_price_in_use("us-east-1", discount=0.5), 1, 2048, public_ip=True))
    assert on_demand["hourly_rate"] == pytest.approx(hourly_rate(
        lookup("us-east-1", table=table_in_use()), 1, 2048, public_ip=True))
    assert arm["hourly_rate"] == pytest.approx(hourly_rate(
        lookup("us-east-1", "arm64", table=table_in_use()), 1, 2048, public_ip=True))
    assert spot["hourly_rate"] < on_demand["hourly_rate"]
    assert list(rates.kinds) == ["Fargate Spot x86_64 1 vCPU 2048 MiB",
                                 "Fargate x86_64 1 vCPU 2048 MiB",
                                 "Fargate arm64 1 vCPU 2048 MiB"]
    assert "50% below On-Demand" in spot["source"]


def test_a_gpu_job_is_priced_by_its_queue_and_an_unknown_price_is_said():
    assert queue_instance(f"arn:aws:batch:us-east-1:1:job-queue/{_QUEUE}-spot")[1] is True
    instance, spot = queue_instance(_QUEUE)
    assert (instance.instance_type, spot) == ("g4dn.xlarge", False)
    with pytest.raises(starburst.ConfigurationError, match="not a starburst GPU job queue"):
        queue_instance("my-queue")
    rates = _Rates("eu-west-3", {})  # no g4dn.xlarge price recorded there
    kind = rates.job({"jobQueue": _QUEUE})
    assert kind["hourly_rate"] == 0.0
    assert kind["source"].startswith("not priced:")
    assert "instance_rate=" in kind["source"]
    given = _Rates("eu-west-3", {"instance_rate": 0.6}).job({"jobQueue": _QUEUE})
    assert given["hourly_rate"] == pytest.approx(0.6)


def test_an_identity_that_may_not_list_batch_gets_no_gpu_jobs_and_is_told(monkeypatch,
                                                                            caplog):
    batch = boto3.client("batch", region_name="us-east-1", aws_access_key_id="x",
                         aws_secret_access_key="y")
    stub = Stubber(batch)
    stub.add_client_error("describe_job_queues", "AccessDeniedException", "not allowed")
    stub.activate()
    monkeypatch.setattr(inventory, "client", lambda service, region=None: batch)
    place = inventory.Place("us-east-1", "bucket", "starburst", "starburst", "/starburst")
    with caplog.at_level("WARNING", logger="starburst"):
        assert inventory.tagged_jobs(place) == {}
    assert "batch:DescribeJobQueues (AccessDeniedException)" in caplog.text
    assert "--print-policy --gpu" in caplog.text
    stub.assert_no_pending_responses()
