"""Turning functions, arguments and results into bytes, and back.

A *frame* is what travels: pickle protocol 5 with out-of-band buffers (so
a numpy array's memory is written once, not copied into the pickle
stream), compressed with zstd when it is large enough for that to pay.

Layout (little endian)::

    b"SBF" | version:u8 | flags:u8 | body
    body (maybe zstd) = n_buffers:u32 | pickle_len:u64 | buf_len:u64 * n | pickle | buffers

Large pandas DataFrames and Arrow tables are reduced to Arrow IPC streams
whose buffers are already zstd-compressed (:mod:`starburst.tables`). A
frame holding such *packed* buffers has the ``PACKED`` flag and keeps them
out of the zstd pass::

    body = section_len:u64 | section (maybe zstd) | packed buffers
    section = n_buffers:u32 | pickle_len:u64 | buf_len:u64 * n | pickle | other buffers

where a ``buf_len`` with its top bit set is a packed buffer's length: its
bytes are in the tail, in order. The checksum a message carries covers
the whole frame, tail included. Version 2 added the flag; version 1
frames (no flag) are still read.

Functions travel by value through cloudpickle, so lambdas, closures and
functions defined in ``__main__`` or a notebook work on any worker.
Objects registered in a :class:`SharedObjects` table (the function, large
arguments repeated across tasks) are written once to the store by
content hash and referenced from payloads by ``persistent_id``.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import struct
import sys
from collections import ChainMap
from collections.abc import Callable, Iterable
from typing import Any

import cloudpickle
import zstandard

from . import sources, tables
from .exceptions import ProtocolError, SerializationError, VersionMismatchError

__all__ = [
    "FRAME_VERSION",
    "checksum",
    "describe_unpicklable",
    "dumps",
    "loads",
    "locate_unpicklable",
    "sizeof",
]

FRAME_MAGIC = b"SBF"
#: Version 2 added the PACKED flag. Every frame is written as version 2,
#: so a worker of an older starburst fails on its first payload with a
#: clear VersionMismatchError, not only once a DataFrame shows up.
FRAME_VERSION = 2
_READS = (1, FRAME_VERSION)
_FLAG_ZSTD = 1
_FLAG_PACKED = 2
_FLAGS_KNOWN = _FLAG_ZSTD | _FLAG_PACKED
_HEAD = struct.Struct("<3sBB")
_SECTION_LEN = struct.Struct("<Q")
#: Top bit of a buffer length: the buffer is packed (already compressed)
#: and stored in the frame's tail, outside the zstd pass.
_PACKED_BIT = 1 << 63
# Compressing below 64 KiB saves little in absolute bytes and costs a
# measurable share of the per-task overhead on no-op workloads.
COMPRESS_THRESHOLD = 64 * 1024
# zstd level 1 runs at several hundred MB/s; higher levels buy a few
# percent of size at many times the CPU, a bad trade for transient data.
_ZSTD_LEVEL = 1
# Keep the compressed form only when it saves at least 10%: random float
# arrays do not compress, and decompressing them would be pure cost.
_MIN_SAVING = 0.9

PersistentId = Callable[[Any], Any]
PersistentLoad = Callable[[Any], Any]


class _Pickler(cloudpickle.Pickler):  # type: ignore[misc]
    """cloudpickle with an optional persistent_id table for shared objects.

    ``persistent_id`` is set on the instance, and only when there is a
    table: pickle calls it for every object it saves, so a class-level
    method would cost a Python call per int and tuple of every payload.
    """

    # Code shipped by value keeps its file name and source lines (sources.py).
    dispatch_table = ChainMap(sources.DISPATCH, cloudpickle.Pickler.dispatch_table)

    def __init__(self, file: io.BytesIO, persistent: PersistentId | None, **kw: Any) -> None:
        if persistent is not None:
            self.persistent_id = persistent  # read by the C pickler in __init__
        super().__init__(file, protocol=5, **kw)
        #: The out-of-band buffers that hold Arrow IPC streams (compressed
        #: already); kept alive so their ids identify them in dumps().
        self.packed: list[pickle.PickleBuffer] = []

    def reducer_override(self, obj: Any) -> Any:
        """Reduce a large DataFrame or Arrow table to its Arrow IPC stream.

        Pickle calls this for every object but a few builtin types, so the
        test for a table is one string comparison on the type's module.
        The IPC bytes become an out-of-band buffer: written into the frame
        once, never copied into the pickle stream.
        """
        if type(obj).__module__.startswith(("pandas", "pyarrow")):
            encoded = tables.to_ipc(obj)
            if encoded is not None:
                ipc, kind, extra = encoded
                buffer = pickle.PickleBuffer(ipc)
                self.packed.append(buffer)
                return tables.from_ipc, (buffer, kind, extra)
        return super().reducer_override(obj)


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, load: PersistentLoad | None, **kw: Any) -> None:
        super().__init__(file, **kw)
        self._load = load

    def persistent_load(self, pid: Any) -> Any:
        if self._load is None:
            raise pickle.UnpicklingError(f"payload references shared object {pid!r}")
        return self._load(pid)


def checksum(data: bytes | memoryview) -> str:
    """Return the hex BLAKE2b-128 digest used to verify frames before unpickling."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def dumps(obj: Any, *, persistent_id: PersistentId | None = None) -> bytes:
    """Serialise ``obj`` into a frame.

    Raises:
        SerializationError: naming the part of ``obj`` that cannot be pickled.
    """
    buffers: list[pickle.PickleBuffer] = []
    stream = io.BytesIO()
    pickler = _Pickler(stream, persistent_id, buffer_callback=buffers.append)
    try:
        pickler.dump(obj)
    except Exception as exc:
        where = describe_unpicklable(obj)
        raise SerializationError(
            f"cannot pickle {where}: {type(exc).__name__}: {exc}. "
            "Pass picklable objects (create locks, connections and open files "
            "inside the task instead)."
        ) from exc
    payload = stream.getbuffer()
    if pickler.packed:
        return _dumps_packed(payload, buffers, {id(b) for b in pickler.packed})
    raws = [b.raw() for b in buffers]
    head = struct.pack(f"<IQ{len(raws)}Q", len(raws), len(payload), *(r.nbytes for r in raws))
    flags, body = _maybe_compress([head, payload, *raws])
    return b"".join([_HEAD.pack(FRAME_MAGIC, FRAME_VERSION, flags), *body])


def _maybe_compress(parts: list[Any]) -> tuple[int, list[Any]]:
    """``(flags, parts)``: zstd of the parts when they are large and it saves enough."""
    size = sum(memoryview(p).nbytes for p in parts)
    if size >= COMPRESS_THRESHOLD:
        comp = zstandard.ZstdCompressor(level=_ZSTD_LEVEL)
        packed = comp.compress(b"".join(parts))
        if len(packed) < size * _MIN_SAVING:
            return _FLAG_ZSTD, [packed]
    return 0, parts


def _dumps_packed(payload: memoryview, buffers: list[pickle.PickleBuffer],
                  packed_ids: set[int]) -> bytes:
    """A PACKED frame: packed buffers in the tail, the rest maybe compressed."""
    lengths: list[int] = []
    inline: list[memoryview] = []
    tail: list[memoryview] = []
    for buffer in buffers:
        raw = buffer.raw()
        if id(buffer) in packed_ids:
            tail.append(raw)
            lengths.append(raw.nbytes | _PACKED_BIT)
        else:
            inline.append(raw)
            lengths.append(raw.nbytes)
    head = struct.pack(f"<IQ{len(lengths)}Q", len(lengths), len(payload), *lengths)
    flags, section = _maybe_compress([head, payload, *inline])
    section_len = sum(memoryview(p).nbytes for p in section)
    return b"".join([_HEAD.pack(FRAME_MAGIC, FRAME_VERSION, flags | _FLAG_PACKED),
                     _SECTION_LEN.pack(section_len), *section, *tail])


def loads(data: bytes | memoryview, *, persistent_load: PersistentLoad | None = None) -> Any:
    """Deserialise a frame produced by :func:`dumps`.

    Out-of-band buffers are handed to pickle as views of ``data`` (no copy)
    when the frame is not compressed; packed Arrow IPC buffers always are.

    Raises:
        ProtocolError: the frame is truncated or not a starburst frame.
        VersionMismatchError: it was written by an incompatible version.
        SerializationError: unpickling failed (e.g. a module missing on this side).
    """
    view = memoryview(data)
    if len(view) < _HEAD.size:
        raise ProtocolError(f"frame truncated: {len(view)} bytes")
    magic, version, flags = _HEAD.unpack_from(view)
    if magic != FRAME_MAGIC:
        raise ProtocolError("not a starburst frame (bad magic); the payload is corrupt")
    if version not in _READS or flags & ~_FLAGS_KNOWN:
        raise VersionMismatchError(
            f"frame version {version} (flags {flags:#x}) but this starburst reads versions "
            f"{', '.join(map(str, _READS))}: client and workers run different starburst "
            "versions; install the same version on both (the environment image is "
            "rebuilt when it changes)"
        )
    body = view[_HEAD.size :]
    tail = body[:0]
    if flags & _FLAG_PACKED:
        if len(body) < _SECTION_LEN.size:
            raise ProtocolError(f"frame truncated: {len(view)} bytes")
        (section_len,) = _SECTION_LEN.unpack_from(body)
        if section_len > len(body) - _SECTION_LEN.size:
            raise ProtocolError(
                f"frame truncated: section of {section_len} bytes, "
                f"{len(body) - _SECTION_LEN.size} left")
        tail = body[_SECTION_LEN.size + section_len :]
        body = body[_SECTION_LEN.size : _SECTION_LEN.size + section_len]
    if flags & _FLAG_ZSTD:
        try:
            body = memoryview(zstandard.ZstdDecompressor().decompress(body))
        except zstandard.ZstdError as exc:
            raise ProtocolError(f"frame does not decompress: {exc}") from exc
    try:
        (n,) = struct.unpack_from("<I", body)
        if n > len(body) // 8:
            raise ProtocolError("frame header is corrupt (buffer count)")
        plen, *blens = struct.unpack_from(f"<Q{n}Q", body, 4)
    except struct.error as exc:
        raise ProtocolError(f"frame header truncated: {exc}") from exc
    offset = 4 + 8 * (n + 1)
    packed_len = sum(b & ~_PACKED_BIT for b in blens if b & _PACKED_BIT)
    inline_len = sum(b for b in blens if not b & _PACKED_BIT)
    if offset + plen + inline_len != len(body) or packed_len != len(tail):
        raise ProtocolError(
            f"frame length mismatch: header says {offset + plen + inline_len} + "
            f"{packed_len} bytes, got {len(body)} + {len(tail)}"
        )
    pickled = body[offset : offset + plen]
    offset += plen
    tail_offset = 0
    buffers = []
    for blen in blens:
        if blen & _PACKED_BIT:
            size = blen & ~_PACKED_BIT
            buffers.append(tail[tail_offset : tail_offset + size])
            tail_offset += size
        else:
            buffers.append(body[offset : offset + blen])
            offset += blen
    try:
        return _Unpickler(io.BytesIO(pickled), persistent_load, buffers=buffers).load()
    except (ProtocolError, SerializationError):
        raise
    except Exception as exc:
        raise SerializationError(
            f"cannot unpickle payload: {type(exc).__name__}: {exc}. If a module is "
            "missing, install it where the payload is read (the worker image, or "
            "locally for results)."
        ) from exc


def _picklable(obj: Any) -> bool:
    try:
        cloudpickle.dumps(obj, protocol=5, buffer_callback=lambda _b: None)
    except Exception:
        return False
    return True


def _children(obj: Any) -> Iterable[tuple[str, Any]]:
    """Yield (label, child) pairs in which an unpicklable part may hide."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield f"[{key!r}]", value
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for index, value in enumerate(obj):
            yield f"[{index}]", value
    elif callable(obj) and hasattr(obj, "__code__"):
        code = obj.__code__
        globs = getattr(obj, "__globals__", {})
        for name in code.co_names:
            if name in globs:
                yield f" -> global {name!r}", globs[name]
        for name, cell in zip(code.co_freevars, obj.__closure__ or (), strict=False):
            try:
                yield f" -> closure variable {name!r}", cell.cell_contents
            except ValueError:
                continue
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        for key, value in vars(obj).items():
            yield f".{key}", value


def describe_unpicklable(obj: Any, label: str = "object", depth: int = 0) -> str:
    """Find the innermost unpicklable part of ``obj`` and describe where it is.

    Walks containers, attributes, a function's globals and closure cells,
    returning e.g. ``"argument 1 -> closure variable 'lock' (_thread.lock)"``.
    """
    if depth < 6:
        for child_label, child in _children(obj):
            if child is obj or _picklable(child):
                continue
            return describe_unpicklable(child, f"{label}{child_label}", depth + 1)
    return f"{label} ({type(obj).__module__}.{type(obj).__qualname__})"


def locate_unpicklable(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """Describe which part of a call (function, argument, keyword) cannot be pickled."""
    for index, arg in enumerate(args):
        if not _picklable(arg):
            return describe_unpicklable(arg, f"argument {index}")
    for name, value in kwargs.items():
        if not _picklable(value):
            return describe_unpicklable(value, f"keyword argument {name!r}")
    return describe_unpicklable(fn, f"function {getattr(fn, '__qualname__', fn)!r}")


def sizeof(obj: Any) -> int:
    """Cheap size estimate used to decide whether an argument is worth sharing.

    A DataFrame has no ``nbytes`` and its ``sys.getsizeof`` walks every
    object cell (seconds for millions of strings), so tables are measured
    by :func:`starburst.tables.nbytes` instead.
    """
    nbytes = getattr(obj, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    if tables.is_table(obj):
        return tables.nbytes(obj)
    try:
        return sys.getsizeof(obj)
    except TypeError:
        return 0
