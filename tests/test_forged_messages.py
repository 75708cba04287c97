"""Nobody but the session runs code in it: forged messages are refused unread.

Before issue 14 a message's checksum was an unkeyed BLAKE2b, so anyone who
could write a session's queue could send a task message (code ran in a
worker) or a ``done`` notice (code ran in the *client*, with the user's own
credentials, and replaced the real result). Here each forgery carries a
correct checksum and a pickle that creates a marker directory when it is
unpickled; it is tagged with a key that is not the session's (what anyone
without the key can do at best). On every backend: the marker never
appears, the real results arrive unchanged, and the refusals are counted.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from _support import wait_for
from _tasks import nap

from starburst.wire import messages as protocol
from starburst.wire.auth import new_key
from starburst.wire.keys import result_commit_key
from starburst.wire.serialization import dumps, frame_checksum


class _Plant:
    """Unpickling this creates ``path``: proof that a forged payload ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (self.path,))


def _poisoned(path: Path, spec: str) -> tuple[bytes, str]:
    frame = bytes(dumps(_Plant(str(path))))
    return frame, frame_checksum(frame, spec)


def test_a_forged_task_message_is_refused_by_the_worker(executor_factory, tmp_path):
    marker = tmp_path / "ran-in-a-worker"
    ex = executor_factory(workers=1)
    client = ex._client
    assert ex.submit(abs, -1).result(timeout=120) == 1  # a worker is up and reading
    frame, digest = _poisoned(marker, client.transport.spec)
    forged = protocol.TaskMessage(session=ex.session_id, chunk=10_000, n=1, checksum=digest,
                                  body=frame)
    client.transport.tasks.send([protocol.encode(forged, new_key())])
    wait_for(lambda: ex.status().messages_refused >= 1, timeout=60,
             what="the worker to refuse the forged task message")
    assert list(ex.map(abs, [-2, -3])) == [2, 3]
    assert not marker.exists()


def test_a_forged_done_notice_is_refused_by_the_client(executor_factory, tmp_path):
    marker = tmp_path / "ran-in-the-client"
    ex = executor_factory(workers=1)
    client = ex._client
    future = ex.submit(nap, 1.0)  # a real chunk 0, running while the forgery arrives
    wait_for(lambda: ex.status().chunks_running == 1, timeout=120, what="the task to start")
    frame, digest = _poisoned(marker, client.transport.spec)
    forged = protocol.Notice(kind="done", session=ex.session_id, chunk=0, worker="intruder",
                             attempt="forged", checksum=digest, body=frame)
    client.transport.results.send([protocol.encode(forged, new_key())])
    wait_for(lambda: ex.status().messages_refused >= 1, timeout=60,
             what="the client to refuse the forged notice")
    assert future.result(timeout=120) == 1.0  # the real result, not the forgery's
    time.sleep(0.2)
    assert not marker.exists()


def test_a_commit_copied_from_another_chunk_neither_wins_nor_stalls_the_chunk(
        executor_factory):
    # Anyone who may write the session's prefix can copy a valid (tagged) commit
    # of one chunk to another chunk's commit key. The worker finishing that chunk
    # found its commit "taken" and passed the copy on, which the client rightly
    # ignored: the chunk waited for ever. Now the worker checks what sits there.
    ex = executor_factory(workers=1)
    client = ex._client
    future = ex.submit(nap, 1.0)
    wait_for(lambda: ex.status().chunks_running == 1, timeout=120, what="the task to start")
    other = protocol.Notice(kind="done", session=ex.session_id, chunk=7, worker="w",
                            attempt="a", checksum="", body=b"")
    client.transport.store.put(result_commit_key(ex.session_id, 0),
                               protocol.encode(other, client.key))
    assert future.result(timeout=120) == 1.0
