"""`starburst status | sessions | cost | logs | cleanup` against the emulated AWS."""

from __future__ import annotations

import json

import pytest
from _support import wait_for
from click.testing import CliRunner

from starburst.aws import provision, session_role
from starburst.aws.clients import client
from starburst.cli import main
from starburst.session import SessionRecord
from starburst.transport.aws import create_session_queues
from starburst.wire.keys import record_key


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def _put_record(aws, session: str, state: str, **extra: object) -> None:
    record = SessionRecord(session=session, backend="fargate", transport="aws:...",
                           state=state, **extra)  # type: ignore[arg-type]
    s3 = client("s3")
    s3.put_object(Bucket=aws.shared.bucket, Key=f"starburst/{record_key(session)}",
                  Body=record.to_bytes())
    s3.put_object(Bucket=aws.shared.bucket, Key=f"starburst/sessions/{session}/payloads/0",
                  Body=b"payload")


def test_logs_show_what_a_task_printed(finished_session):
    def printed() -> str | None:
        code, out = _run("logs", finished_session)
        return out if code == 0 and "hello from task 41" in out else None
    out = wait_for(printed, timeout=20, what="the task's output in CloudWatch Logs")
    assert "hello from task 41" in out
    code, out = _run("logs", finished_session, "--json", "--since", "10m")
    assert code == 0, out
    assert "hello from task 41" in out
    code, out = _run("logs", finished_session, "--since", "soon")
    assert code != 0
    assert "duration" in out


def test_cost_compares_estimate_and_computed(finished_session):
    code, out = _run("cost", finished_session, "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["tasks"] == 1
    assert report["computed"] > 0  # at least Fargate's one-minute minimum
    assert report["estimated"] >= 0
    assert report["state"] == "gone"  # a clean end removes the record
    code, out = _run("cost", finished_session)
    assert "computed" in out
    assert "estimated" in out


def test_sessions_and_status_read_the_store(aws):
    _put_record(aws, "live1", "running", workers=3)
    _put_record(aws, "old1", "ended")
    code, out = _run("sessions", "--json")
    assert code == 0, out
    assert {r["session"]: r["state"] for r in json.loads(out)} == {"live1": "running",
                                                                  "old1": "ended"}
    code, out = _run("sessions")
    assert "live1" in out
    create_session_queues("live1", region=aws.region, max_receives=10)
    code, out = _run("status", "live1", "--json")
    assert code == 0, out
    status = json.loads(out)
    assert status["state"] == "running"
    assert status["queues"] == 3
    assert status["workers"] == 3
    code, out = _run("status")
    assert "live1" in out
    assert "old1" in out


def _tagged_with(session: str) -> list[str]:
    """Every queue and object still carrying ``session``."""
    left = []
    sqs = client("sqs")
    for url in sqs.list_queues(QueueNamePrefix="starburst-").get("QueueUrls", []):
        if sqs.list_queue_tags(QueueUrl=url).get("Tags", {}).get(provision.SESSION_TAG) == \
                session:
            left.append(url)
    objects = client("s3").list_objects_v2(Bucket="starburst-123456789012-us-east-1",
                                           Prefix=f"starburst/sessions/{session}/")
    left.extend(o["Key"] for o in objects.get("Contents", []))
    return left


def test_cleanup_orphans_leaves_nothing_of_finished_sessions(aws):
    for sid, state in (("done1", "ended"), ("live2", "running")):
        _put_record(aws, sid, state)
        create_session_queues(sid, region=aws.region, max_receives=10)
    create_session_queues("norecord", region=aws.region, max_receives=10)
    assert _tagged_with("done1")
    code, out = _run("cleanup", "--orphans", "--dry-run", "--min-age", "0")
    assert code == 0, out
    assert "would delete" in out
    assert _tagged_with("done1")
    code, out = _run("cleanup", "--orphans", "--min-age", "0", "--json")
    assert code == 0, out
    assert json.loads(out)["actions"]
    assert _tagged_with("done1") == []
    assert _tagged_with("norecord") == []
    assert len(_tagged_with("live2")) == 5  # a live session keeps 3 queues + 2 objects
    code, out = _run("cleanup", "--orphans", "--min-age", "0")
    assert "Nothing to clean up" in out


def test_cleanup_of_one_session_and_young_queues(aws):
    create_session_queues("young", region=aws.region, max_receives=10)
    code, out = _run("cleanup", "--orphans")  # default min-age keeps a starting session
    assert "Nothing to clean up" in out
    code, out = _run("cleanup", "young")
    assert code == 0, out
    assert _tagged_with("young") == []
    code, out = _run("cleanup")
    assert code != 0


def _session_roles() -> set[str]:
    return {r.session for r in session_role.session_roles(region="us-east-1")}


def test_cleanup_removes_the_roles_of_ended_and_crashed_sessions_only(aws):
    def role(sid: str) -> None:
        session_role.create_session_role(sid, region=aws.region, bucket=aws.shared.bucket,
                                         prefix=aws.shared.prefix)

    _put_record(aws, "ended1", "ended")
    _put_record(aws, "live1", "running")
    for sid in ("ended1", "live1", "crashed1"):  # crashed1: a role, no record, no queues
        role(sid)
    code, out = _run("cleanup", "--orphans")  # the default min-age keeps young roles
    assert _session_roles() >= {"live1", "crashed1"}
    code, out = _run("cleanup", "--orphans", "--min-age", "0")
    assert code == 0, out
    assert "delete IAM role starburst-session-crashed1" in out
    assert _session_roles() == {"live1"}
    code, out = _run("cleanup", "live1")
    assert code == 0, out
    assert _session_roles() == set()


def test_cleanup_removes_the_key_secret_and_definitions_a_crashed_client_left(aws):
    # A client killed after its session opened leaves the key secret and the
    # session's own task definition (the role: the test above). An ended
    # session's are removed; a live one's are kept.
    from starburst.aws import session_key

    base = provision.ensure_task_definition(
        image="img:1", cpu=1, memory_mib=2048, region=aws.region, roles=aws.shared.roles,
        log_group=aws.shared.log_group)
    for sid in ("crashed2", "live2"):
        arn = session_key.create_key_secret(sid, bytes(32), region=aws.region)
        session_key.keyed_task_definition(base, session=sid, secret_arn=arn,
                                          region=aws.region)
    _put_record(aws, "live2", "running")
    assert set(session_key.key_secret_sessions(region=aws.region)) >= {"crashed2", "live2"}
    code, out = _run("cleanup", "--orphans", "--min-age", "0")
    assert code == 0, out
    assert "delete the key secret starburst/crashed2/key" in out
    assert set(session_key.key_secret_sessions(region=aws.region)) == {"live2"}
    assert session_key.session_definitions("crashed2", region=aws.region) == []
    assert len(session_key.session_definitions("live2", region=aws.region)) == 1
    code, out = _run("cleanup", "live2")
    assert code == 0, out
    assert not session_key.key_secret_sessions(region=aws.region)
    assert session_key.session_definitions("live2", region=aws.region) == []


def test_quota_command_honours_the_injected_quota_like_the_executor(aws):
    """`starburst quota` reads the quota as the Executor and `doctor` do: the emulator
    injects it (STARBURST_VCPU_QUOTA, moto's Service Quotas lacks Fargate's), and the
    command answers with it at once instead of failing after retries."""
    import time

    from starburst.testing.emulator import EMULATED_VCPU_QUOTA

    started = time.monotonic()
    code, out = _run("quota", "--cpu", "2", "--workers", "5", "--json")
    took = time.monotonic() - started
    assert code == 0, out
    report = json.loads(out)
    assert report["quota_vcpu"] == EMULATED_VCPU_QUOTA
    assert report["quota_source"] == "STARBURST_VCPU_QUOTA"
    assert report["workers_fit"] == 5
    assert took < 10, f"`starburst quota` took {took:.1f} s"
    code, out = _run("quota", "--spot")
    assert code == 0, out
    assert f"{EMULATED_VCPU_QUOTA:g} vCPU (STARBURST_SPOT_VCPU_QUOTA)" in out


def test_cost_estimate_counts_the_one_minute_minimum_like_the_computed_figure(
        finished_session):
    """The estimate (rate x workers x wall) left out Fargate's one-minute minimum that the
    computed figure (per task) applies, so a short run looked ~10x dearer than estimated."""
    code, out = _run("cost", finished_session, "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["workers"] == 1
    assert report["wall_seconds"] < 60  # a short run: the minimum decides both figures
    minimum = report["hourly_rate"] * 60 / 3600
    assert report["estimated"] == pytest.approx(minimum)
    assert report["estimated"] == pytest.approx(report["computed"])
    assert report["billed_seconds_per_worker"] == 60
    code, out = _run("cost", finished_session)
    assert "one-minute minimum" in out
