"""The store keys of a session (starburst.wire.keys): valid, inside the session, never shared.

Every key of every kind, for any session id and any chunk, attempt or
digest, is a valid store key below ``session_prefix(session)``; two
different keys are never equal, and none is a path prefix of another key
of another chunk (deleting chunk 1's payload never takes chunk 10's).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from starburst.executor import new_session_id
from starburst.transport.base import check_key
from starburst.wire import keys

_sessions = st.builds(new_session_id) | st.from_regex(r"sb-[a-z0-9-]{1,40}", fullmatch=True)
_numbers = st.integers(min_value=0, max_value=10**9)
_names = st.from_regex(r"[a-f0-9]{1,64}", fullmatch=True)


def _all_keys(session: str, chunk: int, name: str) -> dict[str, str]:
    return {
        "record": keys.record_key(session),
        "manifest": keys.chunk_manifest_key(session, chunk),
        "payload": keys.payload_key(session, chunk),
        "shared": keys.shared_key(session, name),
        "result": keys.result_key(session, chunk, name),
        "handed": keys.handed_key(session, chunk, name),
        "commit": keys.result_commit_key(session, chunk),
        "cancel": keys.cancel_key(session, chunk),
        "heartbeat": keys.client_heartbeat_key(session),
        "code": keys.code_key(session, name),
    }


@given(session=_sessions, chunk=_numbers, name=_names)
def test_every_key_is_a_valid_store_key_inside_its_session(session, chunk, name):
    made = _all_keys(session, chunk, name)
    assert len(set(made.values())) == len(made)
    for key in made.values():
        assert check_key(key) == key
        assert key.startswith(keys.session_prefix(session))
        assert key.startswith(keys.SESSIONS)


@given(session=_sessions, a=_numbers, b=_numbers, name=_names)
def test_keys_of_different_chunks_are_never_path_prefixes_of_each_other(session, a, b, name):
    if a == b:
        return
    left, right = _all_keys(session, a, name), _all_keys(session, b, name)
    for kind in ("manifest", "payload", "commit", "cancel"):
        assert left[kind] != right[kind]
        assert not right[kind].startswith(left[kind] + "/")


@given(first=_sessions, second=_sessions)
def test_one_sessions_prefix_never_covers_another_session(first, second):
    if first == second:
        return
    assert not keys.record_key(second).startswith(keys.session_prefix(first))
