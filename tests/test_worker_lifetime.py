"""No local process outlives its purpose: a task's children, a dead client's workers.

Local workers lead their own process group, so stopping one stops whatever
its tasks started; and each holds the read end of a pipe whose write end
only its client holds, so a client that dies by any signal takes its
workers (and their tasks) with it within seconds.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _support import alive, kill_all, session_processes, wait_for
from _tasks import spawn_sleeper

import starburst

TESTS_DIR = Path(__file__).resolve().parent


def test_a_task_child_process_does_not_survive_shutdown(fast_settings, tmp_path):
    with starburst.Executor(workers=1, settings=fast_settings, progress=False) as ex:
        pid = ex.submit(spawn_sleeper, tmp_path, "sleeper").result(timeout=60)
        session = ex.session_id
        assert alive(pid)
    try:
        wait_for(lambda: not alive(pid), timeout=5, what="the task's child to stop")
        assert session_processes(session) == []
    finally:
        kill_all([pid])


_CLIENT = """
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
import starburst
from _tasks import nap_with_sleeper

directory = Path({directory!r})
settings = starburst.Settings(lease=2.0, heartbeat=0.5, poll=0.05, idle_timeout=60,
                              client_heartbeat=1.0, client_stale=600, timeout_grace=1.0)
ex = starburst.Executor(workers=1, settings=settings, progress=False)
future = ex.submit(nap_with_sleeper, directory, "long", 30)
(directory / "session.tmp").write_text(ex.session_id)
(directory / "session.tmp").rename(directory / "session")
future.result()
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_local_workers_stop_within_5s_of_their_client_dying(tmp_path, sig):
    script = tmp_path / "client.py"
    script.write_text(_CLIENT.format(tests=str(TESTS_DIR), directory=str(tmp_path)))
    out = (tmp_path / "out.txt").open("wb")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=out,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    left: list[int] = []
    try:
        wait_for(lambda: (tmp_path / "start-long").exists() or proc.poll() is not None,
                 timeout=60, what="the task to start")
        assert proc.poll() is None, (tmp_path / "out.txt").read_text()
        session = (tmp_path / "session").read_text()
        marker = tmp_path / "child-long"
        child = int(wait_for(lambda: marker.exists() and marker.read_text(), timeout=5,
                             what="the task's child pid"))
        left = [*session_processes(session), child]
        assert len(left) >= 2
        assert all(alive(p) for p in left)
        proc.send_signal(sig)
        proc.wait(timeout=10)
        died = time.monotonic()
        wait_for(lambda: not any(alive(p) for p in left), timeout=5,
                 what=f"the workers and the task's child to stop after the client's {sig.name}")
        assert time.monotonic() - died < 5
        assert session_processes(session) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        kill_all(left)
        out.close()


def test_status_counts_no_worker_once_an_abort_stopped_a_busy_one(fast_settings):
    # A worker busy when the run stopped (abort, or a budget stop) was stopped
    # with the rest, but its exit went only to the cost: status() still
    # counted it alive after the ``with`` block (the flake of
    # test_max_cost_stops_the_run_and_fails_the_rest).
    from _tasks import nap
    ex = starburst.Executor(workers=1, settings=fast_settings, progress=False)
    future = ex.submit(nap, 60)
    wait_for(lambda: ex.status().chunks_running == 1, timeout=30, what="the task to start")
    ex.abort()
    assert future.done()
    status = ex.status()
    assert (status.workers, status.chunks_running, status.chunks_pending) == (0, 0, 0)
    assert (status.tasks_failed, status.tasks_pending) == (1, 0)
    assert session_processes(ex.session_id) == []
