"""What the worker says when a chunk cannot be loaded: the real cause, never a guess."""

from __future__ import annotations

import re

import pytest
from _tasks import FailsToUnpickle, identity

import starburst


def test_key_error_while_unpickling_is_that_error_not_a_missing_payload(executor_factory):
    # Only a store key that is absent is "missing"; a KeyError raised while the
    # arguments are unpickled is the user's own error, with its traceback.
    ex = executor_factory()
    fut = ex.submit(identity, FailsToUnpickle())
    with pytest.raises(Exception, match="no-such-column") as info:
        fut.result(timeout=60)
    assert not re.search(r"of chunk \d+ is missing", str(info.value))
    assert isinstance(info.value, (KeyError, starburst.SerializationError))
    assert isinstance(info.value.__cause__, starburst.RemoteTraceback)
    assert "_raise_key_error" in str(info.value.__cause__)
    assert ex.submit(identity, 3).result(timeout=60) == 3


def test_absent_payload_key_is_reported_missing(tmp_path):
    from _support import task_process

    from starburst.transport.local import LocalTransport
    from starburst.wire import messages as protocol

    transport = LocalTransport(tmp_path / "session")
    task = protocol.TaskMessage(session="sb-x", chunk=13, n=2, checksum="0",
                                key="sessions/sb-x/payloads/13")
    with task_process(transport, session="sb-x", worker_id="w") as worker:
        outcomes = worker._execute(task)
    assert [o[1] for o in outcomes] == ["err", "err"]
    error = outcomes[0][2][0]
    assert isinstance(error, starburst.ProtocolError)
    assert "payload 'sessions/sb-x/payloads/13' of chunk 13 is missing" in str(error)


def test_a_handed_back_chunk_whose_outcomes_so_far_are_gone_fails_naming_them(tmp_path):
    # Running the rest without them would lose (or run again) what finished.
    from _support import task_process

    from starburst.transport.local import LocalTransport
    from starburst.wire import messages as protocol
    from starburst.wire.keys import handed_key

    transport = LocalTransport(tmp_path / "session")
    done = handed_key("sb-x", 13, "0123456789abcdef")
    task = protocol.TaskMessage(session="sb-x", chunk=13, n=2, checksum="0",
                                key="sessions/sb-x/payloads/13", done_key=done,
                                done_checksum="0")
    with task_process(transport, session="sb-x", worker_id="w") as worker:
        outcomes = worker._execute(task)
    assert [o[1] for o in outcomes] == ["err", "err"]
    error = outcomes[0][2][0]
    assert isinstance(error, starburst.ProtocolError)
    assert (f"the outcomes {done!r} of handed-back chunk 13 are missing from the store"
            in str(error))
