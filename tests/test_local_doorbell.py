"""The local queue's doorbell: a send wakes a waiting receiver at once.

Each test patches the queue's poll intervals far above the time it allows,
so only the doorbell can end the wait in time.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from starburst.transport import local
from starburst.transport.local import LocalTransport, SqliteQueue

# Far longer than any wait below: a receiver that only polls sleeps through it.
_SLOW_POLL = 60.0
# How soon after a send the receiver must have it (the poll used to allow 5 ms;
# 0.2 s leaves room for a loaded 2-core machine).
_PROMPT = 0.2

_SENDER = """
import sys, time
from starburst.transport.local import SqliteQueue
queue = SqliteQueue(sys.argv[1], "q")
time.sleep(0.3)  # let the receiver settle into its wait
queue.send([b"hello"])
print(time.time(), flush=True)
"""


@pytest.fixture
def slow_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "_POLL_MIN", _SLOW_POLL)
    monkeypatch.setattr(local, "_POLL_MAX", _SLOW_POLL)
    monkeypatch.setattr(local, "_BELL_POLL", _SLOW_POLL, raising=False)


def _open_fds() -> dict[str, str]:
    """This process's descriptors and what each points to."""
    fds = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the directory listing's own descriptor, closed by now
    return fds


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if not p.name.startswith("queue.sqlite"))


@pytest.mark.usefixtures("slow_poll")
def test_a_send_from_another_process_wakes_the_receiver(tmp_path: Path) -> None:
    db = tmp_path / "queue.sqlite"
    queue = SqliteQueue(db, "q")
    sender = subprocess.Popen([sys.executable, "-c", _SENDER, str(db)],
                              stdout=subprocess.PIPE, text=True)
    try:
        got = queue.receive(wait_seconds=20.0)
        received = time.time()
    finally:
        out, _ = sender.communicate(timeout=30)
    assert [m.body for m in got] == [b"hello"]
    assert received - float(out) < _PROMPT
    queue.close()


@pytest.mark.usefixtures("slow_poll")
def test_a_release_wakes_the_receiver(tmp_path: Path) -> None:
    queue = SqliteQueue(tmp_path / "queue.sqlite", "q")
    queue.send([b"x"])
    [held] = queue.receive(visibility=600.0)
    released: list[float] = []

    def release() -> None:
        time.sleep(0.3)
        released.append(time.monotonic())
        queue.set_visibility(held.receipt, 0)

    thread = threading.Thread(target=release)
    thread.start()
    got = queue.receive(wait_seconds=10.0)
    received = time.monotonic()
    thread.join()
    assert [m.body for m in got] == [b"x"]
    assert received - released[0] < _PROMPT
    queue.close()


@pytest.mark.usefixtures("slow_poll")
def test_every_waiting_receiver_hears_the_ring(tmp_path: Path) -> None:
    queue = SqliteQueue(tmp_path / "queue.sqlite", "q")
    bodies: list[bytes] = []
    done: list[float] = []

    def receive() -> None:
        bodies.extend(m.body for m in queue.receive(wait_seconds=10.0))
        done.append(time.monotonic())

    threads = [threading.Thread(target=receive) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    sent = time.monotonic()
    queue.send([b"a", b"b"])
    for thread in threads:
        thread.join()
    assert sorted(bodies) == [b"a", b"b"]
    assert max(done) - sent < _PROMPT
    queue.close()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc (Linux)")
def test_close_leaves_no_descriptor_and_no_file(tmp_path: Path) -> None:
    before = _open_fds()
    transport = LocalTransport(tmp_path / "session")
    transport.tasks.receive(wait_seconds=0.01)
    transport.results.receive(wait_seconds=0.01)
    transport.results.send([b"x"])
    transport.close()
    assert _files(tmp_path / "session") == [tmp_path / "session" / "store"]
    opened = {fd: path for fd, path in _open_fds().items() if fd not in before}
    assert [p for p in opened.values() if "queue.sqlite" not in p] == []
    # The SQLite connections (per thread, as before) close with the transport.
    del transport
    gc.collect()
    assert set(_open_fds()) - set(before) == set()


def test_a_thread_that_ends_takes_its_doorbell_with_it(tmp_path: Path) -> None:
    queue = SqliteQueue(tmp_path / "queue.sqlite", "q")
    thread = threading.Thread(target=queue.receive, kwargs={"wait_seconds": 0.01})
    thread.start()
    thread.join()
    assert not queue.bells.exists()


def test_a_doorbell_whose_reader_died_is_removed_by_the_next_send(tmp_path: Path) -> None:
    queue = SqliteQueue(tmp_path / "queue.sqlite", "q")
    queue.bells.mkdir(parents=True)
    os.mkfifo(queue.bells / "12345-1-deadbeef")  # as a SIGKILLed receiver leaves it
    queue.send([b"x"])
    assert list(queue.bells.iterdir()) == []
    assert [m.body for m in queue.receive()] == [b"x"]


def test_without_fifos_the_queue_polls(tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError("no FIFOs here")

    monkeypatch.setattr(os, "mkfifo", refuse)
    queue = SqliteQueue(tmp_path / "queue.sqlite", "q")
    timer = threading.Timer(0.1, queue.send, args=([b"x"],))
    timer.start()
    got = queue.receive(wait_seconds=5.0)
    timer.join()
    assert [m.body for m in got] == [b"x"]


def test_a_writer_gets_the_lock_soon_after_it_is_released(tmp_path: Path) -> None:
    # SQLite's own busy handler retries after 1, 2, 5, 10, 15 ms...: a lock
    # held 20 ms is taken only at 33 ms. Starburst retries within 2 ms.
    db = tmp_path / "queue.sqlite"
    queue = SqliteQueue(db, "q")
    holder = SqliteQueue(db, "q")
    late: list[float] = []
    for _ in range(3):
        locked = threading.Event()
        freed: list[float] = []

        def hold() -> None:
            with holder._transaction("hold"):
                locked.set()
                time.sleep(0.02)
                freed.append(time.monotonic())

        thread = threading.Thread(target=hold)
        thread.start()
        locked.wait()
        queue.send([b"x"])
        late.append(time.monotonic() - freed[0])
        thread.join()
    assert sorted(late)[1] < 0.008
