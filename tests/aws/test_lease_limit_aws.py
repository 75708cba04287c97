"""SQS's 12-hour limit on a message's total invisibility, scaled to seconds.

The emulator refuses ChangeMessageVisibility past ``max_visibility_s`` since
the message's receive (``StrictRules``); workers never ask for it: a chunk
whose lease would pass ``Settings.max_lease`` stores what finished and
hands the rest back under a new message of the same chunk, so no task runs
twice, whether a client is there or the session was detached.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from _tasks import counted_nap

import starburst
from starburst.aws.clients import client
from starburst.exceptions import TransportError
from starburst.transport.sqs import SqsQueue

#: The scaled SQS limit (AWS: 43,200 s) and the workers' max_lease below it,
#: as 12 hours less a margin is on AWS. The margin is a whole second because
#: SQS visibilities are whole seconds (a 0.4 s extension asks for 1 s).
_LIMIT_S = 3.0
_MAX_LEASE_S = 2.0
#: Each task is under the limit (and max_lease); three together are past it.
_TASK_S = 1.2


def _settings() -> starburst.Settings:
    # A short lease and heartbeat, so extensions reach the limit in steps of 0.1 s.
    return starburst.Settings(lease=0.4, heartbeat=0.1, poll=0.05, idle_timeout=30,
                              client_heartbeat=1.0, client_stale=600, timeout_grace=1.0,
                              max_lease=_MAX_LEASE_S)


def test_sqs_refuses_total_visibility_past_the_limit_since_the_receive(aws, monkeypatch):
    monkeypatch.setattr(aws.rules, "max_visibility_s", 3.0)
    url = client("sqs").create_queue(QueueName="starburst-visibility-rule")["QueueUrl"]
    queue = SqsQueue(url)
    queue.send([b"chunk"])
    [msg] = queue.receive(visibility=1)
    refused = aws.rules.visibility_refusals
    queue.set_visibility(msg.receipt, 2)  # 2 s after the receive: within 3 s
    with pytest.raises(TransportError, match=r"Total VisibilityTimeout for the message is "
                                             r"beyond the limit \[3 seconds\].*max_lease"):
        queue.set_visibility(msg.receipt, 4)
    assert aws.rules.visibility_refusals == refused + 1
    queue.set_visibility(msg.receipt, 0)  # a release is never refused
    [again] = queue.receive(visibility=1)
    queue.set_visibility(again.receipt, 2)  # the limit counts from the latest receive
    queue.delete([again.receipt])


def test_a_chunk_longer_than_the_lease_limit_runs_each_task_once_on_fargate(
        aws, monkeypatch, tmp_path: Path):
    monkeypatch.setattr(aws.rules, "max_visibility_s", _LIMIT_S)
    names = ["a", "b", "c"]
    refused = aws.rules.visibility_refusals
    with starburst.Executor(backend="fargate", workers=2, max_attempts=2,
                            settings=_settings(), progress=False) as ex:
        # A second chunk, so that a second worker starts and would pick up
        # the long chunk if its lease lapsed.
        extra = ex.submit(counted_nap, str(tmp_path), "x", 0.0)
        started = time.monotonic()
        out = list(ex.map(counted_nap, [str(tmp_path)] * 3, names, [_TASK_S] * 3,
                          chunksize=3))
        took = time.monotonic() - started
        assert extra.result() == "x"
    assert out == names
    runs = {n: len(list(tmp_path.glob(f"run-{n}-*"))) for n in names}
    assert runs == {"a": 1, "b": 1, "c": 1}
    assert aws.rules.visibility_refusals == refused  # no extension past the limit asked
    assert took < 3 * _TASK_S + 15  # handed back once, not re-leased again and again


def test_a_detached_fargate_session_whose_chunk_is_handed_back_gets_every_result_on_attach(
        aws, monkeypatch, tmp_path: Path):
    # No client is there to re-queue the handed-back tasks: the remainder
    # must still run (once) and the attached client collect every result.
    monkeypatch.setattr(aws.rules, "max_visibility_s", _LIMIT_S)
    names = ["a", "b", "c"]
    refused = aws.rules.visibility_refusals
    ex = starburst.Executor(backend="fargate", workers=2, max_attempts=2, detached=True,
                            settings=_settings(), progress=False)
    session = ex.session_id
    ex.submit(counted_nap, str(tmp_path), "x", 0.0)
    ex.map(counted_nap, [str(tmp_path)] * 3, names, [_TASK_S] * 3, chunksize=3)
    ex.shutdown()
    with starburst.attach(session, backend="fargate", progress=False,
                          settings=_settings()) as handle:
        assert sorted(handle.results(timeout=120)) == sorted(["x", *names])
        status = handle.status()
        assert (status.tasks_total, status.tasks_done, status.tasks_failed) == (4, 4, 0)
    runs = {n: len(list(tmp_path.glob(f"run-{n}-*"))) for n in ["x", *names]}
    assert runs == {"x": 1, "a": 1, "b": 1, "c": 1}
    assert aws.rules.visibility_refusals == refused
