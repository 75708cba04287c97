"""Fuzz: the strict parsers never raise anything but ProtocolError, never hang."""

from __future__ import annotations

import contextlib
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from starburst.exceptions import ProtocolError
from starburst.session import SessionRecord, load_manifests
from starburst.wire import messages as protocol
from starburst.wire.auth import sign

_KEY = bytes(32)
_VALID = protocol.encode(protocol.TaskMessage(session="s", chunk=1, n=2, checksum="h"), _KEY)
_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                     lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(), c, max_size=4),
                     max_leaves=20)
_FAST = settings(max_examples=300, deadline=1000, suppress_health_check=list(HealthCheck))


def _decode(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        protocol.decode(data, _KEY)


@_FAST
@given(st.binary(max_size=512))
def test_decode_random_bytes(data):
    _decode(data)


@_FAST
@given(st.binary(max_size=64), st.integers(0, 255), _json)
def test_decode_framed_json_headers(body, version, header):
    raw = json.dumps(header).encode()
    # Tagged with the key, so the header parser behind the tag check is fuzzed.
    _decode(sign(_KEY, b"SBM" + bytes([version]) + len(raw).to_bytes(4, "little") + raw + body))


@_FAST
@given(st.integers(0, len(_VALID) - 1), st.integers(0, 255))
def test_decode_mutated_valid_message(pos, value):
    data = bytearray(_VALID)
    data[pos] = value
    _decode(bytes(data))
    _decode(bytes(data[:pos]))


@settings(max_examples=200, deadline=1000, suppress_health_check=list(HealthCheck))
@given(st.one_of(st.binary(max_size=256), _json.map(lambda v: json.dumps(v).encode()),
                 st.dictionaries(st.sampled_from(["session", "backend", "transport", "created",
                                                  "detached", "deadline", "workers",
                                                  "max_attempts", "state", "options",
                                                  "version"]), _json)
                 .map(lambda d: json.dumps(d).encode())))
def test_session_record_from_bytes(data):
    with contextlib.suppress(ProtocolError):
        SessionRecord.from_bytes(data)


class _Store:
    def __init__(self, blobs):
        self.blobs = blobs

    def get(self, key):
        return self.blobs[key]


@settings(max_examples=200, deadline=1000, suppress_health_check=list(HealthCheck))
@given(st.lists(st.one_of(st.binary(max_size=64), _json.map(lambda v: json.dumps(v).encode())),
                max_size=3))
def test_load_manifests(blobs):
    store = _Store({f"sessions/s/chunks/{i}": b for i, b in enumerate(blobs)})
    with contextlib.suppress(ProtocolError):
        load_manifests(store, "s")
