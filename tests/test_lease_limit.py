"""The lease limit on the local backend: its queue refuses what SQS refuses.

SQS keeps a message invisible for at most 12 hours since its receive; the
local SQLite queue applies the same limit (``STARBURST_QUEUE_MAX_VISIBILITY``
scales it to seconds here), so a chunk longer than it behaves as on AWS:
its worker stores what finished before ``max_lease`` and hands the rest
back under a new message of the same chunk, and each task runs once, with
or without a client to queue anything (a detached session).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from _support import wait_for
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
        results = ex.map(counted_nap, [str(tmp_path)] * 3, names, [_TASK_S] * 3,
                         chunksize=3)
        # What finished before the hand-back counts as done then, not when the
        # rest has run ("b" takes 1.2 s before "c" starts).
        wait_for(lambda: ex.status().tasks_done == 2, timeout=30, what='"x" and "a" done')
        assert not list(tmp_path.glob("run-c-*"))
        out = list(results)
        assert extra.result() == "x"
        status = ex.status()
    assert out == names
    assert {n: len(list(tmp_path.glob(f"run-{n}-*"))) for n in names} == \
        {"a": 1, "b": 1, "c": 1}
    # The worker queued the rest itself, as the same chunk, and its lease was not
    # an attempt: two chunks, one attempt each.
    assert (status.chunks_done, status.attempts, status.tasks_done, status.tasks_failed) == \
        (2, 2, 4, 0)


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


def test_a_detached_session_whose_chunk_is_handed_back_gets_every_result_on_attach(
        tmp_path: Path, monkeypatch):
    # The client that could re-queue the handed-back tasks has left: the
    # remainder must still run (once) and the attached client collect it.
    monkeypatch.setenv("STARBURST_QUEUE_MAX_VISIBILITY", _LIMIT_S)
    monkeypatch.setenv("STARBURST_LOCAL_DIR", str(tmp_path / "local"))
    runs = tmp_path / "runs"
    runs.mkdir()
    names = ["a", "b", "c"]
    ex = starburst.Executor(workers=2, max_attempts=2, detached=True, settings=_settings(),
                            progress=False)
    session = ex.session_id
    ex.submit(counted_nap, str(runs), "x", 0.0)
    ex.map(counted_nap, [str(runs)] * 3, names, [_TASK_S] * 3, chunksize=3)
    ex.shutdown()
    with starburst.attach(session, progress=False, settings=_settings()) as handle:
        assert sorted(handle.results(timeout=60)) == sorted(["x", *names])
        status = handle.status()
        assert (status.tasks_total, status.tasks_done, status.tasks_failed) == (4, 4, 0)
    assert {n: len(list(runs.glob(f"run-{n}-*"))) for n in ["x", *names]} == \
        {"x": 1, "a": 1, "b": 1, "c": 1}


#: A worker's ``sitecustomize``: the first worker process to hand a chunk back
#: dies doing so. ``HANDBACK_DIE=send``: as it sends the rest, which is lost;
#: ``release``: once the rest is queued and its own message deleted, before it
#: tells the client (which saw it lease the chunk, and must not wait on that lease).
_DIE_HANDING_BACK = textwrap.dedent("""
    import os

    _at, _once = os.environ.get("HANDBACK_DIE", ""), os.environ.get("HANDBACK_DIE_ONCE", "")
    if _at and os.environ.get("STARBURST_SESSION"):
        from starburst.wire import messages as protocol
        from starburst.wire.auth import KEY_ENV, key_from_text
        from starburst.transport.local import SqliteQueue
        from starburst.worker.loop import Worker

        def _first():
            try:
                os.close(os.open(_once, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return False
            return True

        _send, _notify = SqliteQueue.send, Worker._notify
        _key = key_from_text(os.environ[KEY_ENV])  # read before the worker takes it

        def _dying_send(self, bodies):
            rest = [b for b in bodies if getattr(protocol.decode(b, _key), "done_key", "")]
            if _at == "send" and rest and _first():
                os._exit(1)
            return _send(self, bodies)

        def _dying_notify(self, kind, chunk, **kw):
            if _at == "release" and kind == "release" and kw.get("key") and _first():
                os._exit(1)
            return _notify(self, kind, chunk, **kw)

        SqliteQueue.send, Worker._notify = _dying_send, _dying_notify
""")


@pytest.mark.parametrize(("die", "detached"), [("send", False), ("release", False),
                                               ("send", True), ("release", True)])
def test_a_worker_that_dies_handing_a_chunk_back_leaves_nothing_pending(
        tmp_path: Path, monkeypatch, die: str, detached: bool):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_DIE_HANDING_BACK)
    monkeypatch.syspath_prepend(str(hook))  # the local workers' PYTHONPATH
    monkeypatch.setenv("HANDBACK_DIE", die)
    monkeypatch.setenv("HANDBACK_DIE_ONCE", str(tmp_path / "died"))
    monkeypatch.setenv("STARBURST_QUEUE_MAX_VISIBILITY", _LIMIT_S)
    monkeypatch.setenv("STARBURST_LOCAL_DIR", str(tmp_path / "local"))
    runs = tmp_path / "runs"
    runs.mkdir()
    names = ["a", "b", "c"]
    ex = starburst.Executor(workers=2, max_attempts=3, detached=detached,
                            settings=_settings(), progress=False)
    extra = ex.submit(counted_nap, str(runs), "x", 0.0)
    results = ex.map(counted_nap, [str(runs)] * 3, names, [_TASK_S] * 3, chunksize=3)
    if detached:
        ex.shutdown()
        with starburst.attach(ex.session_id, progress=False, settings=_settings()) as handle:
            out = sorted(handle.results(timeout=60))
    else:
        with ex:
            out = sorted([extra.result(timeout=60), *results])
    assert (tmp_path / "died").exists()
    assert out == ["a", "b", "c", "x"]
    # The rest lost: the chunk's own message comes back once its lease lapses
    # (or the client sees its worker gone) and runs from the start.
    again = 2 if die == "send" else 1
    assert {n: len(list(runs.glob(f"run-{n}-*"))) for n in names} == \
        {"a": again, "b": 1, "c": 1}
