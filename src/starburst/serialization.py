"""Turning functions, arguments and results into bytes, and back.

A *frame* is what travels: pickle protocol 5 with out-of-band buffers (so
a numpy array's memory is written once, not copied into the pickle
stream), compressed with zstd when it is large enough for that to pay.

Layout (little endian)::

    b"SBF" | version:u8 | flags:u8 | body
    body (maybe zstd) = n_buffers:u32 | pickle_len:u64 | buf_len:u64 * n | pickle | buffers

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
from collections.abc import Callable, Iterable
from typing import Any

import cloudpickle
import zstandard

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
FRAME_VERSION = 1
_FLAG_ZSTD = 1
_HEAD = struct.Struct("<3sBB")
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

    def __init__(self, file: io.BytesIO, persistent: PersistentId | None, **kw: Any) -> None:
        if persistent is not None:
            self.persistent_id = persistent  # read by the C pickler in __init__
        super().__init__(file, protocol=5, **kw)


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
    try:
        _Pickler(stream, persistent_id, buffer_callback=buffers.append).dump(obj)
    except Exception as exc:
        where = describe_unpicklable(obj)
        raise SerializationError(
            f"cannot pickle {where}: {type(exc).__name__}: {exc}. "
            "Pass picklable objects (create locks, connections and open files "
            "inside the task instead)."
        ) from exc
    payload = stream.getbuffer()
    raws = [b.raw() for b in buffers]
    head = struct.pack(f"<IQ{len(raws)}Q", len(raws), len(payload), *(r.nbytes for r in raws))
    size = len(head) + len(payload) + sum(r.nbytes for r in raws)
    if size >= COMPRESS_THRESHOLD:
        comp = zstandard.ZstdCompressor(level=_ZSTD_LEVEL)
        packed = comp.compress(b"".join([head, payload, *raws]))
        if len(packed) < size * _MIN_SAVING:
            return _HEAD.pack(FRAME_MAGIC, FRAME_VERSION, _FLAG_ZSTD) + packed
    return b"".join([_HEAD.pack(FRAME_MAGIC, FRAME_VERSION, 0), head, payload, *raws])


def loads(data: bytes | memoryview, *, persistent_load: PersistentLoad | None = None) -> Any:
    """Deserialise a frame produced by :func:`dumps`.

    Out-of-band buffers are handed to pickle as views of ``data`` (no copy)
    when the frame is not compressed.

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
    if version != FRAME_VERSION:
        raise VersionMismatchError(
            f"frame version {version} but this starburst reads version {FRAME_VERSION}: "
            "client and workers run different starburst versions; install the same "
            "version on both (the environment image is rebuilt when it changes)"
        )
    body = view[_HEAD.size :]
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
    if offset + plen + sum(blens) != len(body):
        raise ProtocolError(
            f"frame length mismatch: header says {offset + plen + sum(blens)} bytes, "
            f"got {len(body)}"
        )
    pickled = body[offset : offset + plen]
    offset += plen
    buffers = []
    for blen in blens:
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
    """Cheap size estimate used to decide whether an argument is worth sharing."""
    nbytes = getattr(obj, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    try:
        return sys.getsizeof(obj)
    except TypeError:
        return 0
