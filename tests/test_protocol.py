"""Queue messages: encode/decode round trips, a tag that refuses every message not
made with the session key, and a strict parser that only ever raises
:class:`ProtocolError` on bytes that are not a message."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from starburst import ProtocolError, VersionMismatchError
from starburst.wire.auth import TAG_BYTES, AuthenticationError, new_key, sign
from starburst.wire.messages import PROTOCOL_VERSION, Notice, TaskMessage
from starburst.wire.messages import decode as decode_with
from starburst.wire.messages import encode as encode_with

KEY = new_key()


def encode(msg: TaskMessage | Notice) -> bytes:
    return encode_with(msg, KEY)


def decode(data: bytes) -> TaskMessage | Notice:
    return decode_with(data, KEY)

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
    """A message with any header, tagged with the key (so the parser behind the tag
    check is what a test exercises)."""
    raw = json.dumps(header).encode()
    return sign(KEY, _HEAD.pack(b"SBM", version, len(raw)) + raw + body)


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
        decode(sign(KEY, _HEAD.pack(b"SBM", PROTOCOL_VERSION, 1000) + b"{}"))
    with pytest.raises(ProtocolError, match="not JSON"):
        decode(sign(KEY, _HEAD.pack(b"SBM", PROTOCOL_VERSION, 3) + b"\xff\xfe\x00"))
    deep = b"[" * 60_000  # under the header cap: the JSON parser must give up
    with pytest.raises(ProtocolError):
        decode(sign(KEY, _HEAD.pack(b"SBM", PROTOCOL_VERSION, len(deep)) + deep))


# -- authentication: only the session key makes a message (issue 14) -----------------


@settings(deadline=None, max_examples=200)
@given(msg=task_messages | notices)
def test_a_message_made_with_another_key_is_refused(msg):
    # Another session's key, or a forger's: the message is well formed and
    # would parse, but its tag is not this session's.
    forged = encode_with(msg, new_key())
    with pytest.raises(AuthenticationError):
        decode(forged)


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(msg=task_messages | notices, data=st.data())
def test_any_changed_byte_of_a_message_is_refused(msg, data):
    raw = bytearray(encode(msg))
    index = data.draw(st.integers(4, len(raw) - 1))  # past magic and version
    raw[index] ^= data.draw(st.integers(1, 255))
    with pytest.raises(AuthenticationError):
        decode(bytes(raw))


@settings(deadline=None, max_examples=100)
@given(msg=task_messages | notices)
def test_an_untagged_or_retagged_message_is_refused(msg):
    # What a forger with the old (unkeyed) format could write: a correct frame
    # without a tag, with a tag of zeros, with the tag of another message.
    data = encode(msg)[:-TAG_BYTES]
    for forged in (data, data + bytes(TAG_BYTES), data + encode(Notice(
            kind="bad", session="s", chunk=-1, worker="w"))[-TAG_BYTES:]):
        with pytest.raises(AuthenticationError):
            decode(forged)


def test_a_forged_message_says_what_it_is():
    forged = encode_with(TaskMessage(session="s", chunk=0, n=1, checksum=""), new_key())
    with pytest.raises(ProtocolError, match="forged, altered, or of another session"):
        decode(forged)
