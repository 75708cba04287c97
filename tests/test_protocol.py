"""Queue messages: encode/decode round trips, and a strict parser that only
ever raises :class:`ProtocolError` on bytes that are not a message."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from starburst import ProtocolError, VersionMismatchError
from starburst.wire.messages import PROTOCOL_VERSION, Notice, TaskMessage, decode, encode

_HEAD = struct.Struct("<3sBI")

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)

task_messages = st.builds(
    TaskMessage,
    session=st.text(max_size=40), chunk=st.integers(-1, 2**53), n=st.integers(1, 10**6),
    checksum=st.text(max_size=40), key=st.text(max_size=80),
    timeout=st.none() | st.floats(min_value=1e-6, max_value=1e9),
    capture=st.booleans(), body=st.binary(max_size=256),
    done_key=st.just("") | st.text(max_size=80), done_checksum=st.just("") | st.text(max_size=40))

notices = st.builds(
    Notice,
    kind=st.sampled_from(["start", "done", "release", "bad"]),
    session=st.text(max_size=40), chunk=st.integers(-1, 2**53), worker=st.text(max_size=60),
    attempt=st.text(max_size=20), receipt=st.text(max_size=40), key=st.text(max_size=80),
    checksum=st.text(max_size=40),
    info=st.dictionaries(st.text(max_size=8), json_values, max_size=4),
    body=st.binary(max_size=256))


def frame(header: object, body: bytes = b"", version: int = PROTOCOL_VERSION) -> bytes:
    raw = json.dumps(header).encode()
    return _HEAD.pack(b"SBM", version, len(raw)) + raw + body


def strict_decode(data: bytes) -> TaskMessage | Notice | None:
    """Decode, allowing only ProtocolError (VersionMismatchError is one)."""
    try:
        return decode(data)
    except ProtocolError:
        return None


@settings(deadline=None, max_examples=100)
@given(msg=task_messages | notices)
def test_messages_round_trip(msg):
    assert decode(encode(msg)) == msg


@settings(deadline=None, max_examples=1000)
@given(data=st.binary(max_size=300))
def test_random_bytes_raise_only_protocol_error(data):
    strict_decode(data)


@settings(deadline=None, max_examples=300)
@given(header=st.dictionaries(
    st.sampled_from(["t", "s", "c", "n", "h", "k", "to", "cap", "dk", "dh", "w", "a", "r",
                     "i"]),
    json_values | st.sampled_from(["task", "start", "done", "release", "bad"]),
    max_size=12), body=st.binary(max_size=16))
def test_well_framed_headers_of_any_shape_raise_only_protocol_error(header, body):
    msg = strict_decode(frame(header, body))
    if msg is not None:
        assert msg.body == body


@settings(deadline=None, max_examples=200,
          suppress_health_check=[HealthCheck.too_slow])
@given(msg=task_messages | notices, data=st.data())
def test_corrupted_messages_raise_only_protocol_error(msg, data):
    raw = bytearray(encode(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(raw) - 1))
        raw[index] = data.draw(st.integers(0, 255))
    strict_decode(bytes(raw))
    cut = data.draw(st.integers(0, len(raw) - 1))
    strict_decode(bytes(raw[:cut]))


@settings(deadline=None, max_examples=100)
@given(msg=task_messages | notices, data=st.data())
def test_truncated_headers_are_refused(msg, data):
    raw = encode(msg)
    (hlen,) = struct.unpack_from("<I", raw, 4)
    cut = data.draw(st.integers(0, _HEAD.size + hlen - 1))
    with pytest.raises(ProtocolError):
        decode(raw[:cut])


def test_other_protocol_version_is_a_version_mismatch():
    raw = frame({"t": "release", "s": "x", "c": 1, "w": "w", "a": "", "r": "", "k": "",
                 "h": "", "i": {}}, version=PROTOCOL_VERSION + 1)
    with pytest.raises(VersionMismatchError, match="same version"):
        decode(raw)


@pytest.mark.parametrize(("header", "match"), [
    ([1, 2], "not an object"),
    ({"s": "x"}, "lacks field 't'"),
    ({"t": "nope"}, "unknown message kind"),
    ({"t": "task", "s": "x", "c": 1, "n": 0, "h": "", "k": "", "cap": False}, "'n'"),
    ({"t": "task", "s": "x", "c": True, "n": 1, "h": "", "k": "", "cap": False}, "'c'"),
    ({"t": "task", "s": "x", "c": 1, "n": 1, "h": "", "k": "", "cap": False, "to": -1}, "'to'"),
    ({"t": "task", "s": "x", "c": 1, "n": 1, "h": "", "k": "", "cap": False, "to": True},
     "'to'"),
    ({"t": "done", "s": "x", "c": 1, "w": "w", "a": "", "r": "", "k": "", "h": "", "i": []},
     "'i'"),
])
def test_malformed_headers_say_what_is_wrong(header, match):
    with pytest.raises(ProtocolError, match=match):
        decode(frame(header))


def test_bad_magic_and_lying_header_length():
    with pytest.raises(ProtocolError, match="magic"):
        decode(b"XYZ" + bytes(20))
    with pytest.raises(ProtocolError, match="header length"):
        decode(_HEAD.pack(b"SBM", PROTOCOL_VERSION, 1000) + b"{}")
    with pytest.raises(ProtocolError, match="not JSON"):
        decode(_HEAD.pack(b"SBM", PROTOCOL_VERSION, 3) + b"\xff\xfe\x00")
    deep = b"[" * 60_000  # under the header cap: the JSON parser must give up
    with pytest.raises(ProtocolError):
        decode(_HEAD.pack(b"SBM", PROTOCOL_VERSION, len(deep)) + deep)
