"""The lease limit on the local backend: its queue refuses what SQS refuses.

SQS keeps a message invisible for at most 12 hours since its receive; the
local SQLite queue applies the same limit (``STARBURST_QUEUE_MAX_VISIBILITY``
scales it to seconds here), so a chunk longer than it behaves as on AWS:
its worker reports what finished before ``max_lease`` and hands the rest
back as a new chunk, and each task runs once.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _tasks import counted_nap

import starburst
from starburst.exceptions import TransportError
from starburst.transport.local import SqliteQueue

#: The scaled queue limit (SQS: 43,200 s) and the workers' max_lease below it.
_LIMIT_S = "3.0"
_MAX_LEASE_S = 2.0
#: Each task is under the limit (and max_lease); three together are past it.
_TASK_S = 1.2


def _settings() -> starburst.Settings:
    return starburst.Settings(lease=0.4, heartbeat=0.1, poll=0.05, idle_timeout=30,
                              max_lease=_MAX_LEASE_S)


def test_the_local_queue_refuses_visibility_past_its_limit(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("STARBURST_QUEUE_MAX_VISIBILITY", "2")
    queue = SqliteQueue(tmp_path / "q.db", "tasks")
    queue.send([b"chunk"])
    [msg] = queue.receive(visibility=1)
    queue.set_visibility(msg.receipt, 1.5)
    with pytest.raises(TransportError, match="past the limit of 2 s since its receive"):
        queue.set_visibility(msg.receipt, 3)
    queue.set_visibility(msg.receipt, 0)  # a release is never refused
    [again] = queue.receive(visibility=1)
    queue.set_visibility(again.receipt, 1.5)  # the limit counts from the latest receive
    queue.delete([again.receipt])


def test_a_chunk_longer_than_the_lease_limit_runs_each_task_once_locally(
        tmp_path: Path, monkeypatch):
    monkeypatch.setenv("STARBURST_QUEUE_MAX_VISIBILITY", _LIMIT_S)
    names = ["a", "b", "c"]
    with starburst.Executor(workers=2, max_attempts=2, settings=_settings(),
                            progress=False) as ex:
        # A second chunk, so that a second worker is up and would pick up the
        # long chunk if its lease lapsed.
        extra = ex.submit(counted_nap, str(tmp_path), "x", 0.0)
        out = list(ex.map(counted_nap, [str(tmp_path)] * 3, names, [_TASK_S] * 3,
                          chunksize=3))
        assert extra.result() == "x"
    assert out == names
    assert {n: len(list(tmp_path.glob(f"run-{n}-*"))) for n in names} == \
        {"a": 1, "b": 1, "c": 1}


def test_a_single_task_longer_than_the_lease_limit_fails_naming_it(
        tmp_path: Path, monkeypatch):
    monkeypatch.setenv("STARBURST_QUEUE_MAX_VISIBILITY", _LIMIT_S)
    with starburst.Executor(workers=2, max_attempts=2, settings=_settings(),
                            progress=False) as ex:
        extra = ex.submit(counted_nap, str(tmp_path), "x", 0.0)
        long = ex.submit(counted_nap, str(tmp_path), "long", 2 * _MAX_LEASE_S)
        with pytest.raises(starburst.TaskTimeoutError,
                           match=r"max_lease=2s: SQS keeps a message leased for at most "
                                 r"12 hours.*task_timeout="):
            long.result(timeout=30)
        assert extra.result() == "x"
    assert len(list(tmp_path.glob("run-long-*"))) == 1  # stopped, not run again elsewhere


def test_a_max_lease_past_the_sqs_limit_is_refused():
    # Past SQS's 12 hours, lease extensions would be refused and the lease lapse.
    with pytest.raises(starburst.ConfigurationError, match=r"max_lease \(43201s\) must be "
                                                          r"at most 43200s"):
        starburst.Settings(max_lease=43_201.0)
    assert starburst.Settings().max_lease == 43_200.0 - 600.0
