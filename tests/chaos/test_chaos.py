"""Chaos: faults at a steady rate during a run of a few hundred tasks.

Each test checks the same three things: every result is correct, none is
lost, none is surfaced twice (the executor counts each task done once).
The one-off crash rows (a worker killed once, a worker stalled past its
lease, Ctrl-C in the client...) are in tests/test_crash_matrix.py.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import _faults
import pytest
from _support import alive, kill_all, session_processes, wait_for
from _tasks import double, identity, nap

import starburst

TESTS_DIR = Path(__file__).resolve().parent.parent


@pytest.fixture
def worker_faults(tmp_path: Path):
    """A directory whose ``sitecustomize`` injects AWS faults into workers started now.

    ``_faults.write_sitecustomize(directory, ...)`` arms it; the directory is
    first on ``sys.path`` (hence on every emulated Fargate worker's
    ``PYTHONPATH``) for this test only. (No conftest here: a second
    ``conftest`` module would shadow the core one the tests import from.)
    """
    directory = tmp_path / "faults"
    directory.mkdir()
    _faults.put_first_on_path(directory)
    try:
        yield directory
    finally:
        _faults.remove_from_path(directory)
        _faults.uninstall()


def _worker_pids(ex: starburst.Executor, *, served: bool = False) -> list[int]:
    """The live workers' pids; with ``served``, only of workers that started a chunk."""
    if ex._options.backend == "fargate":
        from _support import emulated_pids

        by_worker = emulated_pids()
    else:
        by_worker = ex._client.backend.pids()
    if served:
        client = ex._client
        with client._lock:
            productive = set(client._productive)
        by_worker = {w: p for w, p in by_worker.items() if w in productive}
    return list(by_worker.values())


def _check_exact(ex: starburst.Executor, results: list, expected: list) -> None:
    assert results == expected  # correct, in order, none lost
    status = ex.status()
    # none duplicated: every task counted done exactly once
    assert (status.tasks_done, status.tasks_failed, status.tasks_pending) == (len(expected), 0, 0)
    assert status.tasks_total == len(expected)
    assert (status.chunks_pending, status.chunks_running) == (0, 0)


class _Killer(threading.Thread):
    """SIGKILLs a random worker every ``period`` seconds until stopped."""

    def __init__(self, ex: starburst.Executor, period: float, seed: int = 1,
                 min_age: float = 0.5, served: bool = False) -> None:
        super().__init__(daemon=True, name="chaos-killer")
        self.ex, self.period, self.random = ex, period, random.Random(seed)
        self.min_age, self.served = min_age, served
        self.stop = threading.Event()
        self.kills = 0

    def run(self) -> None:
        # Only workers up for min_age (or, with ``served``, that started a
        # chunk): a worker killed before it serves anything counts towards
        # "workers cannot start" (ExecutorBroken), by design.
        first_seen: dict[int, float] = {}
        while not self.stop.wait(self.period):
            now = time.monotonic()
            for pid in _worker_pids(self.ex, served=self.served):
                first_seen.setdefault(pid, now)
            pids = [p for p, t in first_seen.items() if now - t >= self.min_age and alive(p)]
            if pids:
                try:
                    os.kill(self.random.choice(pids), signal.SIGKILL)
                    self.kills += 1
                except ProcessLookupError:
                    pass


def test_random_sigkill_at_a_steady_rate(executor_factory):
    fargate = executor_factory.backend == "fargate"
    n = 300 if fargate else 400
    ex = executor_factory(workers=4, max_attempts=20)
    # An emulated Fargate worker may take many seconds to start on a loaded
    # machine; killing it before it serves anything would (rightly) read as
    # "workers cannot start", so only workers that started a chunk are
    # targets there.
    killer = _Killer(ex, period=0.5 if fargate else 0.25, min_age=0.5, served=fargate)
    killer.start()
    try:
        results = list(ex.map(nap, [0.03] * n, chunksize=4))
    finally:
        killer.stop.set()
        killer.join()
    assert killer.kills >= 3
    _check_exact(ex, results, [0.03] * n)
    status = ex.status()
    assert status.attempts > status.chunks_done  # the kills did cost attempts
    assert status.workers_launched > 4


@pytest.mark.parametrize("backend", ["fargate"], indirect=True)
def test_throttling_and_5xx_on_every_aws_call(executor_factory, worker_faults):
    config = {"throttle": 0.20, "server_error": 0.05, "seed": 7}
    _faults.write_sitecustomize(worker_faults, **config)
    client_side = _faults.install(_faults.Injector(**config))
    n = 200
    ex = executor_factory(workers=3)
    results = list(ex.map(double, range(n), chunksize=10))
    futures = [ex.submit(identity, i) for i in range(10)]
    submitted = [f.result(timeout=120) for f in futures]
    _faults.uninstall()
    _check_exact(ex, results + submitted, [2 * i for i in range(n)] + list(range(10)))
    assert client_side.counts["throttled"] > 0
    assert client_side.counts["server_error"] > 0
    ex.shutdown(wait=True)
    workers = wait_for(lambda: _faults.worker_counts(worker_faults), timeout=30,
                       what="the workers' fault counts")
    assert workers.get("throttled", 0) > 0, workers


_DETACHED_CLIENT = textwrap.dedent("""
    import json, sys, time
    sys.path.insert(0, {tests!r})
    import starburst
    from _tasks import nap

    settings = starburst.Settings(lease=4.0, heartbeat=1.0, poll=0.05, idle_timeout=20,
                                  client_heartbeat=0.5, client_stale=3.0, timeout_grace=1.0)
    ex = starburst.Executor(backend="fargate", workers=2, detached={detached},
                            settings=settings, progress=False)
    futures = [ex.submit(nap, {seconds} + 0.01 * i) for i in range({n})]
    print(json.dumps({{"session": ex.session_id}}), flush=True)
    futures[0].result()
    print("running", flush=True)
    time.sleep(600)
""")


def _start_fargate_client(tmp_path: Path, *, detached: bool, seconds: float, n: int):
    from _support import SharedEmulator as _Emulator

    script = tmp_path / "client.py"
    script.write_text(_DETACHED_CLIENT.format(tests=str(TESTS_DIR), detached=detached,
                                              seconds=seconds, n=n))
    env = {**os.environ, **_Emulator.env}
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    if not line:
        _, err = proc.communicate(timeout=30)
        raise AssertionError(f"the client printed no session id: {err}")
    session = json.loads(line)["session"]
    assert proc.stdout.readline().strip() == "running"
    return proc, session


@pytest.mark.parametrize("backend", ["fargate"], indirect=True)
def test_fargate_detached_client_killed_then_attach(backend, tmp_path):
    """A detached Fargate client is SIGKILLed mid-run: attach gets every result.

    (The local-backend version is
    tests/test_detached.py::test_client_killed_mid_run_then_attach_gets_every_result.)
    """
    from _support import SharedEmulator as _Emulator

    n = 12
    proc, session = _start_fargate_client(tmp_path, detached=True, seconds=0.2, n=n)
    proc.kill()
    proc.communicate(timeout=10)
    settings = starburst.Settings(lease=4.0, heartbeat=1.0, poll=0.05, idle_timeout=20,
                                  client_heartbeat=0.5, client_stale=3.0)
    try:
        with starburst.attach(session, backend="fargate", progress=False,
                              settings=settings) as handle:
            results = handle.results(timeout=120)
            assert results == [0.2 + 0.01 * i for i in range(n)]  # none lost, in order
            status = handle.status()
            assert status.tasks_total == n
            assert (status.tasks_done, status.tasks_failed) == (n, 0)  # none twice
        # The attached client ended the session: its record is gone.
        with pytest.raises(starburst.ConfigurationError, match=session) as info:
            starburst.attach(session, backend="fargate", progress=False, settings=settings)
        assert "bucket" in str(info.value)
        assert "prefix" in str(info.value)
    finally:
        _Emulator.get().runner.kill_all()  # the detached workers would run on


@pytest.mark.parametrize("backend", ["fargate"], indirect=True)
def test_fargate_client_killed_without_detached_every_worker_exits(backend, tmp_path):
    from _support import SharedEmulator as _Emulator

    runner = _Emulator.get().runner
    proc, _session = _start_fargate_client(tmp_path, detached=False, seconds=30, n=4)
    assert runner.pids()
    killed_at = time.monotonic()
    proc.kill()
    proc.communicate(timeout=10)
    pids = list(runner.pids().values())
    try:
        # client_stale=3 s, client_heartbeat=0.5 s: every worker (and its task) is
        # gone well within 3 + 0.5 + a poll, with slack for a loaded machine.
        wait_for(lambda: not any(alive(p) for p in pids), timeout=12,
                 what="every worker to exit after its client died")
    finally:
        kill_all(pids)
    assert time.monotonic() - killed_at < 12


def test_local_client_killed_without_detached_every_worker_exits(tmp_path, monkeypatch):
    script = tmp_path / "client.py"
    script.write_text(textwrap.dedent(f"""
        import json, sys, time
        sys.path.insert(0, {str(TESTS_DIR)!r})
        import starburst
        from _tasks import nap
        settings = starburst.Settings(lease=2.0, heartbeat=0.5, poll=0.05, idle_timeout=30,
                                      client_heartbeat=0.5, client_stale=3.0)
        ex = starburst.Executor(workers=2, settings=settings, progress=False)
        futures = [ex.submit(nap, 30) for i in range(4)]
        print(json.dumps({{"session": ex.session_id}}), flush=True)
        time.sleep(600)
    """))
    env = {**os.environ, "STARBURST_LOCAL_DIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            env=env)
    session = json.loads(proc.stdout.readline())["session"]
    pids = wait_for(lambda: len(session_processes(session)) >= 2 and session_processes(session),
                    timeout=30, what="the workers to start")
    proc.kill()
    proc.communicate(timeout=10)
    try:
        wait_for(lambda: not any(alive(p) for p in pids), timeout=5,
                 what="every local worker to exit after its client died")
    finally:
        kill_all(pids)


@pytest.mark.parametrize("backend", ["fargate"], indirect=True)
def test_emulated_aws_reset_mid_run_fails_clearly_and_does_not_hang(executor_factory):
    from _support import SharedEmulator as _Emulator

    ex = executor_factory(workers=2)
    futures = [ex.submit(nap, 0.5) for _ in range(20)]
    futures[0].result(timeout=60)
    started = time.monotonic()
    _Emulator.get().reset()  # queues, bucket objects, tasks: all gone
    errors = []
    for f in futures[1:]:
        try:
            f.result(timeout=90)
        except Exception as exc:
            errors.append(exc)
    assert time.monotonic() - started < 90
    assert errors, "the run went on as if nothing happened"
    message = " ".join(str(e) for e in errors)
    assert all(isinstance(e, starburst.StarburstError) for e in errors), errors
    # Whichever call meets the reset first names what is gone.
    assert any(word in message for word in ("queue", "Queue", "bucket", "Bucket", "NoSuch",
                                            "cluster does not exist")), message


# -- the store fails --------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_local_store_disk_full_fails_clearly_without_partial_success(
        tiny_disk, monkeypatch, fast_settings):
    monkeypatch.setenv("STARBURST_LOCAL_DIR", str(tiny_disk))
    big = b"x" * (150 * 1024)  # two such payloads queued at once fill the disk
    ok, failed = [], []
    with (pytest.raises(starburst.StarburstError) as info,  # noqa: PT012
          starburst.Executor(workers=2, settings=fast_settings, progress=False) as ex):
        futures = [ex.submit(len, big + bytes([i])) for i in range(8)]
        for f in futures:
            try:
                ok.append(f.result(timeout=60))
            except starburst.StarburstError as exc:
                failed.append(exc)
        if failed:
            raise failed[0]
    message = str(info.value)
    assert "No space left on device" in message or "ENOSPC" in message or \
        "disk" in message.lower(), message
    assert all(v == len(big) + 1 for v in ok)  # what succeeded is right
    assert len(ok) < 8  # the full disk did not pass as success


@pytest.mark.parametrize("backend", ["fargate"], indirect=True)
def test_s3_denied_on_one_result_key_fails_that_task_only(executor_factory, worker_faults):
    ex = executor_factory(workers=1)
    assert ex.submit(double, 1).result(timeout=120) == 2  # warm; the store works
    # Deny the client's reads of chunk 1's result objects (a large result goes
    # through S3; its notice only points at it).
    injector = _faults.install(_faults.Injector(deny="/results/", deny_method="GET"))
    good = ex.submit(double, 2)
    big = ex.submit(os.urandom, 1_000_000)  # incompressible: stored in S3
    after = ex.submit(double, 3)
    with pytest.raises(starburst.StarburstError) as info:
        big.result(timeout=30)
    assert injector.counts["denied"] > 0
    assert "AccessDenied" in str(info.value) or "denied" in str(info.value).lower(), \
        str(info.value)
    assert good.result(timeout=120) == 4
    assert after.result(timeout=120) == 6
    _faults.uninstall()
