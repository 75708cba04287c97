"""Helpers shared by the core tests: polling with deadlines and process checks.

Nothing here sleeps longer than one poll interval; every wait has a deadline
so a broken executor fails a test instead of hanging it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import signal
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: How often the helpers look again; short, so tests end soon after the event.
POLL = 0.02
#: Where the real-AWS tests (``tests/real_aws``, marked ``aws``) run: "1" on the
#: developer's own account; "emulated", "0" or unset on ``emulated_aws()``.
REAL_AWS_ENV = "STARBURST_TEST_REAL_AWS"
_REAL_AWS_VALUES = {"1": True, "emulated": False, "0": False, "": False}


def real_aws() -> bool:
    """Whether this run's real-AWS tests use a real account (``STARBURST_TEST_REAL_AWS=1``).

    Raises:
        ValueError: another value; a typo must not quietly run them on the emulator.
    """
    value = os.environ.get(REAL_AWS_ENV, "").strip()
    if value not in _REAL_AWS_VALUES:
        raise ValueError(f"{REAL_AWS_ENV}={value!r}: use 1 (your AWS account; it spends a few "
                         "cents) or emulated (emulated_aws(), the default)")
    return _REAL_AWS_VALUES[value]


def wait_for(predicate: Callable[[], T], *, timeout: float, what: str) -> T:
    """Return the first truthy value of ``predicate()``; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(POLL)


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the parenthesised command name.
    return stat.rpartition(")")[2].split()[0] != "Z"


def worker_of(pid: int) -> int:
    """The worker (supervisor) of a task process: its parent. Tasks run in a
    long-lived child of the worker, never in the worker's own process."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[1])


def session_processes(session_id: str) -> list[int]:
    """Pids of live processes started for ``session_id`` (its workers).

    Workers carry ``STARBURST_SESSION=<id>`` in their environment, whichever
    backend started them on this machine.
    """
    needle = f"STARBURST_SESSION={session_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def kill_all(pids: list[int]) -> None:
    """SIGKILL every pid that is still there (cleanup of a failed test)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class SharedEmulator:
    """The one emulated AWS of a test session, started on first use.

    moto keeps its state in process-wide backends, so two emulators in one
    process would share it (and both task runners would start every task):
    every fixture that needs the emulated AWS takes this one.
    """

    aws: Any = None
    env: dict[str, str] = {}
    _cm: Any = None

    @classmethod
    def get(cls) -> Any:
        if cls.aws is None:
            from starburst.testing import emulated_aws
            from starburst.testing.registry import registry_binary

            saved = dict(os.environ)
            # With Debian's registry installed, the emulator also plays ECR.
            cls._cm = emulated_aws(registry=registry_binary() is not None)
            cls.aws = cls._cm.__enter__()
            cls.env = {k: v for k, v in os.environ.items()
                       if k.startswith(("AWS_", "STARBURST_")) and saved.get(k) != v}
        return cls.aws

    @classmethod
    def stop(cls) -> None:
        if cls._cm is not None:
            cls._cm.__exit__(None, None, None)
            cls._cm = cls.aws = None


def finish_a_session(aws: Any) -> str:
    """Run a one-worker fargate session on ``aws`` whose task prints ``hello from task
    41``, to its end; its session id (the ``finished_session`` fixtures)."""
    from _tasks import greet

    import starburst

    settings = starburst.Settings(poll=0.05, idle_timeout=30)
    with starburst.Executor(backend="fargate", workers=1, settings=settings,
                            progress=False) as ex:
        assert ex.submit(greet, 41).result(timeout=60) == 42
        sid = ex.session_id
    wait_for(lambda: not aws.runner.pids(), timeout=20, what="the task to exit")
    return sid


def emulated_pids() -> dict[str, int]:
    """Task ARN -> pid of the emulated Fargate tasks (for fault injection)."""
    return dict(SharedEmulator.get().runner.pids())


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(
        b"=").decode()


def make_wheel(directory: Path, name: str, version: str, files: dict[str, bytes], *,
               requires: tuple[str, ...] = (), tag: str = "py3-none-any",
               scripts: dict[str, str] | None = None,
               requires_python: str | None = None) -> Path:
    """Write a wheel with ``files`` (path -> bytes) and return its path."""
    dist = f"{name.replace('-', '_')}-{version}"
    content = dict(files)
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    meta += f"Requires-Python: {requires_python}\n" if requires_python else ""
    content[f"{dist}.dist-info/METADATA"] = meta.encode()
    purelib = "true" if tag.endswith("none-any") else "false"
    content[f"{dist}.dist-info/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: starburst-tests\nRoot-Is-Purelib: {purelib}\n"
        f"Tag: {tag}\n").encode()
    if scripts:
        lines = "".join(f"{k} = {v}\n" for k, v in scripts.items())
        content[f"{dist}.dist-info/entry_points.txt"] = f"[console_scripts]\n{lines}".encode()
    record = "".join(f"{p},{_record_hash(b)},{len(b)}\n" for p, b in content.items())
    content[f"{dist}.dist-info/RECORD"] = (record + f"{dist}.dist-info/RECORD,,\n").encode()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{dist}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for arcname, data in content.items():
            zf.writestr(arcname, data)
    return path


@contextlib.contextmanager
def private_moto_server() -> Iterator[str]:
    """A moto server of the caller's own on 127.0.0.1 (no global mock, no reset of
    the shared emulator); yields its URL and stops it after."""
    import logging

    from moto.server import ThreadedMotoServer

    werkzeug = logging.getLogger("werkzeug")
    level = werkzeug.level
    werkzeug.setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        werkzeug.setLevel(level)


#: The session key of workers the tests wire up themselves (:func:`task_process`).
TEST_KEY = bytes(range(32))


@contextlib.contextmanager
def task_process(transport: Any, *, session: str, **kw: Any) -> Iterator[Any]:
    """A worker loop wired as a supervisor's task process (its only mode), on pipes
    whose supervisor ends this test holds; yields the ``Worker``, closes every pipe."""
    from multiprocessing import Pipe

    from starburst.worker.loop import Worker

    inbox, to_child = Pipe(duplex=False)
    from_child, outbox = Pipe(duplex=False)
    try:
        kw.setdefault("key", TEST_KEY)
        yield Worker(transport, session=session, link=(inbox, outbox), **kw)
    finally:
        for conn in (inbox, to_child, from_child, outbox):
            conn.close()
