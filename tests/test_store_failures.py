"""A store that fails (a full disk, a transport error) fails the tasks it
could not store, clearly and at once, and the session recovers when the
store works again (issue #17, defect 4)."""

from __future__ import annotations

import errno
import os
import random
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import starburst
from starburst.exceptions import TransportError

# Over the share threshold (1 MiB): stored once per session by content hash.
_BIG = b"x" * (2 << 20)


def _failing_put(store: Any, match: str, error: Callable[[], BaseException],
                 times: int = 1) -> list[str]:
    """Make ``store.put`` raise ``error()`` for the next ``times`` keys holding ``match``."""
    real = store.put
    failed: list[str] = []

    def put(key: str, data: bytes) -> None:
        if match in key and len(failed) < times:
            failed.append(key)
            raise error()
        real(key, data)

    store.put = put
    return failed


def _enospc() -> OSError:
    return OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("error", [_enospc, lambda: TransportError("disk full")],
                         ids=["OSError", "TransportError"])
def test_a_shared_blob_that_cannot_be_stored_fails_its_future_then_recovers(
        fast_settings: starburst.Settings, error: Callable[[], BaseException]) -> None:
    with starburst.Executor(workers=1, progress=False, settings=fast_settings) as ex:
        failed = _failing_put(ex._client.transport.store, "/objects/", error)
        future = ex.submit(len, _BIG)
        with pytest.raises(TransportError, match="could not be stored") as info:
            future.result(timeout=10)
        assert failed
        assert info.value.__cause__ is not None
        # Space is back: the next submit stores the blob again and runs.
        assert ex.submit(len, _BIG).result(timeout=30) == len(_BIG)
        assert ex.submit(len, b"small").result(timeout=30) == 5


def test_a_payload_that_cannot_be_stored_fails_its_futures_then_recovers(
        fast_settings: starburst.Settings) -> None:
    with starburst.Executor(workers=1, progress=False, settings=fast_settings) as ex:
        failed = _failing_put(ex._client.transport.store, "/payloads/", _enospc)
        # Two distinct arguments under the share threshold, over the inline limit
        # together: the payload goes to the store, however the submits are chunked.
        pairs = [(random.Random(i).randbytes(600_000), random.Random(-i).randbytes(600_000))
                 for i in range(4)]
        futures = [ex.submit(max, *pair) for pair in pairs]
        outcomes = []
        for future in futures:
            try:
                outcomes.append(future.result(timeout=10))
            except TransportError as exc:
                outcomes.append(type(exc))
        assert failed
        assert TransportError in outcomes
        assert ex.submit(max, *pairs[1]).result(timeout=30) == max(pairs[1])


def test_a_map_whose_function_cannot_be_stored_raises_transport_error(
        fast_settings: starburst.Settings) -> None:
    with starburst.Executor(workers=1, progress=False, settings=fast_settings) as ex:
        _failing_put(ex._client.transport.store, "/objects/", _enospc)
        with pytest.raises(TransportError, match="could not be stored"):
            list(ex.map(len, [_BIG, _BIG]))
        assert list(ex.map(len, [_BIG, b"ab"])) == [len(_BIG), 2]


def test_a_failing_heartbeat_write_does_not_break_the_session(
        fast_settings: starburst.Settings) -> None:
    with starburst.Executor(workers=1, progress=False, settings=fast_settings) as ex:
        _failing_put(ex._client.transport.store, "heartbeat", _enospc, times=2)
        ex._client._next_beat = 0.0
        assert ex.submit(len, b"abc").result(timeout=30) == 3
        assert ex._client.broken is None


def test_a_queue_send_that_fails_fails_its_futures_and_the_session_goes_on(
        fast_settings: starburst.Settings) -> None:
    with starburst.Executor(workers=1, progress=False, settings=fast_settings) as ex:
        queue = ex._client.transport.tasks
        real = queue.send
        failed: list[int] = []

        def send(bodies: Any) -> None:
            if not failed:
                failed.append(len(bodies))
                raise TransportError("local queue tasks: send failed: disk I/O error")
            real(bodies)

        queue.send = send
        future = ex.submit(len, b"abc")
        with pytest.raises(TransportError, match="could not be queued"):
            future.result(timeout=10)
        assert ex._client.broken is None
        assert ex.submit(len, b"abcd").result(timeout=30) == 4
        assert ex.status().tasks_failed == 1


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 8 MiB tmpfs (root only; skipped elsewhere)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_real_full_disk_fails_the_future_and_the_session_recovers_once_space_is_back(
        small_disk: Path, monkeypatch: pytest.MonkeyPatch,
        fast_settings: starburst.Settings) -> None:
    monkeypatch.setenv("STARBURST_LOCAL_DIR", str(small_disk / "sessions"))
    with starburst.Executor(workers=1, progress=False, settings=fast_settings) as ex:
        assert ex.submit(len, b"warm").result(timeout=30) == 4
        stat = os.statvfs(small_disk)
        filler = small_disk / "filler"
        # Leave 256 KiB: the 2 MiB shared argument cannot be written.
        filler.write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - (256 << 10)))
        big = random.Random(0).randbytes(2 << 20)  # incompressible
        with pytest.raises(TransportError, match="could not be stored"):
            ex.submit(len, big).result(timeout=10)
        filler.unlink()  # space is back
        assert ex.submit(len, big).result(timeout=30) == len(big)
