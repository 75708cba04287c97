"""A local session's files are its user's alone, and go when the session does.

The session directory holds inline arguments and results (the queue) and
stored payloads: every directory in it is 0700 and every file (store files,
``queue.sqlite`` and its ``-wal``/``-shm``, the doorbell FIFOs, worker locks
and logs) 0600, whatever the umask; and it is removed on every way out of a
session but detaching, after which ``starburst cleanup --local`` removes it.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _support import kill_all, session_processes, wait_for
from _tasks import double, nap
from click.testing import CliRunner

import starburst
import starburst.client
from starburst.admin.local_cleanup import clean_local_orphans
from starburst.cli import main
from starburst.options import ExecutorOptions
from starburst.transport import open_transport
from starburst.transport.local import DirStore, LocalTransport, SqliteQueue, key_path
from starburst.wire.keys import record_key

TESTS_DIR = Path(__file__).resolve().parent

# Run under umask 000 in a process of its own (the umask is process-wide):
# every file the client and its workers make would be world-writable if any
# of them relied on the umask.
_WALK = textwrap.dedent("""
    import json, os, stat, sys, time
    os.umask(0)
    sys.path.insert(0, {tests!r})
    import starburst
    from _tasks import double

    settings = starburst.Settings(lease=4.0, heartbeat=0.5, poll=0.05, idle_timeout=5,
                                  client_heartbeat=1.0, client_stale=600, timeout_grace=1.0)
    ex = starburst.Executor(workers=2, detached={detached}, settings=settings, progress=False)
    # Big enough to go through the store, and many, so the queue has a WAL.
    assert list(ex.map(double, [b"x" * (2 << 20)] * 2)) == [b"x" * (4 << 20)] * 2
    assert list(ex.map(double, range(200))) == [2 * i for i in range(200)]
    time.sleep(0.5)  # the workers wait on their doorbells: FIFOs exist
    root = os.path.join(os.environ["STARBURST_LOCAL_DIR"], "starburst-" + ex.session_id)
    modes = {{}}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [".", *dirnames, *filenames]:
            path = os.path.normpath(os.path.join(dirpath, name))
            modes[os.path.relpath(path, root)] = os.lstat(path).st_mode
    ex.shutdown()
    print(json.dumps({{"session": ex.session_id, "modes": modes}}))
""")


def _walk_session(tmp_path: Path, *, detached: bool) -> tuple[str, dict[str, int]]:
    script = tmp_path / "client.py"
    script.write_text(_WALK.format(tests=str(TESTS_DIR), detached=detached))
    env = {**os.environ, "STARBURST_LOCAL_DIR": str(tmp_path / "local")}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return out["session"], out["modes"]


@pytest.mark.parametrize("detached", [False, True])
def test_every_path_of_a_local_session_is_private_under_umask_000(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, detached: bool) -> None:
    session, modes = _walk_session(tmp_path, detached=detached)
    kinds = {name: stat.S_IFMT(mode) for name, mode in modes.items()}
    # What the walk must have seen, so the test cannot pass on an empty directory.
    for expected in ("store", "queue.sqlite", "queue.sqlite-wal", "queue.sqlite-shm",
                     "workers"):
        assert expected in modes, sorted(modes)
    assert stat.S_IFIFO in kinds.values(), sorted(modes)  # doorbells
    if detached:
        assert any(name.startswith("logs/") for name in modes), sorted(modes)
    loose = {name: oct(stat.S_IMODE(mode)) for name, mode in modes.items()
             if stat.S_IMODE(mode) != (0o700 if stat.S_ISDIR(mode) else 0o600)}
    assert loose == {}
    assert not any(stat.S_ISLNK(mode) for mode in modes.values())
    if detached:  # collect it, so its workers end with the test
        monkeypatch.setenv("STARBURST_LOCAL_DIR", str(tmp_path / "local"))
        with starburst.attach(session, progress=False) as handle:
            handle.results(timeout=60)
    assert not (tmp_path / "local" / f"starburst-{session}").exists()


def test_the_transport_makes_its_files_private_under_umask_000(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        transport = LocalTransport(tmp_path / "a" / "session")
        transport.store.put("sessions/s/x/y", b"data")
        assert transport.store.put_if_absent("sessions/s/z", b"data")
        transport.tasks.send([b"m"])
        assert transport.tasks.receive(wait_seconds=0.05) != []
        transport.results.receive(wait_seconds=0.05)  # makes this thread's doorbell
        paths = [tmp_path / "a", *sorted((tmp_path / "a").rglob("*"))]
        assert any(p.name == "queue.sqlite-wal" for p in paths)
        assert any(stat.S_ISFIFO(p.lstat().st_mode) for p in paths)
        loose = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.lstat().st_mode))
                 for p in paths if stat.S_IMODE(p.lstat().st_mode) !=
                 (0o700 if p.is_dir() else 0o600)}
        assert loose == {}
        transport.destroy()
    finally:
        os.umask(old)


def test_a_queue_or_store_made_alone_is_private(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        store = DirStore(tmp_path / "store")
        store.put("a/b", b"1")
        queue = SqliteQueue(tmp_path / "q.sqlite", "tasks")
        queue.send([b"m"])
        for path in [tmp_path / "store", *(tmp_path / "store").rglob("*"),
                     *tmp_path.glob("q.sqlite*")]:
            expected = 0o700 if path.is_dir() else 0o600
            assert stat.S_IMODE(path.stat().st_mode) == expected, path
        queue.close()
    finally:
        os.umask(old)


def test_a_session_directory_someone_else_made_is_refused(tmp_path: Path) -> None:
    made = tmp_path / "session"
    made.mkdir(mode=0o755)
    os.chmod(made, 0o777)  # as another user's world-writable directory would be
    with pytest.raises(starburst.TransportError, match="not private"):
        LocalTransport(made)
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(starburst.TransportError, match="symbolic link"):
        LocalTransport(link)


def test_a_worker_does_not_recreate_a_removed_session_directory(tmp_path: Path) -> None:
    transport = LocalTransport(tmp_path / "session")
    spec = transport.spec
    transport.destroy()
    with pytest.raises(starburst.TransportError, match="is gone"):
        open_transport(spec)
    assert not (tmp_path / "session").exists()
    # Nor does its store, should the directory go between the check and the store.
    with pytest.raises(starburst.TransportError, match="cannot create"):
        DirStore(tmp_path / "session" / "store", within=tmp_path / "session")
    assert not (tmp_path / "session").exists()


# -- nothing is left: every way out of a session ------------------------------


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.glob("starburst-*")) if root.exists() else []


def test_a_session_that_ends_normally_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast_settings) -> None:
    monkeypatch.setenv("STARBURST_LOCAL_DIR", str(tmp_path))
    with starburst.Executor(workers=1, settings=fast_settings, progress=False) as ex:
        assert ex.submit(double, 2).result(timeout=60) == 4
        assert _leftovers(tmp_path) == [f"starburst-{ex.session_id}"]
    assert _leftovers(tmp_path) == []


def test_an_exception_in_the_with_block_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast_settings) -> None:
    monkeypatch.setenv("STARBURST_LOCAL_DIR", str(tmp_path))

    def run() -> None:
        with starburst.Executor(workers=1, settings=fast_settings, progress=False) as ex:
            ex.submit(double, 2).result(timeout=60)
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        run()
    assert _leftovers(tmp_path) == []


def test_an_abort_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 fast_settings) -> None:
    monkeypatch.setenv("STARBURST_LOCAL_DIR", str(tmp_path))

    def run() -> None:
        with starburst.Executor(workers=1, settings=fast_settings, progress=False) as ex:
            ex.submit(nap, 30)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run()
    assert _leftovers(tmp_path) == []


def test_a_construction_that_fails_after_making_the_directory_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STARBURST_LOCAL_DIR", str(tmp_path))
    def refuse(*args: object, **kwargs: object) -> None:
        assert len(_leftovers(tmp_path)) == 1  # the directory was made
        raise RuntimeError("refused after the session directory was made")

    monkeypatch.setattr(starburst.client, "Scheduler", refuse)
    with pytest.raises(RuntimeError, match="refused"):
        starburst.Executor(workers=1, progress=False)
    assert _leftovers(tmp_path) == []


# -- what a killed or detached client leaves: starburst cleanup --local -------

_CLIENT = textwrap.dedent("""
    import json, sys, time
    sys.path.insert(0, {tests!r})
    import starburst
    from _tasks import nap

    settings = starburst.Settings(lease=4.0, heartbeat=0.5, poll=0.05, idle_timeout=60,
                                  client_heartbeat=1.0, client_stale=600, timeout_grace=1.0)
    ex = starburst.Executor(workers=1, detached={detached}, settings=settings, progress=False)
    first = ex.submit(nap, 0.1)
    ex.submit(nap, 60)
    first.result()
    print(json.dumps({{"session": ex.session_id}}), flush=True)
    {after}
""")


def _client(tmp_path: Path, *, detached: bool, after: str) -> tuple[subprocess.Popen[str], str]:
    script = tmp_path / "client.py"
    script.write_text(_CLIENT.format(tests=str(TESTS_DIR), detached=detached, after=after))
    env = {**os.environ, "STARBURST_LOCAL_DIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise AssertionError(f"the client printed no session id: {proc.communicate()[1]}")
    return proc, json.loads(line)["session"]


def _cleanup(*args: str) -> str:
    result = CliRunner().invoke(main, ["cleanup", "--local", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_cleanup_removes_what_a_killed_client_left_once_its_workers_are_gone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proc, session = _client(tmp_path, detached=False, after="time.sleep(60)")
    proc.kill()
    proc.communicate(timeout=30)
    directory = tmp_path / f"starburst-{session}"
    assert directory.is_dir()  # kept: attach can still collect it
    monkeypatch.setenv("STARBURST_LOCAL_DIR", str(tmp_path))
    # Its client beat a moment ago: a session that may yet be attached is left.
    assert _cleanup("--orphans") == "Nothing to clean up.\n"
    # The workers follow their dead client within seconds.
    wait_for(lambda: not session_processes(session), timeout=30,
             what="the dead client's workers to stop")
    assert f"would delete {directory}" in _cleanup("--orphans", "--min-age", "0", "--dry-run")
    assert directory.is_dir()
    assert f"delete {directory}" in _cleanup("--orphans", "--min-age", "0")
    assert not directory.exists()


def test_cleanup_removes_a_detached_session_once_its_deadline_passed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proc, session = _client(tmp_path, detached=True, after="ex.shutdown()")
    proc.communicate(timeout=30)
    assert proc.returncode == 0
    directory = tmp_path / f"starburst-{session}"
    monkeypatch.setenv("STARBURST_LOCAL_DIR", str(tmp_path))
    try:
        # Submitted, its results not collected and its deadline ahead: kept.
        assert clean_local_orphans(min_age=0) == []
        assert session_processes(session)  # its worker runs the long task
        deadline = json.loads(key_path(directory / "store", record_key(session))
                              .read_text())["deadline"]
        done = clean_local_orphans(min_age=0, now=deadline + 1)
        assert done == [f"stop 1 local worker process(es) of session {session}",
                        f"delete {directory} (session {session})"]
        assert not directory.exists()
        wait_for(lambda: not session_processes(session), timeout=30,
                 what="the session's worker to stop")
    finally:
        kill_all(session_processes(session))


def test_cleanup_of_a_named_local_session_stops_its_workers_and_removes_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proc, session = _client(tmp_path, detached=True, after="ex.shutdown()")
    proc.communicate(timeout=30)
    directory = tmp_path / f"starburst-{session}"
    monkeypatch.setenv("STARBURST_LOCAL_DIR", str(tmp_path))
    try:
        out = _cleanup(session)
        assert f"stop 1 local worker process(es) of session {session}" in out
        assert not directory.exists()
        assert session_processes(session) == []
        assert _cleanup(session) == "Nothing to clean up.\n"
    finally:
        kill_all(session_processes(session))


def test_cleanup_touches_only_this_users_session_directories(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STARBURST_LOCAL_DIR", str(tmp_path))
    (tmp_path / "starburst-code").mkdir()  # not a session
    (tmp_path / "starburst-emulated-aws-x").mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "starburst-sb-20260101-000000-abcdef").symlink_to(elsewhere)
    stale = tmp_path / "starburst-sb-20260101-000000-000000"  # no record: a failed start
    stale.mkdir()
    os.utime(stale, (0, 0))
    assert clean_local_orphans(min_age=600) == [
        f"delete {stale} (session sb-20260101-000000-000000)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "elsewhere", "starburst-code", "starburst-emulated-aws-x",
        "starburst-sb-20260101-000000-abcdef"]


_NO_SHUTDOWN = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    import starburst
    from _tasks import double

    ex = starburst.Executor(workers=1, progress=False)
    assert ex.submit(double, 3).result() == 6
    {end}
""")


@pytest.mark.parametrize("end", ["pass", "raise SystemExit(3)", "raise ValueError('boom')"])
def test_a_client_that_exits_without_shutdown_leaves_nothing(tmp_path: Path, end: str) -> None:
    script = tmp_path / "client.py"
    script.write_text(_NO_SHUTDOWN.format(tests=str(TESTS_DIR), end=end))
    local = tmp_path / "local"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env={**os.environ, "STARBURST_LOCAL_DIR": str(local)}, timeout=60,
                          check=False)
    assert done.returncode == {"pass": 0, "raise SystemExit(3)": 3}.get(end, 1), done.stderr
    assert local.is_dir()  # the session ran there
    assert _leftovers(local) == []


def test_a_local_backend_that_fails_to_open_its_session_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STARBURST_LOCAL_DIR", str(tmp_path))
    def refuse(self: object) -> int:
        assert len(_leftovers(tmp_path)) == 1  # the transport made the directory
        raise RuntimeError("refused while the backend opened its session")

    monkeypatch.setattr(ExecutorOptions, "default_local_workers", refuse)
    with pytest.raises(RuntimeError, match="refused while"):
        starburst.Executor(progress=False)
    assert _leftovers(tmp_path) == []
