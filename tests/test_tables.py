"""DataFrames and Arrow tables travel as Arrow IPC streams (zstd) inside frames.

A frame holding one has the PACKED flag (bit 2 of byte 4): that is how
these tests see which path a table took. Round trips must be exact
(dtypes, index, labels, attrs); what Arrow cannot carry exactly is pickled
as before; damaged IPC bytes fail the message checksum (and a stream that
is not Arrow fails the read with SerializationError).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from starburst import ProtocolError, SerializationError, VersionMismatchError, tables
from starburst import client as client_module
from starburst.serialization import checksum, dumps, loads, sizeof

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")

#: Rows that put the mixed frame just above the Arrow threshold (~4.4 MiB).
ROWS = 66_000


def packed(frame: bytes) -> bool:
    """Whether the frame carries Arrow IPC buffers (its PACKED flag)."""
    return bool(frame[4] & 2)


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


# -- exact round trips ------------------------------------------------------------


def test_frame_round_trip_keeps_dtypes_index_and_attrs():
    frame = mixed_frame()
    assert tables.nbytes(frame) >= tables.IPC_THRESHOLD
    data = dumps(frame)
    assert packed(data)
    assert_same(loads(data), frame)


def test_multiindex_and_range_index_round_trip():
    frame = mixed_frame(2 * ROWS).reset_index(drop=True).set_index(["s", "cat"], drop=False)
    frame.index = frame.index.set_names(["key", "level"])
    data = dumps(frame)
    assert packed(data)
    back = loads(data)
    assert_same(back, frame)
    assert isinstance(back.index, pd.MultiIndex)
    ranged = mixed_frame().reset_index(drop=True)  # still above: the index was 8 bytes/row
    back = loads(dumps(ranged))
    assert isinstance(back.index, pd.RangeIndex)
    assert_same(back, ranged)


def test_series_and_arrow_objects_round_trip():
    n = 9 * ROWS  # one column above the threshold
    words = pd.Categorical.from_codes(np.arange(n) % 97, [f"w{i}" for i in range(97)])
    for series in (pd.Series(words, index=pd.Index(np.arange(n), name="k")).astype(str),
                   pd.Series(pd.date_range("2024-10-27", periods=n, freq="s", tz="UTC")),
                   pd.Series(np.arange(n), name=("a", 1))):
        series.attrs = {"unit": "m"}
        data = dumps(series)
        assert packed(data)
        back = loads(data)
        pd.testing.assert_series_equal(back, series, check_exact=True)
        assert back.attrs == series.attrs
    table = pa.Table.from_pandas(mixed_frame()).replace_schema_metadata({"who": "me"})
    batch = table.to_batches()[0]
    chunked = pa.chunked_array([np.arange(5 * ROWS), np.arange(5 * ROWS, 10 * ROWS)])
    for obj in (table, batch, chunked):
        data = dumps(obj)
        assert packed(data)
        back = loads(data)
        assert type(back) is type(obj)
        assert back.equals(obj)
    assert loads(dumps(table)).schema.metadata == table.schema.metadata


def test_tables_nested_in_containers_keep_identity():
    frame, other = mixed_frame(), mixed_frame(seed=1)
    stats = {"rows": len(frame), "frame": other, "again": frame}
    data = dumps([(frame, stats), np.arange(5)])
    assert packed(data)
    (back, back_stats), array = loads(data)
    assert_same(back, frame)
    assert_same(back_stats["frame"], other)
    assert back_stats["again"] is back  # one stream, pickle's memo
    assert back_stats["rows"] == len(frame)
    assert array.tolist() == [0, 1, 2, 3, 4]
    # Each table's IPC bytes are written once: the frame is about their size.
    ipc = sum(tables.to_ipc(f)[0].size for f in (frame, other))
    assert ipc <= len(data) < ipc + 8192


# -- which path --------------------------------------------------------------------


def test_small_frames_stay_pickle_and_the_threshold_is_the_size():
    small = mixed_frame(rows=ROWS // 2)
    assert tables.nbytes(small) < tables.IPC_THRESHOLD
    assert not packed(dumps(small))
    assert_same(loads(dumps(small)), small)
    large = mixed_frame()
    assert sizeof(large) == tables.nbytes(large)  # no deep walk of object cells
    assert tables.to_ipc(large) is not None
    assert tables.to_ipc(small) is None


class MyFrame(pd.DataFrame):
    """A user's subclass: Arrow would give back a plain DataFrame."""

    @property
    def _constructor(self):
        return MyFrame


@pytest.mark.parametrize("case", ["mixed_objects", "duplicate_labels", "int_labels",
                                  "nested_lists", "object_strings", "object_missing",
                                  "subclass", "no_duplicates_flag"])
def test_frames_arrow_cannot_carry_exactly_fall_back_to_pickle(case):
    base = mixed_frame()
    if case == "mixed_objects":
        frame = base.assign(o=pd.Series([1, "a", 2.5] * (ROWS // 3), dtype=object))
    elif case == "duplicate_labels":
        frame = pd.concat([base, base[["i"]]], axis=1)
    elif case == "int_labels":
        frame = base.set_axis(range(base.shape[1]), axis=1)
    elif case == "nested_lists":
        frame = base.assign(o=pd.Series([[1, 2]] * ROWS, index=base.index, dtype=object))
    elif case == "object_strings":  # str dtype in pandas 3: Arrow would change the dtype
        frame = base.assign(o=pd.Series(["x"] * ROWS, index=base.index, dtype=object))
    elif case == "object_missing":  # Arrow would turn NaN into None
        frame = base.assign(o=pd.Series(["x", None, np.nan] * (ROWS // 3), index=base.index,
                                        dtype=object))
    elif case == "subclass":
        frame = MyFrame(base)
    else:
        frame = base.set_flags(allows_duplicate_labels=False)
    assert tables.nbytes(base) >= tables.IPC_THRESHOLD
    data = dumps(frame)
    assert not packed(data)
    back = loads(data)
    assert type(back) is type(frame)
    pd.testing.assert_frame_equal(back, frame, check_exact=True, check_flags=True)
    assert list(back.dtypes) == list(frame.dtypes)
    if case == "object_missing":
        assert [type(v).__name__ for v in back["o"][:3]] == ["str", "NoneType", "float"]


def test_sender_without_pyarrow_pickles(monkeypatch):
    frame = pd.DataFrame({"x": np.arange(10 * ROWS)})

    def no_pyarrow():
        # Not sys.modules["pyarrow"] = None: pandas 3 itself pickles through
        # pyarrow (its string columns and labels are Arrow arrays).
        raise ModuleNotFoundError("No module named 'pyarrow'")

    monkeypatch.setattr(tables, "_pyarrow", no_pyarrow)
    data = dumps(frame)
    assert not packed(data)
    pd.testing.assert_frame_equal(loads(data), frame)


def test_receiver_without_pyarrow_is_told_how_to_install_it(monkeypatch):
    data = dumps(pd.DataFrame({"x": np.arange(10 * ROWS)}))
    assert packed(data)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.ipc", None)
    with pytest.raises(SerializationError, match="pip install pyarrow"):
        loads(data)


def test_importing_starburst_imports_neither_pandas_nor_pyarrow():
    code = ("import sys, starburst\n"
            "from starburst.serialization import dumps, loads\n"
            "assert loads(dumps({'a': [1, 2.5, b'x' * 100_000]}))['a'][0] == 1\n"
            "print(sorted({'pandas', 'pyarrow'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"


# -- damage ---------------------------------------------------------------------


def test_damaged_ipc_bytes_fail_the_checksum_or_the_read():
    frame = mixed_frame()
    data = dumps(frame)
    digest = checksum(data)
    ipc_start = len(data) - tables.to_ipc(frame)[0].size
    for where in (ipc_start + 10, (ipc_start + len(data)) // 2, len(data) - 3):
        bad = bytearray(data)
        bad[where] ^= 0xFF
        # The message's checksum covers the IPC tail: damage is caught before unpickling.
        assert checksum(bytes(bad)) != digest
    with pytest.raises(SerializationError, match="Arrow IPC stream"):
        tables.from_ipc(b"not an arrow stream at all", "frame")
    ipc = tables.to_ipc(frame)[0].to_pybytes()
    with pytest.raises(SerializationError, match="corrupt"):
        tables.from_ipc(ipc[: len(ipc) // 2], "frame")


def test_truncated_packed_frames_raise_protocol_error():
    data = dumps(mixed_frame())
    for cut in (5, 12, 40, len(data) // 2, len(data) - 1):
        with pytest.raises(ProtocolError):
            loads(data[:cut])
    with pytest.raises(ProtocolError):
        loads(data + b"\0")


def test_frame_versions():
    plain = dumps([1, 2, 3])
    assert plain[3] == 2
    assert loads(plain[:3] + b"\x01" + plain[4:]) == [1, 2, 3]  # version 1 is still read
    with pytest.raises(VersionMismatchError, match="same version"):
        loads(plain[:4] + bytes([plain[4] | 0x80]) + plain[5:])  # a flag from the future


# -- end to end -------------------------------------------------------------------


def test_map_over_dataframes_returns_equal_frames(executor_factory, monkeypatch):
    # Defined here so it travels by value: the worker need not import this module.
    def summarise(frame):
        out = frame.assign(scaled=frame["f32"] * 2)
        return out, {"rows": len(out), "first": out.index[0]}

    ex = executor_factory(workers=2)
    # Which path the frames took: arguments are shared objects the client
    # puts in the store; results are frames the client loads.
    store = ex._client.transport.store
    sent: list[bytes] = []
    received: list[bytes] = []
    real_put, real_loads = store.put, client_module.loads
    monkeypatch.setattr(store, "put", lambda k, d: (
        sent.append(d) if "/objects/" in k else None, real_put(k, d))[1])
    monkeypatch.setattr(client_module, "loads", lambda d, **kw: (
        received.append(bytes(d)), real_loads(d, **kw))[1])
    frames = [mixed_frame(seed=seed) for seed in range(3)]
    results = list(ex.map(summarise, frames, timeout=120))
    assert len(results) == 3
    assert sum(packed(d) for d in sent) == 3  # the three frames; not the function
    assert received
    assert all(packed(d) for d in received)
    for frame, (out, stats) in zip(frames, results, strict=True):
        expected, expected_stats = summarise(frame)
        assert_same(out, expected)
        assert stats == expected_stats
