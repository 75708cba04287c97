"""Frames: what functions, arguments and results become on the way to a worker.

Round trips are checked as properties; a damaged frame must raise
:class:`ProtocolError` (never unpickle garbage), and an unpicklable object
must be named in the :class:`SerializationError`.
"""

from __future__ import annotations

import os
import pickle
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starburst import ProtocolError, SerializationError, VersionMismatchError
from starburst.serialization import (
    COMPRESS_THRESHOLD,
    checksum,
    describe_unpicklable,
    dumps,
    loads,
    locate_unpicklable,
)

LOCK = threading.Lock()

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(),
    st.binary(), st.complex_numbers(allow_nan=False))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=5), inner, max_size=5),
        st.frozensets(st.integers(), max_size=5),
        st.builds(bytearray, st.binary(max_size=64))),
    max_leaves=20)

# Big enough to be compressed (or kept raw when it does not compress).
large = st.one_of(
    st.binary(min_size=1, max_size=8).map(lambda b: b * (COMPRESS_THRESHOLD // len(b) + 10)),
    st.integers(COMPRESS_THRESHOLD, 4 * COMPRESS_THRESHOLD).map(os.urandom),
    st.integers(COMPRESS_THRESHOLD, 4 * COMPRESS_THRESHOLD).map(
        lambda n: bytearray(os.urandom(n))),
)


def flags(frame: bytes) -> int:
    return frame[4]


@settings(deadline=None, max_examples=200)
@given(obj=values)
def test_round_trip(obj):
    assert loads(dumps(obj)) == obj


@settings(deadline=None, max_examples=30)
@given(obj=large)
def test_round_trip_of_large_buffers(obj):
    frame = dumps(obj)
    back = loads(frame)
    assert back == obj
    assert type(back) is type(obj)
    # Compressed only when it saves space; never larger than raw plus a header.
    assert len(frame) <= len(obj) + 1024


def test_compressible_data_is_compressed_and_random_data_is_not():
    text = b"starburst " * 100_000
    assert flags(dumps(text)) & 1
    assert len(dumps(text)) < len(text) // 10
    noise = os.urandom(1 << 20)
    assert not flags(dumps(noise)) & 1
    assert not flags(dumps(b"small")) & 1  # below the threshold: not worth it


def test_bytearray_travels_out_of_band_without_a_copy_in_the_pickle():
    data = bytearray(os.urandom(1 << 20))
    frame = dumps(data)
    assert len(frame) < len(data) + 256  # written once
    back = loads(frame)
    assert back == data
    assert isinstance(back, bytearray)


def test_numpy_arrays_round_trip():
    np = pytest.importorskip("numpy")
    arrays = [np.arange(12, dtype=np.int32).reshape(3, 4),
              np.random.default_rng(1).standard_normal(200_000),
              np.zeros((0, 3)), np.array(["a", "bc"]),
              np.arange(10)[::2]]  # not contiguous
    for array in arrays:
        back = loads(dumps(array))
        assert back.dtype == array.dtype
        assert back.shape == array.shape
        assert np.array_equal(back, array)


@settings(deadline=None, max_examples=150)
@given(obj=values | large, data=st.data())
def test_truncated_frames_raise_protocol_error(obj, data):
    frame = dumps(obj)
    cut = data.draw(st.integers(0, len(frame) - 1), label="cut")
    with pytest.raises(ProtocolError):
        loads(frame[:cut])


@settings(deadline=None, max_examples=50)
@given(obj=values, extra=st.binary(min_size=1, max_size=16))
def test_trailing_garbage_raises_protocol_error(obj, extra):
    with pytest.raises(ProtocolError):
        loads(dumps(obj) + extra)


@settings(deadline=None, max_examples=300)
@given(data=st.binary(max_size=64))
def test_random_bytes_raise_protocol_error(data):
    with pytest.raises(ProtocolError):
        loads(data)


def test_foreign_and_future_frames():
    frame = dumps([1, 2, 3])
    with pytest.raises(ProtocolError, match="magic"):
        loads(b"XYZ" + frame[3:])
    with pytest.raises(VersionMismatchError, match="same"):
        loads(frame[:3] + bytes([frame[3] + 1]) + frame[4:])
    with pytest.raises(ProtocolError, match="decompress"):
        loads(frame[:4] + b"\x01" + os.urandom(64))


def test_corrupt_pickle_is_a_serialization_error():
    frame = bytearray(dumps({"key": "value"}))
    pickled_start = 5 + 4 + 8  # header, buffer count, pickle length
    frame[pickled_start:pickled_start + 2] = b"\xff\xff"
    with pytest.raises(SerializationError, match="cannot unpickle"):
        loads(bytes(frame))


def test_checksum_is_stable_and_discriminating():
    assert checksum(b"abc") == checksum(memoryview(b"abc"))
    assert len(checksum(b"abc")) == 32
    assert int(checksum(b"abc"), 16) >= 0
    assert checksum(b"abc") != checksum(b"abd")


# -- shared objects (persistent ids) --------------------------------------------------


def test_shared_objects_travel_by_reference():
    shared = {"big": b"x" * 1000}
    table = {"id-1": shared}

    def persistent_id(obj):
        return "id-1" if obj is shared else None

    frame = dumps([shared, 1, shared], persistent_id=persistent_id)
    assert b"x" * 1000 not in frame
    back = loads(frame, persistent_load=table.__getitem__)
    assert back == [shared, 1, shared]
    assert back[0] is shared
    assert back[2] is shared
    with pytest.raises(SerializationError, match="shared object"):
        loads(frame)  # no table to resolve the reference


# -- what cannot be pickled is named ----------------------------------------------------


def test_unpicklable_object_is_named_with_its_path():
    with pytest.raises(SerializationError) as info:
        dumps({"config": [1, threading.Lock()]})
    assert "object['config'][1] (_thread.lock)" in str(info.value)
    assert "inside the task" in str(info.value)
    assert isinstance(info.value.__cause__, Exception)


def test_closure_and_global_of_a_function_are_named():
    lock = threading.Lock()

    def uses_closure():
        return lock

    assert describe_unpicklable(uses_closure) == "object -> closure variable 'lock' (_thread.lock)"
    uses_global = lambda: LOCK  # noqa: E731 - by value, like a notebook's function
    assert describe_unpicklable(uses_global) == "object -> global 'LOCK' (_thread.lock)"


class Holder:
    def __init__(self, value):
        self.value = value


def test_attribute_of_an_object_is_named():
    assert describe_unpicklable(Holder(threading.Lock()), "arg") == "arg.value (_thread.lock)"


def test_locate_names_argument_keyword_or_function():
    lock = threading.Lock()
    assert locate_unpicklable(print, (1, lock), {}) == "argument 1 (_thread.lock)"
    assert locate_unpicklable(print, (1,), {"k": [lock]}) == \
        "keyword argument 'k'[0] (_thread.lock)"

    def fn():
        return lock

    assert "function" in locate_unpicklable(fn, (1,), {})
    assert "closure variable 'lock'" in locate_unpicklable(fn, (1,), {})


def test_generators_and_open_files_are_refused():
    with pytest.raises(SerializationError, match="generator"):
        dumps(i for i in range(3))
    with open(os.devnull, "rb") as fh, pytest.raises(SerializationError):
        dumps(fh)


def test_pickle_errors_are_not_leaked_raw():
    class Bad:
        def __reduce__(self):
            raise pickle.PicklingError("nope")

    with pytest.raises(SerializationError, match="nope"):
        dumps(Bad())
