"""starburst.Executor(backend="fargate") end to end, inside the emulated AWS.

The executor, the S3/SQS transport, the Fargate backend and the worker all
run their real code; only AWS is moto, and each Fargate task is a local
worker process started by the emulated task runner.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _support import wait_for, worker_of
from _tasks import double, exit_process, identity, marked_nap

import starburst
from starburst.aws.clients import client


@pytest.fixture
def settings() -> starburst.Settings:
    """Short intervals: a lost worker is noticed within seconds."""
    return starburst.Settings(lease=4.0, heartbeat=1.0, poll=0.05, idle_timeout=30,
                              client_heartbeat=1.0, client_stale=600, timeout_grace=1.0)


@pytest.fixture
def executor(aws, settings) -> Iterator[starburst.Executor]:
    ex = starburst.Executor(backend="fargate", workers=2, max_attempts=2, settings=settings,
                            progress=False)
    try:
        yield ex
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
        wait_for(lambda: not aws.runner.pids(), timeout=20,
                 what="every task process to exit after shutdown")
        queues = client("sqs").list_queues(QueueNamePrefix=f"starburst-{ex.session_id}")
        assert "QueueUrls" not in queues  # the session's queues are gone


def _task_of_pid(aws, pid: int) -> str:
    """The ECS task whose worker runs the task process ``pid`` (its parent)."""
    worker = worker_of(pid)
    return wait_for(lambda: next((a for a, p in aws.runner.pids().items() if p == worker),
                                 None), timeout=10, what=f"the task running pid {pid}")


def test_map_returns_ordered_results(executor):
    assert list(executor.map(double, range(50))) == [2 * i for i in range(50)]


def test_a_remote_exception_keeps_its_type(executor):
    def parse(text):
        return int(text)

    with pytest.raises(ValueError, match="invalid literal for int") as info:
        executor.submit(parse, "not a number").result(timeout=60)
    assert isinstance(info.value.__cause__, starburst.RemoteTraceback)
    assert ", in parse" in info.value.__cause__.tb  # the remote frame


def test_large_arguments_and_results_travel_through_s3(executor):
    blob = bytes(range(256)) * 2000  # 512,000 bytes: above the inline limit
    assert executor.submit(identity, blob).result(timeout=60) == blob


def test_a_worker_killed_mid_chunk_reruns_the_chunk(aws, executor, tmp_path: Path):
    future = executor.submit(marked_nap, str(tmp_path), "victim", 2.0)
    marker = tmp_path / "start-victim"
    wait_for(marker.exists, timeout=30, what="the task to start")
    first_pid = int(wait_for(marker.read_text, timeout=5, what="the start marker"))
    arn = _task_of_pid(aws, first_pid)
    marker.unlink()
    aws.runner.kill(arn)
    assert future.result(timeout=60) == "victim"
    assert int(marker.read_text()) != first_pid  # it ran again, on another task
    assert executor.status().attempts >= 2


def test_a_task_that_always_kills_its_worker_fails_with_worker_lost(executor):
    future = executor.submit(exit_process, 1)
    with pytest.raises(starburst.WorkerLostError) as info:
        future.result(timeout=90)
    err = info.value
    assert err.attempts == 2
    assert err.worker is not None
    assert err.worker.startswith("arn:aws:ecs:us-east-1:")
    assert ":task/starburst/" in err.worker
    assert err.worker in str(err)
    assert err.exit_code == 1
    assert err.stop_code == "EssentialContainerExited"
    assert "stop code EssentialContainerExited" in str(err)
    assert executor.submit(double, 21).result(timeout=60) == 42  # the executor goes on


def test_an_idle_worker_leaves_its_long_poll_when_stopped(aws):
    # Default intervals: an idle worker waits in 20 s SQS long polls. SIGTERM
    # (StopTask, retirement, shutdown) must end it now, not when the poll
    # returns: a stopped task bills, and shutdown waits for its stop time.
    settings = starburst.Settings(poll=0.05, idle_timeout=60)
    ex = starburst.Executor(backend="fargate", workers=1, settings=settings, progress=False)
    try:
        assert ex.submit(double, 1).result(timeout=60) == 2
        [arn] = wait_for(lambda: list(aws.runner.pids()) or None, timeout=10,
                         what="the worker's task")
        time.sleep(1.0)  # back in a long poll
        aws.runner.kill(arn, signal.SIGTERM)
        assert aws.runner.wait_stopped(arn, timeout=8)
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
