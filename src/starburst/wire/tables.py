"""pandas DataFrames and Arrow tables: cheap size, and reading old Arrow IPC frames.

Since frame version 3 (issue 17) tables travel as every other object
does: pickle protocol 5 with out-of-band buffers (:mod:`starburst.wire.serialization`),
so a DataFrame's column blocks are written into the frame once and come
back writable and 64-byte aligned, and compression is left to the frame's
per-segment codec (none on the local backend, zstd over S3). Version 2
reduced tables of at least 4 MiB to Arrow IPC streams with zstd buffers;
``bench/dataframes.py`` measured that at 0.31x plain pickle's speed to the
worker and 0.24x back on a 10M-row frame, so it is gone.

What is left:

* :func:`is_table` and :func:`nbytes`: a table's in-memory size without a
  per-cell walk, used to decide whether an argument is shared;
* :func:`from_ipc`: what a version-2 frame's pickle stream calls to rebuild
  a table from its Arrow IPC buffer, so old frames stay readable.

Nothing here imports pandas or pyarrow at starburst import time: an
object is only considered when its type comes from one of them (so they
are already imported), and pyarrow is imported when an old frame's table
is decoded; the error says how to install it.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from ..exceptions import SerializationError

__all__ = ["from_ipc", "is_table", "nbytes"]

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


def from_ipc(data: Any, kind: str, extra: Any = None) -> Any:
    """Rebuild a table a version-2 frame carried as Arrow IPC (its pickle stream calls this).

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
