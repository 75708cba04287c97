"""The crash matrix: every way a task, a worker or the client can die.

Each row names the failure and what the user must see: a correct result
after a retry, or a per-task error that says what happened. A failure of
one task never breaks the executor, and no process outlives its test.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _support import alive, kill_all, wait_for, worker_of
from _tasks import (
    call_sys_exit,
    double,
    exit_process,
    identity,
    kill_self,
    marked_nap,
    raise_keyboard_interrupt,
    return_generator,
    return_lock,
    segfault,
    write_marker,
)

import starburst
from starburst import backends
from starburst.wire import messages as protocol
from starburst.wire.auth import KEY_ENV, key_text, new_key
from starburst.wire.keys import client_heartbeat_key

TESTS_DIR = Path(__file__).resolve().parent


def worker_pids(ex: starburst.Executor) -> dict[str, int]:
    """Worker id -> pid, for backends that run workers as local processes."""
    if ex._options.backend == "fargate":
        from _support import emulated_pids

        return emulated_pids()  # the emulated task runner's processes
    pids = getattr(ex._client.backend, "pids", None)
    if pids is None:
        pytest.skip(f"backend {ex._options.backend!r} does not expose worker pids")
    return pids()


def started_pid(directory: Path, name: object) -> int:
    """Pid of the worker that wrote the start marker of task ``name``."""
    marker = directory / f"start-{name}"
    wait_for(marker.exists, timeout=30, what=f"task {name} to start")
    return int(wait_for(marker.read_text, timeout=5, what=f"marker of task {name}"))


# -- lost workers: retried ------------------------------------------------------------


def test_worker_killed_mid_chunk_is_retried(executor_factory, tmp_path):
    ex = executor_factory()
    n = 6
    # Long enough that work remains when the death is seen: on the emulated AWS a
    # task is unknown to DescribeTasks for its first seconds (StrictRules), as on ECS.
    results = ex.map(marked_nap, [tmp_path] * n, range(n), [1.0] * n, chunksize=2)
    victim = started_pid(tmp_path, 0)  # the task process: its worker dies with it
    assert worker_of(victim) in worker_pids(ex).values()
    os.kill(victim, signal.SIGKILL)
    assert list(results) == list(range(n))
    status = ex.status()
    assert status.chunks_done == 3
    assert status.attempts > status.chunks_done
    assert status.tasks_failed == 0
    assert status.workers_launched >= 3


def test_all_workers_killed_are_replaced(executor_factory, tmp_path):
    ex = executor_factory()
    futures = [ex.submit(marked_nap, tmp_path, i, 1.0) for i in range(2)]
    first = {worker_of(started_pid(tmp_path, i)) for i in range(2)}
    pids = worker_pids(ex)
    assert first == set(pids.values())  # both workers are busy
    kill_all(list(pids.values()))
    assert [f.result(timeout=60) for f in futures] == [0, 1]
    assert ex.status().workers_launched >= 4
    assert not set(worker_pids(ex).values()) & first


def test_stalled_worker_loses_its_lease_and_the_first_result_wins(executor_factory,
                                                                  tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="starburst")
    ex = executor_factory()
    notices = []
    on_notice = ex._client._on_notice

    def record(body):
        notices.append(protocol.decode(body, ex._client.key))
        on_notice(body)

    ex._client._on_notice = record
    future = ex.submit(marked_nap, tmp_path, "slow", 0.5)
    other = ex.submit(marked_nap, tmp_path, "other", 0.0)  # so that two workers start
    task_pid = started_pid(tmp_path, "slow")
    stalled = worker_of(task_pid)
    stalled_id = next(w for w, p in worker_pids(ex).items() if p == stalled)
    # The whole worker stalls (its supervisor too): no heartbeat, its 2 s lease lapses.
    for pid in (stalled, task_pid):
        os.kill(pid, signal.SIGSTOP)
    try:
        assert future.result(timeout=60) == "slow"
        assert other.result(timeout=60) == "other"
        assert int((tmp_path / "start-slow").read_text()) != task_pid
    finally:
        for pid in (task_pid, stalled):
            os.kill(pid, signal.SIGCONT)
    # The stalled worker finishes too; its conditional commit fails, so its late
    # result is dropped at the source and never reaches the client. (Worker log
    # lines reach the client's logger only on the local backend; on Fargate
    # they go to CloudWatch, and the committed winner is checked instead.)
    if ex._options.backend == "local":
        wait_for(lambda: any(stalled_id in r.getMessage()
                             and "already committed" in r.getMessage()
                             for r in caplog.records),
                 timeout=30, what="the stalled worker to drop its late result")
    winners = [n for n in notices if n.kind == "done"]
    assert stalled_id not in {n.worker for n in winners}
    assert not any(n.kind == "done" and n.worker == stalled_id for n in notices)
    assert future.result() == "slow"
    status = ex.status()
    assert status.attempts == 3  # slow twice, other once
    assert (status.tasks_done, status.tasks_failed, status.tasks_pending) == (2, 0, 0)


# -- lost workers: failed after max_attempts --------------------------------------------


def test_task_exiting_its_process_fails_with_worker_lost(executor_factory):
    ex = executor_factory(max_attempts=2)
    future = ex.submit(exit_process, 3)
    with pytest.raises(starburst.WorkerLostError) as info:
        future.result(timeout=60)
    err = info.value
    assert err.attempts == 2
    assert err.exit_code == 3
    assert err.worker
    assert err.worker in str(err)
    assert "exit code 3" in str(err)
    assert "max_attempts=2" in str(err)
    assert ex.submit(double, 2).result(timeout=30) == 4  # the executor goes on


def test_task_killing_itself_reports_sigkill_without_claiming_oom(executor_factory):
    ex = executor_factory(max_attempts=2)
    with pytest.raises(starburst.WorkerLostError) as info:
        ex.submit(kill_self).result(timeout=60)
    message = str(info.value)
    assert info.value.signal == "SIGKILL"
    assert "SIGKILL" in message
    assert "out of memory" not in message.lower()
    assert "raise memory=" not in message
    # Fargate reports ECS's stopped reason ("Essential container in task exited");
    # nothing may claim the container ran out of memory.
    assert "OutOfMemory" not in (info.value.reason or "")


def test_segfault_reports_sigsegv(executor_factory):
    ex = executor_factory(max_attempts=2)
    with pytest.raises(starburst.WorkerLostError) as info:
        ex.submit(segfault).result(timeout=60)
    assert info.value.signal == "SIGSEGV"
    assert "SIGSEGV" in str(info.value)
    assert info.value.attempts == 2


def test_crash_fails_only_the_crashing_chunk(executor_factory):
    ex = executor_factory(max_attempts=1)
    crashing = ex.submit(exit_process, 5)
    others = [ex.submit(double, i) for i in range(4)]
    with pytest.raises(starburst.WorkerLostError):
        crashing.result(timeout=60)
    assert [f.result(timeout=30) for f in others] == [0, 2, 4, 6]
    status = ex.status()
    assert (status.tasks_failed, status.tasks_pending) == (1, 0)


# -- what cannot be pickled ---------------------------------------------------------------


def test_unpicklable_argument_fails_that_task_only(executor_factory):
    ex = executor_factory()
    results = ex.map(identity, [1, threading.Lock(), 3], chunksize=3)
    assert next(results) == 1
    with pytest.raises(starburst.SerializationError) as info:
        next(results)
    assert "argument 0" in str(info.value)
    assert "_thread.lock" in str(info.value)
    status = ex.status()
    assert (status.tasks_done, status.tasks_failed, status.tasks_pending) == (2, 1, 0)
    bad = ex.submit(identity, threading.Lock())
    good = ex.submit(identity, 5)
    with pytest.raises(starburst.SerializationError, match="argument 0"):
        bad.result(timeout=30)
    assert good.result(timeout=30) == 5


def test_unpicklable_keyword_argument_is_named(executor_factory):
    ex = executor_factory()
    with pytest.raises(starburst.SerializationError, match="keyword argument 'y'"):
        ex.submit(lambda x, y: x, 1, y=threading.Lock()).result(timeout=30)


def test_unpicklable_function_names_the_closure_variable(executor_factory):
    ex = executor_factory()
    lock = threading.Lock()

    def uses_lock(x):
        with lock:
            return x

    with pytest.raises(starburst.SerializationError) as info:
        ex.submit(uses_lock, 1).result(timeout=30)
    assert "closure variable 'lock'" in str(info.value)
    assert "uses_lock" in str(info.value)
    with pytest.raises(starburst.SerializationError, match="closure variable 'lock'"):
        list(ex.map(uses_lock, range(3)))
    assert ex.submit(double, 1).result(timeout=30) == 2


@pytest.mark.parametrize("task", [return_lock, return_generator])
def test_unpicklable_result_fails_that_task(executor_factory, task):
    ex = executor_factory()
    with pytest.raises(starburst.SerializationError, match="result of task") as info:
        ex.submit(task).result(timeout=30)
    assert "cannot be pickled" in str(info.value)


def test_unpicklable_result_leaves_the_rest_of_its_chunk(executor_factory):
    ex = executor_factory()
    results = ex.map(lambda x: threading.Lock() if x == 1 else x, range(4), chunksize=4)
    assert next(results) == 0
    with pytest.raises(starburst.SerializationError, match="result of task"):
        next(results)
    status = ex.status()
    assert (status.tasks_done, status.tasks_failed) == (3, 1)


class NeedsTwoArguments(Exception):
    """Pickles, but cannot be unpickled: ``__init__`` takes two arguments."""

    def __init__(self, a, b):
        super().__init__(a)
        self.b = b


def raise_needs_two(x):
    if x == 1:
        raise NeedsTwoArguments("a", "b")
    return x


def test_exception_that_cannot_be_unpickled_fails_only_its_task(executor_factory):
    ex = executor_factory()
    results = ex.map(raise_needs_two, range(3), chunksize=3)
    assert next(results) == 0
    with pytest.raises((NeedsTwoArguments, starburst.SerializationError),
                       match="NeedsTwoArguments"):
        next(results)
    status = ex.status()
    assert (status.tasks_done, status.tasks_failed) == (2, 1)


# -- what a task does to its worker ------------------------------------------------------


def test_task_raising_keeps_type_and_attributes(executor_factory):
    ex = executor_factory()

    def missing(path):
        return open(path)

    with pytest.raises(FileNotFoundError) as info:
        ex.submit(missing, "/nonexistent/starburst-file").result(timeout=30)
    assert info.value.filename == "/nonexistent/starburst-file"
    assert isinstance(info.value.__cause__, starburst.RemoteTraceback)


def test_task_calling_sys_exit_fails_with_task_error(executor_factory):
    ex = executor_factory()
    with pytest.raises(starburst.TaskError, match=r"sys\.exit\(2\)") as info:
        ex.submit(call_sys_exit, 2).result(timeout=30)
    assert not isinstance(info.value, starburst.WorkerLostError)
    assert ex.submit(double, 5).result(timeout=30) == 10  # client and worker live on
    assert ex.status().attempts == 2


def test_task_raising_keyboard_interrupt_fails_with_task_error(executor_factory):
    ex = executor_factory(max_attempts=2)
    with pytest.raises(starburst.TaskError, match="KeyboardInterrupt") as info:
        ex.submit(raise_keyboard_interrupt).result(timeout=60)
    assert not isinstance(info.value, starburst.WorkerLostError)


# -- the client ------------------------------------------------------------------------


def test_keyboard_interrupt_in_with_block_stops_everything(executor_factory, tmp_path):
    ex = executor_factory()
    future = ex.submit(marked_nap, tmp_path, "long", 60)
    pid = started_pid(tmp_path, "long")
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt), ex:
        raise KeyboardInterrupt
    assert time.monotonic() - started < 15
    wait_for(lambda: not alive(pid), timeout=10, what="the worker to stop")
    with pytest.raises(starburst.ExecutorBroken, match="aborted"):
        future.result(timeout=10)
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        ex.submit(double, 1)


_CLIENT_SCRIPT = """
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
import starburst
from _tasks import marked_nap

directory = Path({directory!r})
settings = starburst.Settings(lease=2.0, heartbeat=0.5, poll=0.05, idle_timeout=30,
                              client_heartbeat=1.0, client_stale=600, timeout_grace=1.0)
with starburst.Executor(workers=2, settings=settings, progress=False) as ex:
    futures = [ex.submit(marked_nap, directory, i, 120) for i in range(2)]
    deadline = time.monotonic() + 60
    while not all((directory / f"start-{{i}}").exists() for i in range(2)):
        for f in futures:
            if f.done():
                f.result()  # a task that failed to start: show why
        if time.monotonic() > deadline:
            raise SystemExit("the tasks did not start")
        time.sleep(0.02)
    pids = " ".join(str(p) for p in ex._client.backend.pids().values())
    (directory / "pids.tmp").write_text(pids)
    (directory / "pids.tmp").rename(directory / "pids")
    for f in futures:
        f.result()
"""


def test_keyboard_interrupt_in_client_process_leaves_no_worker(tmp_path):
    script = tmp_path / "client.py"
    script.write_text(_CLIENT_SCRIPT.format(tests=str(TESTS_DIR), directory=str(tmp_path)))
    out = (tmp_path / "out.txt").open("wb")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=out,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        pids_file = tmp_path / "pids"
        wait_for(lambda: pids_file.exists() or proc.poll() is not None, timeout=60,
                 what="the client to start its workers")
        assert proc.poll() is None, (tmp_path / "out.txt").read_text()
        workers = [int(p) for p in pids_file.read_text().split()]
        assert len(workers) == 2
        assert all(alive(p) for p in workers)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        wait_for(lambda: not any(alive(p) for p in workers), timeout=15,
                 what="every worker to stop after the client's Ctrl-C")
        assert "KeyboardInterrupt" in (tmp_path / "out.txt").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        kill_all(workers)
        out.close()


def test_worker_exits_when_the_client_heartbeat_is_stale(tmp_path):
    from starburst.transport.local import LocalTransport

    session = "sb-20000101-000000-abcdef"
    transport = LocalTransport(tmp_path / "session")
    transport.store.put(client_heartbeat_key(session), f"{time.time() - 3600:.3f}".encode())
    settings = starburst.Settings(lease=2.0, heartbeat=0.5, poll=0.05, idle_timeout=60,
                                  client_heartbeat=0.2, client_stale=5)
    env = {**os.environ, **settings.to_env(), "STARBURST_TRANSPORT": transport.spec,
           "STARBURST_SESSION": session, KEY_ENV: key_text(new_key())}
    proc = subprocess.Popen([sys.executable, "-m", "starburst.worker"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert b"client heartbeat is stale" in err


def test_a_worker_started_without_its_session_key_says_so(tmp_path):
    env = {**os.environ, "STARBURST_TRANSPORT": f"local:{tmp_path / 'session'}",
           "STARBURST_SESSION": "sb-20000101-000000-abcdef"}
    env.pop(KEY_ENV, None)
    done = subprocess.run([sys.executable, "-m", "starburst.worker"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert f"{KEY_ENV} is not set" in done.stderr


def test_workers_that_cannot_start_break_the_executor(executor_factory, monkeypatch,
                                                     tmp_path):
    # A broken starburst in the working directory shadows the real one for
    # `python -m starburst.worker`: every worker exits before running anything.
    # (Local workers only: a Fargate task runs in its image, not this directory.)
    if executor_factory.backend == "fargate":
        pytest.skip("a Fargate worker does not start in the client's directory")
    (tmp_path / "starburst").mkdir()
    (tmp_path / "starburst" / "__init__.py").write_text(
        "raise ImportError('a broken starburst install')\n")
    monkeypatch.chdir(tmp_path)
    ex = executor_factory()
    future = ex.submit(double, 1)
    with pytest.raises(starburst.ExecutorBroken, match="exited before running anything"):
        future.result(timeout=60)
    assert isinstance(future.exception(), concurrent.futures.BrokenExecutor)
    with pytest.raises(starburst.ExecutorBroken):
        ex.submit(double, 2)


def test_spot_interruptions_before_any_work_do_not_break_the_executor(monkeypatch, tmp_path,
                                                                      fast_settings):
    # Workers that never run anything would break the executor ("workers cannot
    # start"), but not when Spot took them back: that says nothing of the image.
    monkeypatch.setitem(backends._REGISTRY, "reclaimed",
                        ("_billed_backend", "ReclaimedLocalBackend", ""))
    (tmp_path / "starburst").mkdir()
    (tmp_path / "starburst" / "__init__.py").write_text(
        "raise ImportError('a broken starburst install')\n")
    monkeypatch.chdir(tmp_path)
    ex = starburst.Executor("reclaimed", workers=1, settings=fast_settings, progress=False)
    try:
        future = ex.submit(double, 1)
        # Three futile exits per worker slot break an executor; wait for more.
        wait_for(lambda: ex.status().workers_launched >= 5, timeout=60,
                 what="five workers to have come and gone")
        assert not future.done()
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
    assert future.cancelled()


def test_a_result_committed_by_a_worker_that_died_before_telling_reaches_the_client(
        tmp_path, fast_settings):
    # A worker committed chunk N's result, then died before its "done" notice
    # went out. The chunk runs again; the second worker finds the commit: it
    # must pass the committed result on, or nobody ever tells the client.
    from starburst.wire.keys import result_commit_key
    from starburst.wire.serialization import checksum, dumps

    ex = starburst.Executor(workers=1, settings=fast_settings, progress=False)
    try:
        future = ex.submit(marked_nap, str(tmp_path), "second", 1.0)
        client = ex._client
        chunk = wait_for(lambda: next(iter(dict(client._chunks).values()), None), timeout=10,
                         what="the chunk to be sent")
        [(task_id, *_)] = chunk.tasks
        frame = dumps([(task_id, "ok", "first", "", None)])
        committed = protocol.Notice(kind="done", session=ex.session_id, chunk=chunk.id,
                                    worker="a-worker-now-dead", attempt="dead-1", key="",
                                    checksum=checksum(frame), info={"seconds": 0.5},
                                    body=frame)
        assert client.transport.store.put_if_absent(
            result_commit_key(ex.session_id, chunk.id), protocol.encode(committed, client.key))
        assert future.result(timeout=30) == "first"  # the committed result wins
        assert (tmp_path / "start-second").exists()  # after the chunk ran again
    finally:
        if future.done():
            ex.shutdown(wait=True)
        else:
            ex.abort()


def test_a_result_whose_notice_another_client_consumed_comes_from_its_commit(
        tmp_path, fast_settings):
    # A worker committed a chunk and sent "done", but another client consumed the
    # notice (one that detached while its poll was out: the CI hang of the GPU
    # attach test). When that worker is then lost, the chunk's message is gone
    # and a redelivery finds nothing: the commit in the store is the result.
    ex = starburst.Executor(workers=1, settings=fast_settings, progress=False)
    client = ex._client
    on_notice = client._on_notice
    stolen = threading.Event()

    def steal_the_done_notice(body: bytes) -> None:
        if protocol.decode(body, client.key).kind == "done" and not stolen.is_set():
            stolen.set()  # consumed (and deleted) by some other client
            return
        on_notice(body)

    client._on_notice = steal_the_done_notice
    future = ex.submit(write_marker, str(tmp_path), "ran", 42)
    try:
        wait_for(stolen.is_set, timeout=30, what="the done notice")
        [pid] = ex._client.backend.pids().values()
        os.kill(pid, signal.SIGKILL)  # the worker that ran it is lost
        assert future.result(timeout=30) == 42
        assert ex.status().attempts == 1  # not run again
    finally:
        if future.done():
            ex.shutdown(wait=True)
        else:
            ex.abort()
