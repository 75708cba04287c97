"""Detached sessions and attach: the client may exit (or die); results are not lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from _support import alive, session_processes, wait_for

import starburst
from starburst.transport.local import key_path
from starburst.wire.auth import key_from_text
from starburst.wire.keys import record_key

SCRIPT = textwrap.dedent("""
    import json, sys, time
    import starburst
    from _tasks import nap

    settings = starburst.Settings(lease=4.0, heartbeat=1.0, poll=0.05, idle_timeout=5,
                                  client_heartbeat=1.0, client_stale=600, timeout_grace=1.0)
    ex = starburst.Executor(workers=2, detached={detached}, settings=settings, progress=False)
    futures = [ex.submit(nap, 0.2 + 0.01 * i) for i in range(20)]
    print(json.dumps({{"session": ex.session_id}}), flush=True)
    futures[0].result()              # work is under way
    {after}
""")


def _spawn(script: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """Start a client script; return it and the session id it prints first."""
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        _, err = proc.communicate(timeout=30)
        raise AssertionError(f"the client printed no session id: {err}")
    return proc, json.loads(line)["session"]


def _start(tmp_path: Path, *, detached: bool, after: str) -> tuple[subprocess.Popen[str], str]:
    script = tmp_path / "client.py"
    script.write_text(SCRIPT.format(detached=detached, after=after))
    env = {**os.environ, "STARBURST_LOCAL_DIR": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    return _spawn(script, env)


@pytest.mark.parametrize("detached", [True, False])
def test_client_killed_mid_run_then_attach_gets_every_result(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, detached: bool) -> None:
    proc, session = _start(tmp_path, detached=detached, after="time.sleep(60)")
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    monkeypatch.setenv("STARBURST_LOCAL_DIR", str(tmp_path))
    with starburst.attach(session, progress=False) as handle:
        results = handle.results(timeout=120)
        assert results == [0.2 + 0.01 * i for i in range(20)]
        assert handle.status().tasks_total == 20
    # The attached client ended the session: its data is gone.
    assert not (tmp_path / f"starburst-{session}").exists()
    with pytest.raises(starburst.ConfigurationError, match="no local session"):
        starburst.attach(session)


def test_detached_client_exits_and_workers_go_on(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    proc, session = _start(tmp_path, detached=True, after="ex.shutdown()")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0  # shutdown of a detached executor returns at once
    assert "runs on without this client" in err
    record = json.loads(key_path(tmp_path / f"starburst-{session}" / "store",
                                 record_key(session)).read_text())
    assert record["state"] == "submitted"
    assert record["detached"] is True
    monkeypatch.setenv("STARBURST_LOCAL_DIR", str(tmp_path))
    with starburst.attach(session, progress=False) as handle:
        done = [f.result(timeout=120) for f in handle.as_completed(timeout=120)]
    assert sorted(done) == [0.2 + 0.01 * i for i in range(20)]


def test_attach_to_an_unknown_session_names_the_cause(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STARBURST_LOCAL_DIR", str(tmp_path))
    with pytest.raises(starburst.ConfigurationError, match="no local session sb-nope"):
        starburst.attach("sb-nope")


def test_session_timeout_must_be_positive() -> None:
    with pytest.raises(starburst.ConfigurationError, match="session_timeout"):
        starburst.Executor(detached=True, session_timeout=0)


def test_worker_processes_of_a_detached_session_end(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    proc, session = _start(tmp_path, detached=True, after="ex.shutdown()")
    proc.communicate(timeout=30)
    monkeypatch.setenv("STARBURST_LOCAL_DIR", str(tmp_path))
    with starburst.attach(session, progress=False) as handle:
        handle.results(timeout=120)

    wait_for(lambda: not session_processes(session), timeout=60,
             what="the detached session's workers to exit")


@pytest.mark.parametrize("backend", ["fargate"], indirect=True)
def test_fargate_detached_workers_lost_then_attach_launches_new_ones(
        tmp_path: Path, backend: object) -> None:
    """Detached on (emulated) Fargate, the client and every worker killed, then
    attach: the attached client launches replacement workers from the record
    (same task definition, image and environment) and gets every result."""
    from _support import SharedEmulator

    runner = SharedEmulator.get().runner
    script = tmp_path / "client.py"
    script.write_text(SCRIPT.format(detached=True, after="time.sleep(60)").replace(
        "starburst.Executor(", "starburst.Executor(backend='fargate', "))
    env = {**os.environ, **SharedEmulator.env,
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    proc, session = _spawn(script, env)
    try:
        wait_for(runner.pids, timeout=60, what="the first workers")
        time.sleep(1.0)
        proc.kill()
        proc.communicate(timeout=10)
        runner.kill_all()  # no worker is left: attach must launch new ones
        settings = starburst.Settings(lease=3.0, heartbeat=1.0, poll=0.05, idle_timeout=20,
                                      client_heartbeat=0.5, client_stale=600,
                                      timeout_grace=1.0)
        with starburst.attach(session, backend="fargate", progress=False,
                              settings=settings) as handle:
            assert handle.results(timeout=120) == [0.2 + 0.01 * i for i in range(20)]
            status = handle.status()
            assert (status.tasks_total, status.tasks_done, status.tasks_failed) == (20, 20, 0)
            assert status.workers_launched >= 1
    finally:
        if proc.poll() is None:
            proc.kill()
        runner.kill_all()


@pytest.mark.parametrize("backend", ["fargate"], indirect=True)
def test_fargate_attach_to_an_unknown_session_names_bucket_and_prefix(backend: object) -> None:
    with pytest.raises(starburst.ConfigurationError,
                       match=r"no Fargate session sb-nope in bucket '[^']+' under prefix "
                             r"'starburst'"):
        starburst.attach("sb-nope", backend="fargate", progress=False)


def test_a_detached_local_client_leaves_no_unreaped_worker_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The workers of a detached session outlive the client's backend object;
    # their Popen handles must still be reaped (no "subprocess N is still
    # running" ResourceWarning when they are collected, no zombies).
    import gc
    import warnings

    from _tasks import nap

    monkeypatch.setenv("STARBURST_LOCAL_DIR", str(tmp_path))
    settings = starburst.Settings(poll=0.05, idle_timeout=1.0)
    ex = starburst.Executor(workers=1, detached=True, settings=settings, progress=False)
    ex.submit(nap, 0.2)
    session = ex.session_id
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ex.shutdown()
        del ex
        gc.collect()
        wait_for(lambda: not session_processes(session), timeout=30,
                 what="the detached session's worker to exit")
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)
                and "still running" in str(w.message)]
    with starburst.attach(session, progress=False) as handle:  # end the session
        assert handle.results(timeout=60) == [0.2]


ADOPT_SCRIPT = textwrap.dedent("""
    import json, sys
    import starburst
    from _tasks import marked_nap

    settings = starburst.Settings(lease=4.0, heartbeat=1.0, poll=0.05, idle_timeout=30,
                                  client_heartbeat=1.0, client_stale=600, timeout_grace=1.0)
    ex = starburst.Executor(backend="fargate", workers=2, detached=True, settings=settings,
                            progress=False)
    futures = [ex.submit(marked_nap, sys.argv[1], i, 2.0) for i in range(6)]
    print(json.dumps({"session": ex.session_id}), flush=True)
    ex.shutdown()
""")


@pytest.mark.parametrize("backend", ["fargate"], indirect=True)
def test_fargate_attach_adopts_the_workers_still_running(tmp_path: Path,
                                                         backend: object) -> None:
    """Attach while the detached session's two workers still run: they finish the
    work, no second pair is launched beside them (it would double the bill and the
    quota), and closing the attached client stops them."""
    from _support import SharedEmulator

    from starburst.aws import inventory

    runner = SharedEmulator.get().runner
    script = tmp_path / "client.py"
    script.write_text(ADOPT_SCRIPT)
    env = {**os.environ, **SharedEmulator.env,
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        session = json.loads(out.splitlines()[0])["session"]
        place = inventory.Place.from_config()
        wait_for((tmp_path / "start-0").exists, timeout=60,
                 what="the detached workers to start work")
        before = {t["taskArn"] for t in inventory.session_tasks(place, session)}
        assert len(before) == 2
        settings = starburst.Settings(lease=4.0, heartbeat=1.0, poll=0.05, idle_timeout=30,
                                      client_heartbeat=0.5, client_stale=600,
                                      timeout_grace=1.0)
        with starburst.attach(session, backend="fargate", progress=False,
                              settings=settings) as handle:
            assert handle.results(timeout=120) == list(range(6))
            assert handle.status().workers_launched == 0
        # Its cost covers the adopted workers' stopped tasks (each >= 60 s billed).
        report = handle.cost()
        assert report.finished
        assert report.worker_seconds >= 2 * 60
        assert {t["taskArn"] for t in inventory.session_tasks(place, session)} == before
        wait_for(lambda: not any(inventory.task_active(t)
                                 for t in inventory.session_tasks(place, session)),
                 timeout=30, what="the adopted workers to be stopped")
    finally:
        if proc.poll() is None:
            proc.kill()
        runner.kill_all()


LOCAL_ADOPT_SCRIPT = textwrap.dedent("""
    import json, sys
    import starburst
    from _tasks import marked_nap

    settings = starburst.Settings(lease=4.0, heartbeat=1.0, poll=0.05, idle_timeout=60,
                                  client_heartbeat=1.0, client_stale=600, timeout_grace=1.0)
    ex = starburst.Executor(workers=2, detached=True, settings=settings, progress=False)
    futures = [ex.submit(marked_nap, sys.argv[1], i, 1.5) for i in range(6)]
    print(json.dumps({"session": ex.session_id}), flush=True)
    ex.shutdown()
""")


def test_local_attach_adopts_the_worker_processes_still_running(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As on Fargate: attach while the detached session's two worker processes
    still run; they finish the work, no second pair starts beside them, and
    closing the attached client stops them (not their 60 s idle timeout)."""
    script = tmp_path / "client.py"
    script.write_text(LOCAL_ADOPT_SCRIPT)
    env = {**os.environ, "STARBURST_LOCAL_DIR": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    out = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env, check=True,
                         capture_output=True, text=True, timeout=120).stdout
    session = json.loads(out.splitlines()[0])["session"]
    wait_for((tmp_path / "start-0").exists, timeout=60,
             what="the detached workers to start work")
    before = set(session_processes(session))
    assert len(before) == 4  # two workers, each a supervisor and its task process
    monkeypatch.setenv("STARBURST_LOCAL_DIR", str(tmp_path))
    with starburst.attach(session, progress=False) as handle:
        assert handle.results(timeout=120) == list(range(6))
        assert handle.status().workers_launched == 0
    wait_for(lambda: not session_processes(session), timeout=15,
             what="the adopted workers to be stopped")


def test_a_detached_client_leaves_the_notices_its_last_poll_brings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """shutdown() of a detached client while its receiver's poll is out: what that
    poll brings back stays queued for whoever attaches. (The CI hang of the GPU
    attach test: the detached client consumed a ``done`` notice after the attached
    client had read the commits, so the attached one never heard of that chunk.)"""
    from _tasks import identity

    monkeypatch.setenv("STARBURST_LOCAL_DIR", str(tmp_path))
    settings = starburst.Settings(lease=4.0, heartbeat=1.0, poll=0.05, idle_timeout=30,
                                  client_heartbeat=1.0, client_stale=600, timeout_grace=1.0)
    ex = starburst.Executor(workers=1, detached=True, settings=settings, progress=False)
    client = ex._client
    results = client.transport.results
    receive = results.receive

    def poll_out_across_the_detach(**kwargs):
        wait_for(lambda: client._detaching, timeout=60, what="the client to detach")
        return receive(**kwargs)

    results.receive = poll_out_across_the_detach  # type: ignore[method-assign]
    time.sleep(1.0)  # the receiver's poll under way is the patched one
    ex.submit(identity, 7)
    wait_for(lambda: results.count() >= 2, timeout=60,
             what="the start and done notices")
    ex.shutdown()
    client._receiver.join(timeout=10)
    assert not client._receiver.is_alive()
    assert results.count() == 2  # handed back, not consumed
    with starburst.attach(ex.session_id, progress=False, settings=settings) as handle:
        assert handle.results(timeout=60) == [7]


def test_a_local_backend_dropped_with_a_worker_running_leaves_no_unreaped_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever path forgets a local backend while a worker runs, the worker's
    handle is reaped when it exits: no zombie, no "subprocess is still running"
    ResourceWarning failing whichever test runs at garbage collection."""
    import gc
    import warnings

    from starburst.backends.local import LocalBackend
    from starburst.options import ExecutorOptions

    monkeypatch.setenv("STARBURST_LOCAL_DIR", str(tmp_path))
    options = ExecutorOptions.build(settings=starburst.Settings(idle_timeout=3.0))
    session = LocalBackend.open_session(session="sb-20261128-000000-0dd0dd", options=options)
    spec = session.spec
    spec.env.update(options.settings.to_env())
    [worker] = session.backend.launch(1, spec)
    pid = session.backend.pids()[worker]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del session  # the worker runs on until its idle timeout (or has just exited:
        gc.collect()  # either way its handle is not reaped yet)
        wait_for(lambda: not alive(pid), timeout=30, what="the worker to exit and be reaped")
        # Its output pumps hold the backend until they read the end of its output.
        wait_for(lambda: not any(t.name.startswith(f"starburst-out-{worker}")
                                 for t in threading.enumerate()),
                 timeout=10, what="the worker's output pumps to end")
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)
                and "still running" in str(w.message)]


def test_a_worker_whose_pid_cannot_be_recorded_still_runs_and_is_reaped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writing the worker's pid into its lock file can fail (a full disk: the chaos
    test's tiny tmpfs). The worker it was launched for must then be kept and
    tracked, not dropped with its handle and pipes (a "subprocess is still
    running" ResourceWarning failing a later test)."""
    import errno
    import gc
    import warnings

    from starburst.backends import local
    from starburst.options import ExecutorOptions

    def disk_full(fd: int, pid: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(local, "_record_pid", disk_full)
    monkeypatch.setenv("STARBURST_LOCAL_DIR", str(tmp_path))
    options = ExecutorOptions.build(settings=starburst.Settings(idle_timeout=30.0))
    session = local.LocalBackend.open_session(session="sb-20261128-000000-0ffd15",
                                              options=options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        [worker] = session.backend.launch(1, session.spec)
        assert worker in session.backend.pids()
        session.backend.close()
        assert not session.backend.pids()
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_an_attached_client_fails_a_chunk_whose_workers_keep_dying(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk that lost its worker max_attempts times fails with WorkerLostError
    on an attached client too (whose chunks hold no task arguments), and the rest
    of the session goes on: it broke the client, and the future waited forever."""
    from _tasks import crash_if

    monkeypatch.setenv("STARBURST_LOCAL_DIR", str(tmp_path))
    settings = starburst.Settings(lease=4.0, heartbeat=1.0, poll=0.05, idle_timeout=30,
                                  client_heartbeat=1.0, client_stale=600, timeout_grace=1.0)
    ex = starburst.Executor(workers=1, detached=True, settings=settings, progress=False)
    ex.submit(crash_if, 1, 1)
    ex.submit(crash_if, 2, 1)
    ex.shutdown()
    with starburst.attach(ex.session_id, progress=False, settings=settings) as handle:
        lost, fine = handle.results(timeout=60, return_exceptions=True)
        assert isinstance(lost, starburst.WorkerLostError)
        assert "task 0 lost its worker 3 time(s)" in str(lost)
        assert fine == 2
        status = handle.status()
        assert (status.tasks_done, status.tasks_failed) == (1, 1)


def test_an_attached_client_fails_a_task_whose_stored_result_is_gone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A committed result whose stored body is missing fails its tasks with a
    ProtocolError naming the key on an attached client too (it raised ValueError
    out of attach(), losing every other result)."""
    from _tasks import identity

    from starburst.transport.local import DirStore
    from starburst.wire import messages as protocol
    from starburst.wire.keys import result_commit_key

    monkeypatch.setenv("STARBURST_LOCAL_DIR", str(tmp_path))
    settings = starburst.Settings(poll=0.05, idle_timeout=30, lease=4.0, heartbeat=1.0)
    ex = starburst.Executor(workers=1, detached=True, settings=settings, progress=False)
    big = b"x" * (2 << 20)  # past the local transport's 1 MiB inline limit: stored
    ex.submit(identity, big)
    ex.submit(identity, 2)
    session = ex.session_id
    ex.shutdown()
    store = DirStore(tmp_path / f"starburst-{session}" / "store")
    commits = [result_commit_key(session, chunk) for chunk in (0, 1)]
    wait_for(lambda: all(store.exists(c) for c in commits), timeout=60, what="both results")
    key = key_from_text((tmp_path / f"starburst-{session}" / "key").read_text())
    notices = [protocol.decode(store.get(c), key) for c in commits]
    [stored] = [n.key for n in notices if isinstance(n, protocol.Notice) and n.key]
    store.delete(stored)
    with starburst.attach(session, progress=False, settings=settings) as handle:
        gone, fine = handle.results(timeout=60, return_exceptions=True)
    assert isinstance(gone, starburst.ProtocolError)
    assert "is missing from the store" in str(gone)
    assert fine == 2
