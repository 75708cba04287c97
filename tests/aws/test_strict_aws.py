"""AWS rules moto lacks (``starburst.testing.StrictRules``) and starburst surviving them.

Each test proves the rule was served (its counter moved) and that
starburst behaved as it must on real AWS.
"""

from __future__ import annotations

import time

import pytest
from _support import wait_for
from test_fargate_backend import _exits, _probe, _python
from test_gpu_batch import _run, _settings, config_file  # noqa: F401 (a fixture)

import starburst
from starburst.admin import ops
from starburst.aws import inventory
from starburst.aws.clients import client
from starburst.backends import fargate


def test_a_task_unknown_to_describe_tasks_right_after_launch_is_not_reported_gone(aws):
    backend, spec = _probe(aws, _python("import time; time.sleep(60)"))
    served = aws.rules.missing_served
    [arn] = backend.launch(1, spec)
    deadline = time.monotonic() + aws.rules.describe_missing_s + 0.5
    while time.monotonic() < deadline:
        assert backend.poll() == []  # MISSING answers inside the grace are not an exit
        time.sleep(0.2)
    assert aws.rules.missing_served > served  # the rule was served, not slept through
    assert backend.running() == [arn]
    wait_for(lambda: arn in aws.runner.pids(), timeout=10, what="the task's process")
    aws.runner.kill(arn)
    [ex] = _exits(backend, 1)
    assert ex.worker == arn
    assert ex.exit_code == 137


def test_a_task_reported_missing_after_the_grace_is_still_stopped_at_close(aws, monkeypatch):
    monkeypatch.setattr(fargate, "_MISSING_GRACE", 0.0)  # trust the first MISSING
    monkeypatch.setattr(aws.rules, "describe_missing_s", 60.0)
    backend, spec = _probe(aws, _python("import time; time.sleep(60)"))
    [arn] = backend.launch(1, spec)
    [ex] = _exits(backend, 1)
    assert ex.worker == arn
    assert "no longer knows" in (ex.reason or "")
    wait_for(lambda: arn in aws.runner.pids(), timeout=10, what="the task's process")
    backend.close()
    assert aws.runner.wait_stopped(arn, timeout=10)  # stopped whatever its last answer


def test_a_fargate_map_starts_no_replacement_for_a_task_describe_does_not_know_yet(aws):
    served = aws.rules.missing_served
    settings = starburst.Settings(poll=0.05, idle_timeout=30)
    with starburst.Executor(backend="fargate", workers=2, settings=settings,
                            progress=False) as ex:
        assert list(ex.map(time.sleep, [0.2] * 20)) == [None] * 20
        sid = ex.session_id
    assert aws.rules.missing_served > served
    tasks = client("ecs").list_tasks(cluster=aws.shared.cluster, desiredStatus="STOPPED")
    stopped = client("ecs").describe_tasks(cluster=aws.shared.cluster,
                                           tasks=tasks["taskArns"], include=["TAGS"])["tasks"]
    ours = [t for t in stopped
            if {"key": "starburst:session", "value": sid} in t.get("tags", [])]
    assert len(ours) == 2  # no replacement for a worker wrongly taken for gone
    assert ex.status().workers_launched == 2
    assert aws.runner.pids() == {}


def test_a_batch_job_describe_jobs_does_not_know_yet_is_not_reported_gone(aws):
    served = aws.rules.missing_served
    ex = starburst.Executor(backend="fargate", gpu="nvidia-t4", workers=1,
                            settings=_settings(), progress=False)
    try:
        assert ex.submit(time.sleep, 0.1).result(timeout=60) is None
        assert aws.rules.missing_served > served
        assert ex.status().workers_launched == 1  # no replacement
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
    wait_for(lambda: not aws.batch.pids(), timeout=20, what="the job to end")


def test_logs_read_past_empty_pages_to_the_end_of_each_stream(aws, finished_session):
    served = aws.rules.empty_pages_served
    events = ops.session_logs(inventory.Place.from_config(), finished_session)
    assert aws.rules.empty_pages_served >= served + 2  # each read met empty pages first
    assert any("hello from task 41" in e["message"] for e in events)


def _map_on_fargate() -> list[int]:
    settings = starburst.Settings(poll=0.05, idle_timeout=30)
    with starburst.Executor(backend="fargate", workers=1, settings=settings,
                            progress=False) as ex:
        return list(ex.map(abs, range(-3, 3)))


def test_roles_created_a_moment_ago_are_waited_for(aws, monkeypatch):
    monkeypatch.setattr(aws.rules, "iam_propagation_s", 2.0)
    aws.reset()  # new roles, as in an account set up a moment ago
    refused = aws.rules.propagation_refusals
    assert _map_on_fargate() == [3, 2, 1, 0, 1, 2]
    assert aws.rules.propagation_refusals > refused  # ECS did refuse them at first


def test_a_fresh_account_gets_the_ecs_service_linked_role(aws):
    iam = client("iam")
    linked = [r["RoleName"] for r in iam.list_roles(
        PathPrefix="/aws-service-role/ecs.amazonaws.com/")["Roles"]]
    for name in linked:
        iam.delete_role(RoleName=name)
    refused = aws.rules.service_linked_refusals
    assert _map_on_fargate() == [3, 2, 1, 0, 1, 2]
    assert aws.rules.service_linked_refusals > refused
    assert iam.list_roles(PathPrefix="/aws-service-role/ecs.amazonaws.com/")["Roles"]


@pytest.mark.usefixtures("config_file")
def test_a_compute_environment_made_before_its_instance_profile_propagated_is_made_again(
        aws, monkeypatch):
    monkeypatch.setattr(aws.rules, "iam_propagation_s", 1.0)
    refused = aws.rules.propagation_refusals
    code, out = _run("setup", "--yes", "--gpu", "nvidia-t4")
    assert code == 0, out
    assert aws.rules.propagation_refusals > refused  # the first one was INVALID
    [env] = client("batch").describe_compute_environments(
        computeEnvironments=["starburst-gpu-g4dn-xlarge"])["computeEnvironments"]
    assert env["status"] == "VALID"
    assert env["computeResources"]["ec2Configuration"] == [{"imageType": "ECS_AL2023_NVIDIA"}]


def test_a_large_incompressible_layer_reaches_the_emulated_ecr_whole(emulated):
    # ECR keeps only the first PATCH of an upload session: the blob must go up as
    # one streamed PATCH (then the commit PUT), whatever its size.
    import hashlib
    import os

    from starburst.envsync.ecrauth import ecr_registry

    if emulated.ecr is None:
        pytest.skip("needs the distribution registry (apt-get install docker-registry)")
    blob = os.urandom(41 * 1024 * 1024)  # incompressible, over two 16 MiB chunks
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    discarded = emulated.ecr.patches_discarded
    with ecr_registry(registry_url=emulated.ecr.url) as registry:
        registry.push_blob("starburst", digest, blob)
        assert registry.get_blob("starburst", digest) == blob
    assert emulated.ecr.patches_discarded == discarded  # nothing was sent twice or dropped




def test_a_second_set_of_rules_or_audit_is_refused_and_the_installed_one_stays(aws):
    from starburst.testing import Audit, StrictRules

    other = StrictRules()
    for second in (other, Audit()):
        with pytest.raises(RuntimeError, match="close it first"):
            second.install()
        second.uninstall()  # not installed: gives nothing back
    aws.rules.install()  # installed already: changes nothing
    served = aws.rules.empty_pages_served
    logs = client("logs")
    logs.create_log_group(logGroupName="starburst-refusal-test")
    logs.create_log_stream(logGroupName="starburst-refusal-test", logStreamName="s")
    page = logs.get_log_events(logGroupName="starburst-refusal-test", logStreamName="s",
                               startFromHead=True)
    assert page["events"] == []
    assert (aws.rules.empty_pages_served - served, other.empty_pages_served) == (1, 0)


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Tokyo"])
def test_a_role_propagates_after_its_window_whatever_the_local_time_zone(zone):
    # moto stamps an IAM role's CreateDate in naive UTC: read as local time, a role
    # stayed unpropagated for good west of UTC (every launch refused for a minute,
    # then failed) and was never refused east of it.
    from moto.core.utils import utcnow

    from starburst.testing import StrictRules

    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("TZ", zone)
            time.tzset()
            rules = StrictRules(iam_propagation_s=0.5)
            created = utcnow()
            assert rules._propagating(created)
            time.sleep(0.6)
            assert not rules._propagating(created)
    finally:
        time.tzset()
