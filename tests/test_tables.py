"""DataFrames and Arrow tables travel as pickle protocol 5 with out-of-band buffers.

Since frame version 3 no table becomes Arrow IPC (issue 17, defect 18):
round trips are exact because they are pickle's, and every numpy block
comes back writable and 64-byte aligned. Version-2 frames, whose PACKED
flag (bit 2 of byte 4) marked Arrow IPC buffers, are still read: these
tests build them as starburst 2 wrote them.
"""

from __future__ import annotations

import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest

from starburst import ProtocolError, SerializationError, VersionMismatchError
from starburst import client as client_module
from starburst.wire import tables
from starburst.wire.serialization import checksum, dumps, loads, sizeof

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")

#: Rows that put the mixed frame above version 2's 4 MiB Arrow threshold (~4.4 MiB).
ROWS = 66_000


def arrow(frame: bytes) -> bool:
    """Whether the frame carries Arrow IPC buffers (a version-2 PACKED frame)."""
    return frame[3] == 2 and bool(frame[4] & 2)


class _Legacy:
    """Pickles as version 2 reduced a table: ``from_ipc(PickleBuffer(ipc), kind, extra)``."""

    def __init__(self, ipc, kind, extra):
        self.ipc, self.kind, self.extra = ipc, kind, extra

    def __reduce__(self):
        return tables.from_ipc, (pickle.PickleBuffer(self.ipc), self.kind, self.extra)


def ipc_of(obj) -> tuple:
    """``(ipc buffer, kind, extra)`` as version 2's ``tables.to_ipc`` gave them."""
    if isinstance(obj, pd.Series):
        kind, extra = "series", (obj.name, obj.attrs or None)
        table = pa.Table.from_pandas(obj.to_frame(name="__starburst_series__"),
                                     preserve_index=None)
    elif isinstance(obj, pd.DataFrame):
        kind, extra = "frame", obj.attrs or None
        table = pa.Table.from_pandas(obj, preserve_index=None)
    else:
        kind, extra, table = "table", None, obj
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema,
                           options=pa.ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write(table)
    return sink.getvalue(), kind, extra


def legacy_frame(obj) -> bytes:
    """A version-2 PACKED frame of ``obj``, byte for byte as starburst 2 wrote it."""
    buffers: list[pickle.PickleBuffer] = []
    pickled = pickle.dumps(_Legacy(*ipc_of(obj)), protocol=5, buffer_callback=buffers.append)
    (raw,) = [b.raw() for b in buffers]
    section = struct.pack("<IQQ", 1, len(pickled), raw.nbytes | 1 << 63) + pickled
    return b"".join([b"SBF\x02\x02", struct.pack("<Q", len(section)), section, raw])


def mixed_frame(rows: int = ROWS, seed: int = 0) -> pd.DataFrame:
    """Every dtype the Arrow path must keep: numpy, string, categorical, tz, nullable."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "i": np.arange(rows, dtype="int64"),
        "f32": rng.standard_normal(rows).astype("float32"),
        "s": pd.Series(pd.Categorical.from_codes(np.arange(rows) % 97,
                                                 [f"k{i}" for i in range(97)])).astype(str),
        "cat": pd.Categorical.from_codes(rng.integers(0, 3, rows), ["lo", "mid", "hi"],
                                         ordered=True),
        "when": pd.date_range("2024-03-30", periods=rows, freq="min", tz="Europe/Paris"),
        "naive": pd.date_range("2024-01-01", periods=rows, freq="s"),
        "n_int": pd.array([1, None, 3] * (rows // 3), dtype="Int64"),
        "n_bool": pd.array([True, None, False] * (rows // 3), dtype="boolean"),
        "n_float": pd.array([0.5, None, 2.0] * (rows // 3), dtype="Float64"),
        "flag": np.arange(rows) % 2 == 0,
    })
    frame.index = pd.Index(np.arange(rows) * 3 + 7, name="row")
    frame.columns.name = "field"
    frame.attrs = {"source": "test", "version": 3}
    return frame


def assert_same(back: pd.DataFrame, frame: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(back, frame, check_exact=True, check_index_type=True,
                                  check_column_type=True, check_flags=True)
    assert list(back.dtypes) == list(frame.dtypes)
    assert type(back.index) is type(frame.index)
    assert back.attrs == frame.attrs


# -- exact round trips, as pickle gives them -----------------------------------------


def numpy_blocks(frame: pd.DataFrame) -> list[np.ndarray]:
    return [a for a in frame._mgr.arrays if isinstance(a, np.ndarray) and a.dtype != object]


@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_frame_round_trip_is_exact_writable_and_aligned(codec):
    frame = mixed_frame()
    data = dumps(frame, codec=codec)
    assert data[3] == 3
    assert not arrow(data)
    back = loads(bytes(data))
    assert_same(back, frame)
    blocks = numpy_blocks(back)
    assert len(blocks) >= 3  # i, f32, flag (and the datetimes' values)
    for block in blocks:
        assert block.flags.writeable
        assert block.ctypes.data % 64 == 0
    back.loc[back.index[0], "f32"] = 99.0
    assert frame["f32"].iloc[0] != 99.0


def test_a_frame_is_written_once_out_of_band():
    frame = pd.DataFrame({"x": np.arange(10 * ROWS, dtype="float64")})
    data = dumps(frame, codec="none")
    assert frame["x"].to_numpy().nbytes <= len(data) < frame["x"].to_numpy().nbytes + 4096


def test_multiindex_and_range_index_round_trip():
    frame = mixed_frame(2 * ROWS).reset_index(drop=True).set_index(["s", "cat"], drop=False)
    frame.index = frame.index.set_names(["key", "level"])
    back = loads(dumps(frame))
    assert_same(back, frame)
    assert isinstance(back.index, pd.MultiIndex)
    ranged = mixed_frame().reset_index(drop=True)
    back = loads(dumps(ranged))
    assert isinstance(back.index, pd.RangeIndex)
    assert_same(back, ranged)


def test_series_and_arrow_objects_round_trip():
    n = 9 * ROWS
    words = pd.Categorical.from_codes(np.arange(n) % 97, [f"w{i}" for i in range(97)])
    for series in (pd.Series(words, index=pd.Index(np.arange(n), name="k")).astype(str),
                   pd.Series(pd.date_range("2024-10-27", periods=n, freq="s", tz="UTC")),
                   pd.Series(np.arange(n), name=("a", 1))):
        series.attrs = {"unit": "m"}
        back = loads(dumps(series))
        pd.testing.assert_series_equal(back, series, check_exact=True)
        assert back.attrs == series.attrs
    table = pa.Table.from_pandas(mixed_frame()).replace_schema_metadata({"who": "me"})
    batch = table.to_batches()[0]
    chunked = pa.chunked_array([np.arange(5 * ROWS), np.arange(5 * ROWS, 10 * ROWS)])
    for obj in (table, batch, chunked):
        back = loads(dumps(obj))
        assert type(back) is type(obj)
        assert back.equals(obj)
    assert loads(dumps(table)).schema.metadata == table.schema.metadata


def test_tables_nested_in_containers_keep_identity():
    frame, other = mixed_frame(), mixed_frame(seed=1)
    stats = {"rows": len(frame), "frame": other, "again": frame}
    (back, back_stats), array = loads(dumps([(frame, stats), np.arange(5)]))
    assert_same(back, frame)
    assert_same(back_stats["frame"], other)
    assert back_stats["again"] is back  # one stream, pickle's memo
    assert back_stats["rows"] == len(frame)
    assert array.tolist() == [0, 1, 2, 3, 4]


def test_sizeof_of_a_frame_is_its_cheap_nbytes():
    large = mixed_frame()
    assert sizeof(large) == tables.nbytes(large)  # no deep walk of object cells
    assert tables.nbytes(large) > 4 << 20
    assert tables.nbytes(pa.Table.from_pandas(large)) > 0
    assert tables.nbytes([1, 2]) == 0


class MyFrame(pd.DataFrame):
    """A user's subclass: it keeps its type through pickle."""

    @property
    def _constructor(self):
        return MyFrame


@pytest.mark.parametrize("case", ["mixed_objects", "duplicate_labels", "int_labels",
                                  "nested_lists", "object_strings", "object_missing",
                                  "subclass", "no_duplicates_flag"])
def test_frames_of_every_kind_round_trip_exactly(case):
    base = mixed_frame()
    if case == "mixed_objects":
        frame = base.assign(o=pd.Series([1, "a", 2.5] * (ROWS // 3), dtype=object))
    elif case == "duplicate_labels":
        frame = pd.concat([base, base[["i"]]], axis=1)
    elif case == "int_labels":
        frame = base.set_axis(range(base.shape[1]), axis=1)
    elif case == "nested_lists":
        frame = base.assign(o=pd.Series([[1, 2]] * ROWS, index=base.index, dtype=object))
    elif case == "object_strings":
        frame = base.assign(o=pd.Series(["x"] * ROWS, index=base.index, dtype=object))
    elif case == "object_missing":  # None and NaN stay apart
        frame = base.assign(o=pd.Series(["x", None, np.nan] * (ROWS // 3), index=base.index,
                                        dtype=object))
    elif case == "subclass":
        frame = MyFrame(base)
    else:
        frame = base.set_flags(allows_duplicate_labels=False)
    back = loads(dumps(frame))
    assert type(back) is type(frame)
    pd.testing.assert_frame_equal(back, frame, check_exact=True, check_flags=True)
    assert list(back.dtypes) == list(frame.dtypes)
    if case == "object_missing":
        assert [type(v).__name__ for v in back["o"][:3]] == ["str", "NoneType", "float"]


def test_importing_starburst_imports_neither_pandas_nor_pyarrow():
    code = ("import sys, starburst\n"
            "from starburst.wire.serialization import dumps, loads\n"
            "assert loads(dumps({'a': [1, 2.5, b'x' * 100_000]}))['a'][0] == 1\n"
            "print(sorted({'pandas', 'pyarrow'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"


# -- version-2 frames (Arrow IPC) are still read --------------------------------------


def test_version_2_arrow_frames_are_still_read():
    frame = mixed_frame()
    data = legacy_frame(frame)
    assert arrow(data)
    assert_same(loads(data), frame)
    series = pd.Series(np.arange(10 * ROWS), name="n")
    series.attrs = {"unit": "m"}
    back = loads(legacy_frame(series))
    pd.testing.assert_series_equal(back, series, check_exact=True)
    assert back.attrs == series.attrs
    table = pa.Table.from_pandas(frame)
    assert loads(legacy_frame(table)).equals(table)


def test_receiver_without_pyarrow_is_told_how_to_install_it(monkeypatch):
    data = legacy_frame(pd.DataFrame({"x": np.arange(10 * ROWS)}))
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.ipc", None)
    with pytest.raises(SerializationError, match="pip install pyarrow"):
        loads(data)


def test_damaged_ipc_bytes_fail_the_checksum_or_the_read():
    frame = mixed_frame()
    data = legacy_frame(frame)
    digest = checksum(data)
    ipc = ipc_of(frame)[0].to_pybytes()
    ipc_start = len(data) - len(ipc)
    for where in (ipc_start + 10, (ipc_start + len(data)) // 2, len(data) - 3):
        bad = bytearray(data)
        bad[where] ^= 0xFF
        # The message's checksum covers the IPC tail: damage is caught before unpickling.
        assert checksum(bytes(bad)) != digest
    with pytest.raises(SerializationError, match="Arrow IPC stream"):
        tables.from_ipc(b"not an arrow stream at all", "frame")
    with pytest.raises(SerializationError, match="corrupt"):
        tables.from_ipc(ipc[: len(ipc) // 2], "frame")


def test_truncated_frames_raise_protocol_error():
    for data in (legacy_frame(mixed_frame()), dumps(mixed_frame())):
        for cut in (5, 12, 40, len(data) // 2, len(data) - 1):
            with pytest.raises(ProtocolError):
                loads(data[:cut])
        with pytest.raises(ProtocolError):
            loads(data + b"\0")


def test_frame_versions():
    plain = dumps([1, 2, 3])
    assert plain[3] == 3
    pickled = pickle.dumps([1, 2, 3], protocol=5)
    version_1 = b"SBF\x01\x00" + struct.pack("<IQ", 0, len(pickled)) + pickled
    assert loads(version_1) == [1, 2, 3]  # version 1 is still read
    with pytest.raises(VersionMismatchError, match="same version"):
        loads(plain[:4] + bytes([plain[4] | 0x80]) + plain[5:])  # a flag from the future
    with pytest.raises(VersionMismatchError, match="same version"):
        loads(version_1[:4] + b"\x04" + version_1[5:])  # version 3's flag in version 1


# -- end to end -------------------------------------------------------------------


def test_map_over_dataframes_returns_equal_writable_frames(executor_factory, monkeypatch):
    # Defined here so it travels by value: the worker need not import this module.
    def summarise(frame):
        frame.loc[frame.index[0], "f32"] = 1.5  # arguments are writable
        out = frame.assign(scaled=frame["f32"] * 2)
        return out, {"rows": len(out), "first": out.index[0]}

    ex = executor_factory(workers=2)
    # Which path the frames took: arguments are shared objects the client
    # puts in the store; results are frames the client loads.
    store = ex._client.transport.store
    sent: list[bytes] = []
    received: list[bytes] = []
    real_put, real_loads = store.put, client_module.loads_parts
    monkeypatch.setattr(store, "put", lambda k, d: (
        sent.append(d) if "/objects/" in k else None, real_put(k, d))[1])
    monkeypatch.setattr(client_module, "loads_parts", lambda d, **kw: (
        received.append(bytes(d)), real_loads(d, **kw))[1])
    frames = [mixed_frame(seed=seed) for seed in range(3)]
    results = list(ex.map(summarise, frames, timeout=120))
    assert len(results) == 3
    assert len(sent) >= 3
    assert received
    assert not any(arrow(d) for d in sent + received)
    for frame, (out, stats) in zip(frames, results, strict=True):
        expected, expected_stats = summarise(frame.copy())
        assert_same(out, expected)
        assert stats == expected_stats
        for block in numpy_blocks(out):
            assert block.flags.writeable
            assert block.ctypes.data % 64 == 0
