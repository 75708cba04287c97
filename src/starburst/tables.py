"""pandas DataFrames and Arrow tables as Arrow IPC streams (zstd) in frames.

Pickling a large DataFrame writes its blocks as they are (object columns
of strings one Python object at a time, slowly) and leaves compression to
the frame's single zstd pass. An Arrow IPC stream with zstd buffer
compression converts columnar data in C++, compresses each column buffer
on its own, and reads back without a Python object per cell. So a table
of at least :data:`IPC_THRESHOLD` bytes is reduced by the pickler (see
:mod:`starburst.serialization`) to ``from_ipc(PickleBuffer(ipc), kind,
extra)``: the IPC bytes travel as one out-of-band buffer (written into
the frame once, never copied into the pickle stream, and not compressed
a second time), and the call rebuilds the object on the other side.

What travels this way:

* ``pandas.DataFrame`` and ``pandas.Series`` (exact types: a subclass such
  as a GeoDataFrame keeps its own pickling), when the round trip through
  Arrow is exact: the index (named, MultiIndex, RangeIndex), column
  labels, every dtype (categorical, tz-aware datetimes, nullable dtypes)
  and ``attrs`` come back equal. A frame that would not (duplicate or
  non-string labels Arrow renames, object columns of mixed or nested
  Python objects, dtypes Arrow maps to another dtype) is pickled as
  before, silently: the result is the same, only slower.
* ``pyarrow.Table``, ``RecordBatch`` and ``ChunkedArray``, always exact.

Nothing here imports pandas or pyarrow at starburst import time: an
object is only considered when its type comes from one of them (so they
are already imported), and pyarrow is imported when a table is encoded or
decoded. The sending side falls back to pickle without pyarrow; the
receiving side needs pyarrow only when a table arrives, and says how to
install it.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from .exceptions import SerializationError

__all__ = ["IPC_THRESHOLD", "from_ipc", "is_table", "nbytes", "to_ipc"]

#: Tables at least this large (in memory, see :func:`nbytes`) travel as
#: Arrow IPC. The conversion has a fixed cost of about 4 ms per frame
#: (Arrow schema and pandas metadata, the dtype check, IPC writer and
#: reader, ``to_pandas``) that pickle does not pay; measured round trips
#: (``dumps`` + ``loads``, pandas 3) cross over near 2 MiB for numeric
#: frames and 5-8 MiB for frames with string and categorical columns, and
#: Arrow is 1.4x faster at 40 MiB. 4 MiB keeps a map over many small
#: frames on pickle and sends every frame that takes real time as Arrow.
#: (With pandas 2, object columns of strings pickle one Python object at
#: a time, and Arrow wins by far more.)
IPC_THRESHOLD = 4 << 20

#: Column name a Series takes while it travels as a one-column table.
_SERIES_COLUMN = "__starburst_series__"
_PANDAS = ("frame", "series")


def _pyarrow() -> Any:
    """pyarrow, imported on first use (typed ``Any``: it ships no type stubs)."""
    return importlib.import_module("pyarrow")


def _kind(obj: Any) -> str | None:
    """``"frame"``, ``"series"``, ``"table"``, ``"batch"``, ``"chunked"`` or None.

    Only exact types count, and the module of ``type(obj)`` is looked at
    first, so this costs one string test for everything that is not a
    table and never imports pandas or pyarrow.
    """
    cls = type(obj)
    module = cls.__module__
    if module.startswith("pandas"):  # "pandas" itself from pandas 3 on
        pd = sys.modules.get("pandas")
        if pd is None:
            return None
        if cls is pd.DataFrame:
            return "frame"
        if cls is pd.Series:
            return "series"
    elif module.startswith("pyarrow"):
        pa = sys.modules.get("pyarrow")
        if pa is None:
            return None
        if cls is pa.Table:
            return "table"
        if cls is pa.RecordBatch:
            return "batch"
        if cls is pa.ChunkedArray:
            return "chunked"
    return None


def is_table(obj: Any) -> bool:
    """Whether ``obj`` is a DataFrame, Series or Arrow table this module can encode."""
    return _kind(obj) is not None


def nbytes(obj: Any) -> int:
    """In-memory size of a table in bytes, cheaply (no per-cell walk).

    A DataFrame counts its column arrays and index without looking into
    object columns (8 bytes per reference, like ``memory_usage(deep=False)``
    but without building a Series, which costs more than pickling a small
    frame). Arrow objects report ``nbytes``. Anything else is 0.
    """
    kind = _kind(obj)
    if kind == "frame":
        try:
            arrays = obj._mgr.arrays  # every pandas since 1.0; guarded below
            return int(sum(a.nbytes for a in arrays)) + int(obj.index.nbytes)
        except AttributeError:
            return int(obj.memory_usage(index=True, deep=False).sum())
    if kind == "series":
        return int(obj.nbytes) + int(obj.index.nbytes)
    if kind is not None:
        return int(obj.nbytes)
    return 0


def to_ipc(obj: Any) -> tuple[Any, str, Any] | None:
    """Encode a large table as ``(ipc_buffer, kind, extra)``, or None to pickle it.

    None when ``obj`` is not a table, is smaller than
    :data:`IPC_THRESHOLD`, pyarrow is not installed here, or the round trip
    through Arrow would not give back an equal object. ``ipc_buffer`` is a
    ``pyarrow.Buffer`` holding an IPC stream with zstd-compressed buffers;
    ``extra`` is what the stream cannot hold (a DataFrame's ``attrs``, a
    Series' name and ``attrs``), pickled next to it.
    """
    kind = _kind(obj)
    if kind is None or nbytes(obj) < IPC_THRESHOLD:
        return None
    try:
        pa = _pyarrow()
    except ImportError:
        return None
    extra: Any = None
    if kind in _PANDAS:
        if not obj.flags.allows_duplicate_labels:
            return None  # a flag Arrow does not carry
        if kind == "series":
            extra = (obj.name, obj.attrs or None)
            obj = obj.to_frame(name=_SERIES_COLUMN)
        else:
            extra = obj.attrs or None
        table = _from_pandas(obj)
        if table is None:
            return None
    elif kind == "table":
        table = obj
    elif kind == "batch":
        table = obj  # written as the stream's one batch
    else:
        table = pa.table({"chunked": obj})
    try:
        return _write(table), kind, extra
    except (pa.ArrowException, OSError):
        return None  # a type the IPC format cannot write: pickle keeps it


def _from_pandas(frame: Any) -> Any:
    """The Arrow table of ``frame``, or None if it would not come back equal.

    The check converts a zero-row slice back (its schema and pandas
    metadata are the whole table's) and compares index type and names,
    column labels and every dtype; it costs well under a millisecond for
    a frame of any length. Object columns must map to plain Arrow values
    (strings, bytes, dates, decimals): nested types come back as numpy
    arrays and dicts where the frame held lists and dicts, and may not hold
    missing values.
    """
    pa = _pyarrow()
    try:
        # preserve_index=None keeps a RangeIndex as metadata (a RangeIndex
        # again on the way back) and stores any other index as columns.
        table = pa.Table.from_pandas(frame, preserve_index=None)
    except (pa.ArrowException, ValueError, TypeError):
        return None  # mixed object columns, duplicate labels, ...
    if any(pa.types.is_nested(field.type) for field in table.schema):
        return None
    # A missing value in an object column may have been None or NaN; Arrow
    # keeps only "null" and gives back None. Null counts are O(1) in Arrow.
    for column in table.schema.pandas_metadata["columns"]:
        if column["numpy_type"] == "object" and table.column(column["field_name"]).null_count:
            return None
    try:
        probe = table.slice(0, 0).to_pandas()
    except (pa.ArrowException, ValueError, TypeError):
        return None
    same = (
        type(probe.index) is type(frame.index)
        and list(probe.index.names) == list(frame.index.names)
        and _same_dtypes(probe.index, frame.index)
        and type(probe.columns) is type(frame.columns)
        and probe.columns.equals(frame.columns)
        and list(probe.columns.names) == list(frame.columns.names)
        and probe.columns.dtype == frame.columns.dtype
        and list(probe.dtypes) == list(frame.dtypes)
    )
    return table if same else None


def _same_dtypes(left: Any, right: Any) -> bool:
    """Whether two indexes have the same dtype per level."""
    if left.nlevels != right.nlevels:
        return False
    if left.nlevels == 1:
        return bool(left.dtype == right.dtype)
    return [lvl.dtype for lvl in left.levels] == [lvl.dtype for lvl in right.levels]


def _write(table: Any) -> Any:
    """A Table or RecordBatch as one IPC stream with zstd-compressed buffers.

    Returns the ``pyarrow.Buffer`` the stream was written into (no copy).
    """
    pa = _pyarrow()
    ipc = importlib.import_module("pyarrow.ipc")
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema,
                        options=ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write(table)
    return sink.getvalue()


def from_ipc(data: Any, kind: str, extra: Any = None) -> Any:
    """Rebuild what :func:`to_ipc` encoded (pickle calls this on the receiving side).

    ``data`` is any buffer (the frame's out-of-band buffer, a memoryview
    of the received bytes); it is read in place, without a copy.

    Raises:
        SerializationError: pyarrow is not installed here, or the stream is
            not a valid Arrow IPC stream.
    """
    try:
        pa = _pyarrow()
        ipc = importlib.import_module("pyarrow.ipc")
    except ImportError as exc:
        raise SerializationError(
            f"a {_describe(kind)} arrived as Arrow IPC but pyarrow is not installed "
            "where it is read: pip install pyarrow (in the worker environment for "
            "arguments, locally for results)"
        ) from exc
    try:
        with ipc.open_stream(pa.py_buffer(data)) as reader:
            if kind == "batch":
                return reader.read_next_batch()
            table = reader.read_all()
        if kind == "table":
            return table
        if kind == "chunked":
            return table.column(0)
        if kind not in _PANDAS:
            raise SerializationError(
                f"unknown Arrow payload kind {kind!r}: the sender runs a different "
                "starburst version; install the same version on both sides")
        # One block per column and each Arrow buffer freed once converted:
        # the peak is about 1.1x the frame instead of 1.7x (3M rows, 123 MiB).
        frame = table.to_pandas(split_blocks=True, self_destruct=True)
        del table
    except (pa.ArrowException, OSError) as exc:  # a short stream is an OSError
        raise SerializationError(
            f"the Arrow IPC stream of a {_describe(kind)} is corrupt: {exc}. The frame "
            "passed its checksum, so the sender wrote it wrongly; report it with the "
            "pyarrow versions of both sides"
        ) from exc
    if kind == "series":
        name, attrs = extra
        series = frame[_SERIES_COLUMN]
        series.name = name
        if attrs:
            series.attrs = attrs
        return series
    if extra:
        frame.attrs = extra
    return frame


def _describe(kind: str) -> str:
    return {"frame": "pandas DataFrame", "series": "pandas Series", "table": "pyarrow Table",
            "batch": "pyarrow RecordBatch", "chunked": "pyarrow ChunkedArray"}.get(kind, "table")
