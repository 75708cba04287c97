"""FargateBackend against the emulated ECS: a task's life as starburst sees it.

Most tests run a tiny probe command instead of the worker, through a task
definition of their own, so that each one controls how its task ends.
"""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import pytest
from _support import wait_for
from botocore.awsrequest import AWSResponse

from starburst.aws.clients import client
from starburst.aws.consistency import describe_tasks
from starburst.aws.propagation import retry_while_propagating
from starburst.backends import fargate
from starburst.backends.base import WorkerSpec
from starburst.backends.fargate import FargateBackend
from starburst.exceptions import BackendError, ConfigurationError
from starburst.options import ExecutorOptions
from starburst.scheduling.events import WorkerExit, describe_exit
from starburst.scheduling.pacing import LaunchPacing


def _probe(aws, command: list[str], *, log_group: str = "/starburst",
           session: str = "sb-probe") -> tuple[FargateBackend, WorkerSpec]:
    shared = aws.shared
    arn = retry_while_propagating(lambda: client("ecs").register_task_definition(
        family="probe", taskRoleArn=shared.roles.task, executionRoleArn=shared.roles.execution,
        networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
        containerDefinitions=[{
            "name": "worker", "image": "probe", "command": command, "memoryReservation": 512,
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": log_group, "awslogs-region": aws.region,
                "awslogs-stream-prefix": "starburst"}}}],
    ), what="a probe task definition", region=aws.region)["taskDefinition"]["taskDefinitionArn"]
    spec = WorkerSpec(env={"STARBURST_SESSION": session}, cpu=0.25, memory_mib=512,
                      image="probe")
    backend = FargateBackend(session=session, shared=shared, arch="x86_64",
                             task_definition=arn, spec=spec)
    return backend, spec


def _python(code: str) -> list[str]:
    return ["python", "-c", code]


def _exits(backend: FargateBackend, n: int, timeout: float = 20.0) -> list[WorkerExit]:
    found: list[WorkerExit] = []

    def more() -> bool:
        found.extend(backend.poll())
        return len(found) >= n

    wait_for(more, timeout=timeout, what=f"{n} task(s) to stop")
    return found


def _log_lines(arn: str) -> list[str]:
    """What the task printed, from its awslogs stream (empty before the stream exists)."""
    logs = client("logs")
    task_id = arn.rsplit("/", 1)[1]
    lines: list[str] = []
    kwargs: dict[str, Any] = {"logGroupName": "/starburst", "startFromHead": True,
                              "logStreamName": f"starburst/worker/{task_id}"}
    while True:  # to the page whose token repeats: pages before it may be empty
        try:
            page = logs.get_log_events(**kwargs)
        except logs.exceptions.ResourceNotFoundException:
            return lines
        lines.extend(e["message"] for e in page["events"])
        if page["nextForwardToken"] == kwargs.get("nextToken"):
            return lines
        kwargs["nextToken"] = page["nextForwardToken"]


def test_an_exit_code_shows_in_poll_with_stop_code_and_times(aws):
    backend, spec = _probe(aws, _python("import sys; print('bye'); sys.exit(3)"))
    before = time.time()
    [arn] = backend.launch(1, spec)
    [ex] = _exits(backend, 1)
    assert ex.worker == arn
    assert ex.exit_code == 3
    assert ex.stop_code == "EssentialContainerExited"
    assert ex.reason == "Essential container in task exited"
    assert ex.started_at is not None
    assert ex.stopped_at is not None
    assert before - 1 <= ex.started_at <= ex.stopped_at <= time.time() + 1
    assert _log_lines(arn) == ["bye"]
    assert backend.poll() == []  # reported once


def test_a_killed_task_looks_like_a_dead_fargate_task(aws):
    backend, spec = _probe(aws, _python("import time; time.sleep(60)"))
    [arn] = backend.launch(1, spec)
    wait_for(lambda: arn in aws.runner.pids(), timeout=10, what="the task's process")
    aws.runner.kill(arn)
    [ex] = _exits(backend, 1)
    assert (ex.exit_code, ex.stop_code) == (137, "EssentialContainerExited")
    text = describe_exit(ex)
    assert "killed by SIGKILL" in text
    assert "not proof of out-of-memory" in text


def test_out_of_memory_is_said_only_when_the_container_reason_says_so(aws):
    backend, spec = _probe(aws, _python("import time; time.sleep(60)"))
    [arn] = backend.launch(1, spec)
    wait_for(lambda: arn in aws.runner.pids(), timeout=10, what="the task's process")
    aws.runner.kill(arn, container_reason="OutOfMemoryError: Container killed due to memory usage")
    [ex] = _exits(backend, 1)
    assert ex.exit_code == 137
    assert ex.reason == ("Essential container in task exited; container: OutOfMemoryError: "
                         "Container killed due to memory usage")
    assert "out of memory" in describe_exit(ex)


def test_stop_sends_sigterm_then_sigkill_after_the_stop_timeout(aws, monkeypatch):
    monkeypatch.setattr(aws.runner, "stop_timeout", 1.0)
    ignore_term = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                   "print('ready', flush=True); time.sleep(60)")
    backend, spec = _probe(aws, _python(ignore_term))
    [arn] = backend.launch(1, spec)
    wait_for(lambda: _log_lines(arn) == ["ready"], timeout=10, what="the task to start")
    describe_tasks(client("ecs"), "starburst", [arn])  # until ECS knows it (just launched)
    backend.stop([arn])
    [task] = client("ecs").describe_tasks(cluster="starburst", tasks=[arn])["tasks"]
    assert (task["lastStatus"], task["desiredStatus"]) == ("DEACTIVATING", "STOPPED")
    [ex] = _exits(backend, 1)
    assert (ex.exit_code, ex.stop_code) == (137, "UserInitiated")
    assert ex.reason == "stopped by starburst (session sb-probe)"


def test_close_stops_what_is_still_running(aws):
    backend, spec = _probe(aws, _python("import time; time.sleep(60)"))
    arns = backend.launch(2, spec)
    wait_for(lambda: set(arns) <= set(aws.runner.pids()), timeout=10, what="two processes")
    backend.close()
    for arn in arns:
        assert aws.runner.wait_stopped(arn, timeout=10)
    assert aws.runner.pids() == {}


def test_a_task_gets_what_ecs_gives_it_and_no_credentials_in_overrides(aws):
    code = ("import json, os, boto3; from starburst.worker.__main__ import _ecs_task_arn; "
            "print(json.dumps({'env': dict(os.environ), 'arn': _ecs_task_arn(), "
            "'me': boto3.client('sts').get_caller_identity()['Arn']}))")
    backend, spec = _probe(aws, _python(code))
    [arn] = backend.launch(1, spec)
    [ex] = _exits(backend, 1)
    assert ex.exit_code == 0, _log_lines(arn)
    seen = json.loads(_log_lines(arn)[0])
    env = seen["env"]
    assert seen["arn"] == arn  # from the metadata endpoint
    assert ":assumed-role/starburst-task/" in seen["me"]  # the task role's credentials
    assert env["STARBURST_SESSION"] == "sb-probe"
    assert env["AWS_REGION"] == aws.region
    assert env["AWS_ENDPOINT_URL"] == aws.endpoint
    assert "AWS_CONTAINER_CREDENTIALS_FULL_URI" in env
    assert "AWS_ACCESS_KEY_ID" not in env
    assert "AWS_SECRET_ACCESS_KEY" not in env
    [task] = client("ecs").describe_tasks(cluster="starburst", tasks=[arn],
                                          include=["TAGS"])["tasks"]
    overrides = task["overrides"]["containerOverrides"][0]["environment"]
    assert not [e for e in overrides if e["name"].startswith("AWS_")]
    assert {"key": "starburst:session", "value": "sb-probe"} in task["tags"]


def test_credentials_are_refused_in_the_worker_environment(aws):
    backend, spec = _probe(aws, _python("pass"))
    leaky = WorkerSpec(env={**spec.env, "AWS_SECRET_ACCESS_KEY": "x"}, cpu=spec.cpu,
                       memory_mib=spec.memory_mib, image=spec.image)
    with pytest.raises(BackendError, match="refusing to put AWS_SECRET_ACCESS_KEY"):
        backend.launch(1, leaky)


def test_launch_sends_at_most_ten_tasks_per_run_task(aws):
    backend, spec = _probe(aws, _python("pass"))
    counts: list[int] = []
    backend.ecs.meta.events.register("provide-client-params.ecs.RunTask",
                                     lambda params, **_: counts.append(params["count"]))
    arns = backend.launch(12, spec)
    assert counts == [10, 2]
    assert len(set(arns)) == 12
    assert {ex.worker for ex in _exits(backend, 12, timeout=60)} == set(arns)


def test_poll_is_throttled_and_batched(aws, monkeypatch):
    monkeypatch.setattr(fargate, "_DESCRIBE_BATCH", 2)
    backend, spec = _probe(aws, _python("pass"))
    calls: list[list[str]] = []
    backend.ecs.meta.events.register("provide-client-params.ecs.DescribeTasks",
                                     lambda params, **_: calls.append(params["tasks"]))
    arns = backend.launch(3, spec)
    backend.poll()
    backend.poll()
    assert [len(c) for c in calls] == [2, 1]  # one round, two batches; the second poll waited
    assert {ex.worker for ex in _exits(backend, 3)} == set(arns)


def _fake_run_task(body: dict[str, Any]) -> Any:
    def handler(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        return AWSResponse("http://127.0.0.1/", 200, {}, None), body

    return handler


def test_capacity_refusals_start_fewer_and_are_retried(aws):
    backend, spec = _probe(aws, _python("pass"))
    attempts: list[int] = []
    backend.ecs.meta.events.register("provide-client-params.ecs.RunTask",
                                     lambda params, **_: attempts.append(1))
    backend.ecs.meta.events.register("before-call.ecs.RunTask", _fake_run_task(
        {"tasks": [], "failures": [{"reason": "Capacity is unavailable at this time."}]}))
    assert backend.launch(5, spec) == []
    assert len(attempts) == fargate._LAUNCH_RETRIES


def test_throttling_starts_fewer_without_error(aws):
    backend, spec = _probe(aws, _python("pass"))

    def throttled(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        return AWSResponse("http://127.0.0.1/", 400, {}, None), {
            "Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}

    backend.ecs.meta.events.register("before-call.ecs.RunTask", throttled)
    assert backend.launch(3, spec) == []


def test_other_refusals_are_errors_at_once(aws):
    backend, spec = _probe(aws, _python("pass"))
    backend.ecs.meta.events.register("before-call.ecs.RunTask", _fake_run_task(
        {"tasks": [], "failures": [{"reason": "MISSING", "detail": "no such subnet"}]}))
    with pytest.raises(BackendError, match="RunTask could not start workers: MISSING"):
        backend.launch(1, spec)


def test_a_task_whose_log_group_is_missing_fails_to_start(aws):
    backend, spec = _probe(aws, _python("pass"), log_group="/missing")
    [arn] = backend.launch(1, spec)
    [ex] = _exits(backend, 1)
    assert ex.worker == arn
    assert ex.stop_code == "TaskFailedToStart"
    assert ex.exit_code is None
    assert "ResourceInitializationError" in (ex.reason or "")


def test_open_session_creates_queues_transport_and_defaults(aws):
    options = ExecutorOptions.build(backend="fargate", cpu=0.5, memory="1GB",
                                    image="example/worker:1")
    session = FargateBackend.open_session(session="sb-open-1", options=options)
    try:
        assert session.workers == fargate.DEFAULT_WORKERS == 10
        assert session.pacing == LaunchPacing()
        assert session.spec.image == "example/worker:1"
        assert (session.spec.cpu, session.spec.memory_mib) == (0.5, 1024)
        assert session.spec.env["STARBURST_SESSION"] == "sb-open-1"
        assert session.spec.env["STARBURST_TRANSPORT"] == session.transport.spec
        assert session.transport.spec.startswith(f"aws:s3://{aws.shared.bucket}/starburst?")
        names = client("sqs").list_queues(QueueNamePrefix="starburst-sb-open-1")["QueueUrls"]
        assert len(names) == 3
    finally:
        session.backend.close()
        session.transport.destroy()
        session.transport.close()
    assert "QueueUrls" not in client("sqs").list_queues(QueueNamePrefix="starburst-sb-open-1")


@pytest.mark.parametrize(("extra", "match"), [
    ({"regoin": "x"}, r"unknown option\(s\) regoin for backend='fargate'; valid: region"),
    ({"cpu_arch": "arm"}, "valid: .*arch"),
])
def test_open_session_refuses_unknown_options(aws, extra, match):
    options = ExecutorOptions.build(backend="fargate", **extra)
    with pytest.raises(ConfigurationError, match=match):
        FargateBackend.open_session(session="sb-bad", options=options)


def test_open_session_needs_an_image_and_a_fargate_size(aws, monkeypatch, tmp_path):
    bad_size = ExecutorOptions.build(backend="fargate", cpu=1, memory="16GB")
    with pytest.raises(ConfigurationError, match="does not fit cpu=1 on Fargate"):
        FargateBackend.open_session(session="sb-bad", options=bad_size)
    (tmp_path / "empty.toml").write_text("")
    monkeypatch.setenv("STARBURST_CONFIG", str(tmp_path / "empty.toml"))
    # Without an image the default is env="auto" (build one); env="off" needs one.
    with pytest.raises(ConfigurationError, match="env='off' needs a container image: pass "
                                                 "image="):
        FargateBackend.open_session(session="sb-bad",
                                    options=ExecutorOptions.build(backend="fargate", env="off"))
    assert "QueueUrls" not in client("sqs").list_queues(QueueNamePrefix="starburst-sb-bad")


def test_sigterm_gives_exit_code_143(aws):
    backend, spec = _probe(aws, _python("import time; print('up', flush=True); time.sleep(60)"))
    [arn] = backend.launch(1, spec)
    wait_for(lambda: _log_lines(arn) == ["up"], timeout=10, what="the task to start")
    aws.runner.kill(arn, signal.SIGTERM)
    [ex] = _exits(backend, 1)
    assert (ex.exit_code, ex.stop_code) == (128 + signal.SIGTERM, "EssentialContainerExited")
