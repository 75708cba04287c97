"""Turning functions, arguments and results into bytes, and back.

A *frame* is what travels: pickle protocol 5 with out-of-band buffers (so
a numpy array's or a DataFrame block's memory is written once, not copied
into the pickle stream). Version 3 (written since issue 17) lays a frame
out as *segments*, each stored raw or zstd-compressed on its own::

    b"SBF" | version=3:u8 | flags:u8 | n_parts:u32 | n_buffers:u32
    part_buffers:u32 * n_parts            # out-of-band buffers of each part, in order
    codec:u8 * n | raw_len:u64 * n | stored_len:u64 * n    # n = n_parts + n_buffers
    segment bytes: pickle of part 0 .. pickle of part n-1, buffer 0 .. buffer m-1

Why segments:

* Every out-of-band buffer is rebuilt in memory of its own, writable and
  64-byte aligned (:func:`_aligned`), exactly as ``pickle.loads`` gives a
  writable array: a task may modify its arguments in place, and numpy's
  SIMD loops see aligned data, so float sums are bit-identical to a serial
  run. A compressed buffer decompresses straight into that memory; a raw
  one is copied once (the bytes a store or queue hands over are immutable).
* A frame may hold several *parts* (:func:`dumps_parts`), each its own
  pickle stream: a worker writes one part per task, so one result that
  cannot be unpickled on the client fails that task alone
  (:func:`loads_parts`). All parts share the frame, its buffer table and
  the one checksum its message carries.
* The codec is chosen per segment, and per transport (:func:`codec_for`):
  none on the local backend, where bytes never cross a network and
  compressing only costs time; zstd at :data:`NETWORK_ZSTD_LEVEL` over S3,
  kept for a segment only where it saves more time in transfer than it
  costs (:data:`_KEEP_RATIO`).

Versions 1 and 2 (one pickle stream, the whole body maybe zstd, version
2's PACKED flag for Arrow IPC buffers of :mod:`starburst.wire.tables`) are
still read; their buffers are copied into aligned writable memory too.

Functions travel by value through cloudpickle, so lambdas, closures and
functions defined in ``__main__`` or a notebook work on any worker.
Objects registered in a :class:`SharedObjects` table (the function, large
arguments repeated across tasks) are written once to the store by
content hash and referenced from payloads by ``persistent_id``.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import mmap
import pickle
import struct
import sys
from collections import ChainMap
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import cloudpickle
import zstandard

from ..exceptions import ProtocolError, SerializationError, VersionMismatchError
from . import sources, tables

__all__ = [
    "FRAME_VERSION",
    "NETWORK_THROUGHPUT",
    "NETWORK_ZSTD_LEVEL",
    "Codec",
    "checksum",
    "codec_for",
    "describe_unpicklable",
    "dumps",
    "dumps_parts",
    "frame_checksum",
    "loads",
    "loads_parts",
    "locate_unpicklable",
    "shared_digest",
    "shared_digest_matches",
    "sizeof",
    "structure_checksum",
    "verify_checksum",
]

#: ``"none"``: segments stored raw; ``"zstd"``: large segments compressed
#: where that pays at :data:`NETWORK_THROUGHPUT`.
Codec = Literal["none", "zstd"]

FRAME_MAGIC = b"SBF"
#: Version 3: segments (per-buffer codec, aligned writable buffers, parts).
#: A worker of an older starburst fails on its first payload with a clear
#: VersionMismatchError.
FRAME_VERSION = 3
_READS = (1, 2, FRAME_VERSION)
_FLAG_ZSTD = 1
_FLAG_PACKED = 2
#: Version 3: the frame holds a list of parts (:func:`dumps_parts`);
#: without it, its one part is the object itself.
_FLAG_PARTS = 4
_FLAGS_KNOWN = {1: _FLAG_ZSTD, 2: _FLAG_ZSTD | _FLAG_PACKED, 3: _FLAG_PARTS}
_HEAD = struct.Struct("<3sBB")
_COUNTS = struct.Struct("<II")
#: Bytes of the segment table per segment: codec (u8), raw and stored length (u64).
_SEGMENT_SIZE = 17
_SECTION_LEN = struct.Struct("<Q")
_RAW, _ZSTD = 0, 1
#: Top bit of a version-2 buffer length: the buffer is packed (Arrow IPC)
#: and stored in the frame's tail, outside the zstd pass.
_PACKED_BIT = 1 << 63
#: Buffers and frames of at least this many bytes get a mapping of their
#: own, its pages populated in one call (:func:`_mapping`); smaller ones
#: come from the heap. 32 MiB is glibc's largest dynamic mmap threshold:
#: below it malloc reuses freed heap memory, whose pages are already
#: faulted in, and that is faster than any fresh mapping (a 82 MiB frame
#: of 16 MiB columns decoded in 0.014 s from the heap, as ``pickle.loads``
#: does, against 0.031 s from populated mappings); above it malloc maps
#: fresh memory too and faults once per page as it is first written.
_MAP_THRESHOLD = 32 << 20
_MAP_POPULATE: int = getattr(mmap, "MAP_POPULATE", 0)  # Linux only; 0 elsewhere
#: ``bytearray`` of ``n`` bytes, uninitialised (``bytearray(n)`` zero-fills,
#: a second pass over memory): the C API's own constructor given no source.
_uninitialised = ctypes.pythonapi.PyByteArray_FromStringAndSize
_uninitialised.restype = ctypes.py_object
_uninitialised.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t)
#: Alignment of every buffer a frame gives back: a cache line, and the
#: widest SIMD load (AVX-512), so no numpy loop takes an unaligned path.
ALIGN = 64
# Compressing a segment below 64 KiB saves little in absolute bytes and
# costs a measurable share of the per-task overhead on no-op workloads.
COMPRESS_THRESHOLD = 64 * 1024
#: Per-worker S3 throughput the codec choice assumes, in bytes/s, each way.
#: An assumption, not a measurement (tests never reach real AWS): one S3
#: stream commonly moves on the order of 100 MB/s, and a Fargate task of
#: 1-4 vCPU gets a network share of that order, however many parts its
#: multipart transfer runs. A faster network makes compression pay less.
NETWORK_THROUGHPUT = 100e6
#: zstd level over the network. ``nice -n 10 python bench/dataframes.py
#: --rows 2000000 --repeat 5`` (82 MiB mixed frame, 2 shared cores) timed
#: levels -1, 1 and 3 on the frame's segments with the transfer at
#: NETWORK_THROUGHPUT each way: level 1 (0.49 of the bytes) 1.57 s to a
#: worker and 1.92 s back, level -1 (0.52) 1.63 s and 1.91 s, level 3
#: (0.45) 1.78 s and 2.44 s: its CPU costs more than its bytes save.
NETWORK_ZSTD_LEVEL = 1
#: Encode and decode speeds (bytes/s) assumed for level 1: one quiet core
#: compressed the 82 MiB frame at ~550 MB/s and decompressed it at ~900
#: MB/s; rounded down for a worker that shares its vCPU with the task.
_ZSTD_ENCODE_SPEED = 400e6
_ZSTD_DECODE_SPEED = 800e6
#: Keep a compressed segment when stored/raw is below this ratio: the
#: break-even of ``raw*(1/enc + 1/dec) + 2*stored/T < 2*raw/T`` (bytes go
#: up once and down once at T). With the figures above: about 0.81.
_KEEP_RATIO = 1 - (NETWORK_THROUGHPUT / 2) * (1 / _ZSTD_ENCODE_SPEED + 1 / _ZSTD_DECODE_SPEED)

#: A large segment is compressed only if its first 256 KiB compress below
#: :data:`_KEEP_RATIO`: a column of random floats (ratio ~0.93) is then
#: skipped for well under a millisecond instead of being compressed whole
#: for nothing, and a column's head is a fair sample of its values.
_SAMPLE = 256 * 1024

PersistentId = Callable[[Any], Any]
PersistentLoad = Callable[[Any], Any]


def codec_for(transport_spec: str) -> Codec:
    """The codec for frames that travel over the transport of ``transport_spec``.

    A ``local:`` transport moves bytes through this machine's files, where
    compression only costs time; every other transport (``aws:``: S3 and
    SQS) crosses a network at about :data:`NETWORK_THROUGHPUT`.
    """
    return "none" if transport_spec.startswith("local:") else "zstd"


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


#: Prefix of a structure digest (:func:`structure_checksum`).
STRUCTURE_PREFIX = "s:"


def structure_checksum(frame: bytes | memoryview) -> str:
    """A digest of a frame's structure: its header and segment table (every segment's
    codec and lengths), the start of each pickle stream, and its total length.

    Used on the local transport only (:func:`frame_checksum`), where a frame
    never leaves this machine: it goes through a file written whole
    (temporary file, then rename) or a SQLite row, and back. What can go
    wrong there is a truncated or foreign file, and this catches both; a
    digest of every byte, as over S3, cost more than pickling the frame
    (``python bench/dataframes.py``: 0.68x plain pickle's speed with a
    BLAKE2b of the header, tables and whole pickle streams, since pandas
    pickles string columns in band). A frame that is not version 3 is
    hashed whole.
    """
    view = memoryview(frame)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    layout = _layout(view)
    if layout is None:
        digest = hashlib.blake2b(view, digest_size=16)
    else:
        tables_end, starts = layout
        digest = hashlib.blake2b(view[:tables_end], digest_size=16)
        for start, length in starts:
            digest.update(view[start:start + min(length, _STREAM_HEAD)])
    digest.update(len(view).to_bytes(8, "little"))
    return STRUCTURE_PREFIX + digest.hexdigest()


#: Bytes of each pickle stream a structure digest covers: the pickle header,
#: the first opcodes and the class names that say what the frame holds.
_STREAM_HEAD = 4096


def _layout(view: memoryview) -> tuple[int, list[tuple[int, int]]] | None:
    """(end of the segment table, [(start, length) of each pickle stream]) of a
    version-3 frame; None for any other frame."""
    try:
        magic, version, _ = _HEAD.unpack_from(view)
        if magic != FRAME_MAGIC or version != 3:
            return None
        counts: tuple[int, int] = _COUNTS.unpack_from(view, _HEAD.size)
        n_parts, n = counts[0], counts[0] + counts[1]
        tables = _HEAD.size + _COUNTS.size + 4 * n_parts + _SEGMENT_SIZE * n
        if tables > len(view):
            return None
        stored: tuple[int, ...] = struct.unpack_from(f"<{n}Q", view, tables - 8 * n)
    except struct.error:
        return None
    starts = []
    offset = tables
    for length in stored[:n_parts]:
        starts.append((offset, length))
        offset += length
    return tables, starts


def frame_checksum(frame: bytes | memoryview, transport_spec: str) -> str:
    """The integrity digest a message carries for ``frame`` on ``transport_spec``.

    The whole frame's BLAKE2b everywhere bytes cross a network or a store
    another machine writes (S3); on the local transport, its structure only
    (:func:`structure_checksum`).
    """
    return structure_checksum(frame) if _is_local(transport_spec) else checksum(frame)


def verify_checksum(frame: bytes | memoryview, digest: str, transport_spec: str) -> bool:
    """Whether ``frame`` matches ``digest`` on ``transport_spec``.

    A structure digest is accepted on the local transport only, so no
    message can downgrade the check of a frame that crossed the network.
    """
    if digest.startswith(STRUCTURE_PREFIX):
        return _is_local(transport_spec) and structure_checksum(frame) == digest
    return checksum(frame) == digest


def shared_digest(frame: bytes | memoryview, transport_spec: str, serial: int) -> str:
    """The key of a shared object (the function, a large argument) stored once per session.

    Over S3 it is the frame's BLAKE2b (content-addressed: the same bytes are
    stored once, whatever object they came from). On the local transport it
    is ``o<serial>-<structure digest>``: hashing every byte of a large
    argument cost more than pickling it, the client's identity cache already
    stores a repeated object once, and the structure digest still checks the
    frame read back (:func:`shared_digest_matches`).
    """
    if _is_local(transport_spec):
        return f"o{serial:x}-{structure_checksum(frame)[len(STRUCTURE_PREFIX):]}"
    return checksum(frame)


def shared_digest_matches(frame: bytes | memoryview, digest: str, transport_spec: str) -> bool:
    """Whether a shared object's ``frame`` matches the key it was stored under."""
    serial, dash, structure = digest.partition("-")
    if dash and serial.startswith("o"):
        return _is_local(transport_spec) and structure_checksum(frame) == (
            STRUCTURE_PREFIX + structure)
    return checksum(frame) == digest


def _is_local(transport_spec: str) -> bool:
    return transport_spec.startswith("local:")


def _aligned(size: int) -> memoryview:
    """``size`` bytes of writable memory of their own, starting on an :data:`ALIGN` boundary.

    Over-allocated by ``ALIGN - 1`` bytes and viewed from the first aligned
    byte: what the view's consumers (numpy, pandas, Arrow) keep alive is
    this allocation alone, so dropping one array frees its memory. A small
    block is an uninitialised ``bytearray`` (heap memory, as ``pickle.loads``
    gets; zero-filling it first made decoding a 100 MB frame about 2x
    slower), a large one a populated mapping (page-aligned). Not
    ``numpy.empty``: numpy asks the kernel for transparent huge pages on
    blocks of 4 MiB and more (MADV_HUGEPAGE), and where THP defrag is
    "madvise" (a common default) each such allocation can stall in memory
    compaction: a 410 MiB frame decoded in 0.57-1.05 s in bench/dataframes.py
    against 0.21 s with NUMPY_MADVISE_HUGEPAGE=0.
    """
    if size >= _MAP_THRESHOLD and _MAP_POPULATE:
        return memoryview(_mapping(size))
    view = memoryview(_uninitialised(None, size + ALIGN - 1))
    address = ctypes.addressof(ctypes.c_char.from_buffer(view))
    start = -address % ALIGN
    return view[start : start + size]


def _mapping(size: int) -> mmap.mmap:
    """A private anonymous mapping of ``size`` bytes, its pages populated up front.

    One ``MAP_POPULATE`` call faults every page in at once; a copy into an
    unpopulated mapping (or a fresh heap block) faults once per 4 KiB page
    as it goes, which made copying 410 MiB take 0.27 s instead of 0.18 s.
    """
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_POPULATE)


def _encode(parts: Sequence[Any], flags: int, persistent_id: PersistentId | None,
            codec: Codec) -> bytes | memoryview:
    """A version-3 frame of ``parts`` (see the module docstring for the layout).

    One pickler writes every part, its memo cleared between them, so each
    part's stream stands alone (it references nothing of another part) at
    about 1 us per part instead of the 6 us a pickler per part costs: a
    chunk of 100 no-op results pays 0.1 ms, not 0.6 ms.
    """
    buffers: list[pickle.PickleBuffer] = []
    stream = io.BytesIO()
    pickler = _Pickler(stream, persistent_id, buffer_callback=buffers.append)
    bounds: list[tuple[int, int]] = []
    counts: list[int] = []
    for part in parts:
        start, before = stream.tell(), len(buffers)
        try:
            pickler.dump(part)
        except Exception as exc:
            where = describe_unpicklable(part)
            raise SerializationError(
                f"cannot pickle {where}: {type(exc).__name__}: {exc}. "
                "Pass picklable objects (create locks, connections and open files "
                "inside the task instead)."
            ) from exc
        pickler.clear_memo()
        bounds.append((start, stream.tell()))
        counts.append(len(buffers) - before)
    pickled = stream.getbuffer()
    kinds: list[int] = []
    raw_lens: list[int] = []
    stored_lens: list[int] = []
    data: list[Any] = []
    compressor = zstandard.ZstdCompressor(level=NETWORK_ZSTD_LEVEL) if codec == "zstd" else None
    for segment in (*(pickled[a:b] for a, b in bounds), *(b.raw() for b in buffers)):
        raw_len = segment.nbytes
        stored: Any = segment
        kind = _RAW
        if compressor is not None and raw_len >= COMPRESS_THRESHOLD and (
                raw_len < 4 * _SAMPLE
                or len(compressor.compress(segment[:_SAMPLE])) < _SAMPLE * _KEEP_RATIO):
            packed = compressor.compress(segment)
            if len(packed) < raw_len * _KEEP_RATIO:
                stored, kind = packed, _ZSTD
        kinds.append(kind)
        raw_lens.append(raw_len)
        stored_lens.append(memoryview(stored).nbytes)
        data.append(stored)
    n = len(kinds)
    head = [_HEAD.pack(FRAME_MAGIC, FRAME_VERSION, flags),
            _COUNTS.pack(len(parts), len(buffers)), struct.pack(f"<{len(counts)}I", *counts),
            bytes(kinds), struct.pack(f"<{n}Q", *raw_lens), struct.pack(f"<{n}Q", *stored_lens)]
    return _concatenate([*head, *data])


def _concatenate(pieces: list[Any]) -> bytes | memoryview:
    """The frame's pieces end to end: ``bytes``, or for a large frame a mapped view.

    A large frame is copied into a private anonymous mapping populated in
    one call (``MAP_POPULATE``) instead of ``bytes.join``'s fresh heap
    block, which takes a page fault per 4 KiB page as the copy first
    touches it: for the 410 MiB frame of ``bench/dataframes.py`` the join
    took 0.22 s of the encode's 0.34 s, the populated copy 0.18 s. Frames
    this large always go to a store (inline bodies are at most 1 MiB), and
    every store takes any bytes-like object.
    """
    total = sum(memoryview(piece).nbytes for piece in pieces)
    if total < _MAP_THRESHOLD or not _MAP_POPULATE:  # no gain without populating
        return b"".join(pieces)
    view = memoryview(_mapping(total))
    offset = 0
    for piece in pieces:
        size = memoryview(piece).nbytes
        view[offset:offset + size] = piece
        offset += size
    return view


def dumps(obj: Any, *, persistent_id: PersistentId | None = None,
          codec: Codec = "zstd") -> bytes | memoryview:
    """Serialise ``obj`` into a frame.

    ``codec`` is :func:`codec_for` of the transport the frame travels
    over; the default compresses, as a frame bound for S3 should.

    Raises:
        SerializationError: naming the part of ``obj`` that cannot be pickled.
    """
    return _encode([obj], 0, persistent_id, codec)


def dumps_parts(parts: Sequence[Any], *, persistent_id: PersistentId | None = None,
                codec: Codec = "zstd") -> bytes | memoryview:
    """Serialise ``parts`` into one frame whose parts :func:`loads_parts` reads one by one.

    What a worker does with a chunk's outcomes: one part per task, so a
    result the client cannot unpickle fails only its own task.

    Raises:
        SerializationError: a part cannot be pickled (it is named).
    """
    return _encode(list(parts), _FLAG_PARTS, persistent_id, codec)


def loads(data: bytes | memoryview, *, persistent_load: PersistentLoad | None = None) -> Any:
    """Deserialise a frame produced by :func:`dumps` (or :func:`dumps_parts`: the list).

    Out-of-band buffers come back in writable, 64-byte-aligned memory of
    their own (read-only where the sender's buffer was, as pickle does).

    Raises:
        ProtocolError: the frame is truncated or not a starburst frame.
        VersionMismatchError: it was written by an incompatible version.
        SerializationError: unpickling failed (e.g. a module missing on this side).
    """
    parts, multi = _decode(data, persistent_load)
    values = []
    for value, error in parts:
        if error is not None:
            raise error
        values.append(value)
    return values if multi else values[0]


def loads_parts(data: bytes | memoryview, *,
                persistent_load: PersistentLoad | None = None,
                loader_per_part: Callable[[], PersistentLoad] | None = None,
                ) -> list[tuple[Any, SerializationError | None]]:
    """Deserialise a frame of parts: ``[(value, None) | (None, error), ...]``.

    A part that fails to unpickle gives its :class:`SerializationError` in
    place of its value; the others are unaffected. A frame written before
    parts existed (one pickled list, versions 1 and 2, or :func:`dumps` of
    a list) is read as a whole: any failure raises.

    Raises:
        ProtocolError: the frame is damaged, or holds neither parts nor a list.
        VersionMismatchError: it was written by an incompatible version.
        SerializationError: a frame without parts fails to unpickle.
    """
    parts, multi = _decode(data, persistent_load, loader_per_part)
    if multi:
        return parts
    ((value, error),) = parts
    if error is not None:
        raise error
    if not isinstance(value, list):
        raise ProtocolError(f"frame holds a {type(value).__name__}, not a list of parts")
    return [(item, None) for item in value]


def _version_error(version: int, flags: int) -> VersionMismatchError:
    return VersionMismatchError(
        f"frame version {version} (flags {flags:#x}) but this starburst reads versions "
        f"{', '.join(map(str, _READS))}: client and workers run different starburst "
        "versions; install the same version on both (the environment image is "
        "rebuilt when it changes)"
    )


def _decode(data: bytes | memoryview, persistent_load: PersistentLoad | None,
            loader_per_part: Callable[[], PersistentLoad] | None = None,
            ) -> tuple[list[tuple[Any, SerializationError | None]], bool]:
    """``(parts, is_multi)`` of any frame version; each part ``(value, error)``.

    ``loader_per_part``: a fresh ``persistent_load`` for each part (a chunk's
    tasks each resolve shared objects into copies of their own).
    """
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    if len(view) < _HEAD.size:
        raise ProtocolError(f"frame truncated: {len(view)} bytes")
    magic, version, flags = _HEAD.unpack_from(view)
    if magic != FRAME_MAGIC:
        raise ProtocolError("not a starburst frame (bad magic); the payload is corrupt")
    if version not in _READS or flags & ~_FLAGS_KNOWN[version]:
        raise _version_error(version, flags)
    if version < 3:
        pickled, buffers = _legacy_segments(view, flags)
        return [_unpickle(pickled, buffers, persistent_load, None)], False
    streams, buffers, counts = _segments(view)
    parts = []
    start = 0
    multi = bool(flags & _FLAG_PARTS)
    for index, (stream, count) in enumerate(zip(streams, counts, strict=True)):
        load = loader_per_part() if loader_per_part is not None else persistent_load
        parts.append(_unpickle(stream, buffers[start : start + count], load,
                               index if multi else None))
        start += count
    if not multi and len(parts) != 1:
        raise ProtocolError(f"frame holds {len(parts)} parts but is not a frame of parts")
    return parts, multi


def _segments(view: memoryview) -> tuple[list[Any], list[memoryview], list[int]]:
    """``(pickle streams, buffers, buffers per part)`` of a version-3 frame."""
    offset = _HEAD.size
    try:
        n_parts, n_buffers = _COUNTS.unpack_from(view, offset)
        offset += _COUNTS.size
        n = n_parts + n_buffers
        if 4 * n_parts + _SEGMENT_SIZE * n > len(view) - offset:
            raise ProtocolError("frame header is corrupt (segment count)")
        counts = list(struct.unpack_from(f"<{n_parts}I", view, offset))
        offset += 4 * n_parts
        kinds = bytes(view[offset : offset + n])
        raw_lens = struct.unpack_from(f"<{n}Q", view, offset + n)
        stored_lens = struct.unpack_from(f"<{n}Q", view, offset + 9 * n)
    except struct.error as exc:
        raise ProtocolError(f"frame header truncated: {exc}") from exc
    offset += _SEGMENT_SIZE * n
    if sum(counts) != n_buffers:
        raise ProtocolError(f"frame header is corrupt: parts use {sum(counts)} buffers "
                            f"of {n_buffers}")
    stored_total = sum(stored_lens)
    if offset + stored_total != len(view):
        raise ProtocolError(f"frame length mismatch: header says {offset + stored_total} "
                            f"bytes, got {len(view)}")
    streams: list[Any] = []
    for kind, raw_len, stored_len in zip(kinds[:n_parts], raw_lens[:n_parts],
                                         stored_lens[:n_parts], strict=True):
        stored = view[offset : offset + stored_len]  # a pickle stream: read in place when raw
        offset += stored_len
        streams.append(stored if kind == _RAW and raw_len == stored_len else
                       _inflate(stored, raw_len, kind, _aligned(raw_len)))
    buffers: list[memoryview] = []
    for kind, raw_len, stored_len in zip(kinds[n_parts:], raw_lens[n_parts:],
                                         stored_lens[n_parts:], strict=True):
        stored = view[offset : offset + stored_len]
        offset += stored_len
        if kind == _RAW and stored_len == raw_len:
            target = _aligned(raw_len)
            target[:] = stored
            buffers.append(target)
        else:
            buffers.append(_inflate(stored, raw_len, kind, _aligned(raw_len)))
    return streams, buffers, counts


def _inflate(stored: memoryview, raw_len: int, kind: int, target: memoryview) -> memoryview:
    """Decompress ``stored`` straight into ``target`` (``raw_len`` bytes)."""
    if kind != _ZSTD:
        raise ProtocolError(f"frame segment has unknown codec {kind} (or a raw length "
                            "that differs from its stored length): the frame is corrupt")
    filled = 0
    try:
        with zstandard.ZstdDecompressor().stream_reader(stored) as reader:
            while filled < raw_len:
                got = reader.readinto(target[filled:])
                if not got:
                    break
                filled += got
            extra = reader.read(1)
    except zstandard.ZstdError as exc:
        raise ProtocolError(f"frame does not decompress: {exc}") from exc
    if filled != raw_len or extra:
        raise ProtocolError(f"frame segment decompresses to the wrong length (expected "
                            f"{raw_len} bytes): the frame is corrupt")
    return target


def _copy_aligned(buffer: memoryview) -> memoryview:
    target = _aligned(buffer.nbytes)
    target[:] = buffer
    return target


def _legacy_segments(view: memoryview, flags: int) -> tuple[memoryview, list[memoryview]]:
    """``(pickle stream, buffers)`` of a version-1 or -2 frame.

    Layout: ``body (maybe zstd) = n_buffers:u32 | pickle_len:u64 |
    buf_len:u64 * n | pickle | buffers``; with version 2's PACKED flag,
    ``body = section_len:u64 | section (maybe zstd) | packed buffers``,
    where a ``buf_len`` with its top bit set is a packed buffer in the tail.
    """
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
        if blen & _PACKED_BIT:  # Arrow IPC, read (not kept) by tables.from_ipc
            size = blen & ~_PACKED_BIT
            buffers.append(tail[tail_offset : tail_offset + size])
            tail_offset += size
        else:
            buffers.append(_copy_aligned(body[offset : offset + blen]))
            offset += blen
    return pickled, buffers


def _unpickle(pickled: Any, buffers: list[memoryview], persistent_load: PersistentLoad | None,
              part: int | None) -> tuple[Any, SerializationError | None]:
    """``(value, None)``, or ``(None, error)`` when unpickling fails for a reason of its own.

    A damaged frame (ProtocolError) raises at once: it is no one part's fault.
    """
    try:
        if persistent_load is None:  # results: the C loader, ~10x cheaper per part
            return pickle.loads(pickled, buffers=buffers), None
        return _Unpickler(io.BytesIO(pickled), persistent_load, buffers=buffers).load(), None
    except ProtocolError:
        raise
    except SerializationError as exc:
        return None, exc
    except Exception as exc:
        where = "payload" if part is None else f"part {part} of the frame"
        if persistent_load is None and "persistent" in str(exc):
            where += " (it references a shared object and there is no table to resolve it)"
        error = SerializationError(
            f"cannot unpickle {where}: {type(exc).__name__}: {exc}. If a module is "
            "missing, install it where the payload is read (the worker image, or "
            "locally for results)."
        )
        error.__cause__ = exc
        return None, error


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
    by :func:`starburst.wire.tables.nbytes` instead.
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
