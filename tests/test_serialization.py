"""Frames: what functions, arguments and results become on the way to a worker.

Round trips are checked as properties; a damaged frame must raise
:class:`ProtocolError` (never unpickle garbage), and an unpicklable object
must be named in the :class:`SerializationError`.
"""

from __future__ import annotations

import os
import pickle
import struct
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starburst import ProtocolError, SerializationError, VersionMismatchError
from starburst.wire import serialization
from starburst.wire.serialization import (
    COMPRESS_THRESHOLD,
    checksum,
    codec_for,
    describe_unpicklable,
    dumps,
    dumps_parts,
    loads,
    loads_parts,
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


def segments(frame: bytes) -> list[tuple[int, int, int]]:
    """``(codec, raw_len, stored_len)`` of each segment of a version-3 frame."""
    n_parts, n_buffers = struct.unpack_from("<II", frame, 5)
    n, start = n_parts + n_buffers, 13 + 4 * n_parts
    return list(zip(frame[start : start + n], struct.unpack_from(f"<{n}Q", frame, start + n),
                    struct.unpack_from(f"<{n}Q", frame, start + 9 * n), strict=True))


def compressed(frame: bytes) -> bool:
    return any(codec for codec, _, _ in segments(frame))


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
    assert compressed(dumps(text))
    assert len(dumps(text)) < len(text) // 10
    noise = os.urandom(1 << 20)
    assert not compressed(dumps(noise))
    assert not compressed(dumps(b"small"))  # below the threshold: not worth it
    # Per segment: the text buffer is compressed, the noise beside it is not.
    np = pytest.importorskip("numpy")
    both = segments(dumps([np.frombuffer(text, np.uint8).copy(),
                           np.frombuffer(noise, np.uint8).copy()]))
    assert [codec for codec, _, _ in both] == [0, 1, 0]  # pickle stream, text, noise


def test_the_local_codec_never_compresses():
    assert codec_for("local:/tmp/x?max_receives=0") == "none"
    assert codec_for("aws:bucket/prefix?region=us-east-1") == "zstd"
    text = b"starburst " * 100_000
    frame = dumps(text, codec="none")
    assert not compressed(frame)
    assert loads(frame) == text


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
    with pytest.raises(VersionMismatchError, match="same"):
        loads(frame[:4] + b"\x80" + frame[5:])  # a flag from the future
    text = dumps(b"starburst " * 100_000)
    (codec, _, stored), = segments(text)  # bytes pickle in-band: one segment
    assert codec == 1
    with pytest.raises(ProtocolError, match=r"decompress|wrong length"):
        loads(text[:-stored] + os.urandom(stored))


def test_corrupt_pickle_is_a_serialization_error():
    frame = bytearray(dumps({"key": "value"}))
    pickled_start = 5 + 8 + 4 + 17  # header, counts, buffers of the part, its segment
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


# -- buffers arrive writable and aligned (issue 17, defect 2) ---------------------------


def _address(array) -> int:
    return int(array.ctypes.data)


@pytest.mark.parametrize("mapped", [False, True], ids=["heap", "mapped"])
@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_out_of_band_buffers_arrive_writable_and_64_byte_aligned(codec, mapped, monkeypatch):
    """From the heap and, past the mapping threshold (lowered here), from mappings."""
    np = pytest.importorskip("numpy")
    if mapped:
        monkeypatch.setattr(serialization, "_MAP_THRESHOLD", 1 << 20)
    rng = np.random.default_rng(2)
    arrays = [rng.standard_normal(n) for n in (3, 1001, 300_000)]
    arrays.append(np.zeros(500_000))  # compressible: the zstd codec compresses it
    frame = dumps(arrays, codec=codec)
    # As the store and the queue hand frames over: an immutable bytes object.
    back = loads(bytes(frame))
    for array, got in zip(arrays, back, strict=True):
        assert got.flags.writeable
        assert _address(got) % 64 == 0
        assert got.tobytes() == array.tobytes()
        np.add(got, 1, out=got)  # in place, as `def bump(a): a += 1` does
    data = loads(bytes(dumps(bytearray(b"x" * 200_000), codec=codec)))
    assert isinstance(data, bytearray)
    data[0] = 0


def test_read_only_buffers_stay_read_only_as_pickle_gives_them():
    np = pytest.importorskip("numpy")
    frozen = np.arange(100_000.0)
    frozen.flags.writeable = False
    assert not loads(dumps(frozen)).flags.writeable
    assert not pickle.loads(pickle.dumps(frozen, protocol=5)).flags.writeable


def test_pandas_arguments_are_writable_after_a_round_trip():
    pd = pytest.importorskip("pandas")
    np = pytest.importorskip("numpy")
    frame = pd.DataFrame({"v": np.arange(200_000.0), "k": np.arange(200_000) % 7})
    back = loads(bytes(dumps(frame)))
    back.loc[0, "v"] = 99
    assert back["v"].iloc[0] == 99
    assert frame["v"].iloc[0] == 0


# -- results decode task by task (issue 17, defect 3) ---------------------------------


def _explode(_x):
    raise RuntimeError("this object cannot be rebuilt here")


class ExplodesOnLoad:
    def __reduce__(self):
        return _explode, (1,)


def test_parts_decode_independently_and_share_the_frame():
    np = pytest.importorskip("numpy")
    big = np.arange(100_000)
    frame = dumps_parts([(0, big), ExplodesOnLoad(), (2, big * 2)])
    parts = loads_parts(bytes(frame))
    assert len(parts) == 3
    (first, err0), (second, err1), (third, err2) = parts
    assert err0 is None
    assert err2 is None
    assert first[0] == 0
    assert np.array_equal(first[1], big)
    assert third[0] == 2
    assert np.array_equal(third[1], big * 2)
    assert second is None
    assert isinstance(err1, SerializationError)
    assert "part 1" in str(err1)
    assert "cannot be rebuilt" in str(err1)
    # loads() of a multi-part frame is the list, raising the first failure.
    assert loads(dumps_parts([1, "two"])) == [1, "two"]
    with pytest.raises(SerializationError, match="part 1"):
        loads(frame)


def test_loads_parts_reads_a_single_list_frame_all_or_nothing():
    assert loads_parts(dumps([1, 2])) == [(1, None), (2, None)]
    with pytest.raises(SerializationError):
        loads_parts(dumps([1, ExplodesOnLoad()]))
    with pytest.raises(ProtocolError, match="list"):
        loads_parts(dumps({"not": "a list"}))


# -- through the Executor, on every backend ---------------------------------------------


def test_arguments_and_results_are_writable_aligned_and_bit_identical(executor_factory):
    np = pytest.importorskip("numpy")

    # Defined here so it travels by value: the worker need not import this module.
    def bump(a):
        before = float(a.sum()).hex()
        a += 1  # raised "output array is read-only" when arguments were views of bytes
        return a, int(a.ctypes.data) % 64, before, float(a[1:].sum()).hex()

    rng = np.random.default_rng(7)
    # Inline payload (small), stored payload (four 600 KB arrays in one chunk,
    # above every inline limit), shared blob (above the sharing threshold).
    arrays = [rng.standard_normal(n) for n in (1001, 1003)]
    arrays += [rng.standard_normal(75_000 + i) for i in range(4)]
    arrays += [rng.standard_normal(300_001)]
    expected = [bump(a.copy()) for a in arrays]
    ex = executor_factory(workers=1)
    got = list(ex.map(bump, arrays, chunksize=2, timeout=120))
    for (array, misalign, before, after), (want, _, want_before, want_after) in zip(
            got, expected, strict=True):
        assert misalign == 0  # on the worker
        assert (before, after) == (want_before, want_after)  # bitwise, as a serial run
        assert array.tobytes() == want.tobytes()
        assert array.flags.writeable  # on the client
        assert _address(array) % 64 == 0
        np.add(array, 1, out=array)


def test_dataframe_arguments_can_be_modified_and_group_sums_match_serial(executor_factory):
    pd = pytest.importorskip("pandas")
    np = pytest.importorskip("numpy")

    def edit_and_sum(frame):
        frame.loc[0, "v"] = 99.0  # raised "assignment destination is read-only"
        return frame, [float(s).hex() for s in frame.groupby("k")["v"].sum()]

    rng = np.random.default_rng(3)
    frames = [pd.DataFrame({"k": rng.integers(0, 40, n), "v": rng.standard_normal(n)})
              for n in (2_000, 90_000, 160_000)]
    expected = [edit_and_sum(f.copy()) for f in frames]
    ex = executor_factory(workers=1)
    for (frame, sums), (want, want_sums) in zip(
            ex.map(edit_and_sum, frames, timeout=120), expected, strict=True):
        assert sums == want_sums
        pd.testing.assert_frame_equal(frame, want, check_exact=True)
        frame.loc[1, "v"] = 1.0  # the result is writable on the client too


def test_a_result_that_cannot_be_unpickled_fails_only_its_task(executor_factory, tmp_path):
    name = f"sb_worker_only_{os.getpid()}"
    (tmp_path / f"{name}.py").write_text(
        "class Thing:\n    def __init__(self, x):\n        self.x = x\n")
    directory = str(tmp_path)

    def make(x):
        if x != 2:
            return x * 10
        import importlib
        import sys
        sys.path.insert(0, directory)  # importable on the worker only
        return importlib.import_module(name).Thing(x)

    ex = executor_factory(workers=1)
    results = list(ex.map(make, range(5), chunksize=5, return_exceptions=True, timeout=120))
    assert [r for i, r in enumerate(results) if i != 2] == [0, 10, 30, 40]
    assert isinstance(results[2], SerializationError)
    assert name in str(results[2])


def test_in_place_changes_to_a_shared_argument_stay_in_their_chunk(executor_factory):
    np = pytest.importorskip("numpy")

    def bump_first(a, b):
        a[0] += 1
        return float(a[0]), a is b

    big = np.zeros(300_000)  # above the sharing threshold: stored once, cached by the worker
    ex = executor_factory(workers=1)
    # As ProcessPoolExecutor gives it: each chunk unpickles its own copy (one
    # object for both references within it), so no chunk sees another's change.
    got = list(ex.map(bump_first, [big] * 4, [big] * 4, chunksize=1, timeout=120))
    assert got == [(1.0, True)] * 4
    assert big[0] == 0


def test_a_large_buffer_whose_sample_does_not_compress_is_stored_raw():
    np = pytest.importorskip("numpy")
    noise = np.frombuffer(os.urandom(4 << 20), np.uint8).copy()
    text = np.frombuffer(b"starburst " * 400_000, np.uint8).copy()
    codecs = [codec for codec, _, _ in segments(dumps([noise, text], codec="zstd"))]
    assert codecs == [0, 0, 1]  # pickle stream, noise raw, text compressed


def test_a_structure_digest_is_accepted_on_the_local_transport_only():
    import numpy as np

    from starburst.wire.serialization import frame_checksum, verify_checksum

    frame = dumps({"a": np.arange(100_000, dtype=np.float64), "name": "x"})
    local, s3 = "local:/tmp/session", "aws:s3://bucket/prefix|sqs"
    digest = frame_checksum(frame, local)
    assert digest.startswith("s:")
    assert verify_checksum(frame, digest, local)
    assert not verify_checksum(frame, digest, s3)  # no downgrade where bytes crossed a network
    full = frame_checksum(frame, s3)
    assert not full.startswith("s:")
    assert verify_checksum(frame, full, s3)
    assert verify_checksum(frame, full, local)


def test_a_structure_digest_covers_header_tables_the_start_of_each_stream_and_length():
    import numpy as np

    from starburst.wire.serialization import structure_checksum

    frame = bytearray(dumps({"a": np.arange(100_000, dtype=np.float64), "name": "x"}))
    digest = structure_checksum(frame)
    other = bytearray(dumps({"a": np.arange(100_000, dtype=np.float64), "name": "y"}))
    assert structure_checksum(other) != digest  # a pickle stream differs
    assert structure_checksum(frame[:-1]) != digest  # truncated
    assert structure_checksum(frame[:8]) != digest  # truncated into the header
    frame[3 + 2] ^= 1  # the header
    assert structure_checksum(frame) != digest


def _sum_then_bump(a, b=None):
    total = float(a.sum()) if hasattr(a, "sum") else float(sum(a))
    if hasattr(a, "sum"):
        a += 1.0
    else:
        a.append(1.0)
    return total, b is a


def test_each_task_of_a_chunk_gets_its_own_copy_of_its_arguments(executor_factory):
    # As ProcessPoolExecutor pickles each call's arguments: a task's in-place
    # change never reaches the next task of its chunk, shared (large) or not,
    # and one object passed twice to one task is still one object there.
    np = pytest.importorskip("numpy")
    big = np.arange(300_000, dtype=float)  # above the sharing threshold
    small = [1.0, 2.0, 3.0]  # pickled in band
    ex = executor_factory(workers=1)
    expect_big = (float(big.sum()), True)
    got = list(ex.map(_sum_then_bump, [big] * 6, [big] * 6, chunksize=6, timeout=120))
    assert got == [expect_big] * 6
    got = list(ex.map(_sum_then_bump, [small] * 6, [small] * 6, chunksize=6, timeout=120))
    assert got == [(6.0, True)] * 6
    futures = [ex.submit(_sum_then_bump, big) for _ in range(6)]
    assert [f.result(timeout=120)[0] for f in futures] == [expect_big[0]] * 6
    assert float(big.sum()) == expect_big[0]
    assert small == [1.0, 2.0, 3.0]
