"""Write reproducible OCI layers: the same entries always give the same digest.

A layer is a gzip-compressed tar. Everything that usually varies between
two builds of the same files is fixed here:

* entries sorted by path, parent directories emitted explicitly;
* mtime 0, uid/gid 0, user and group names empty;
* permissions normalised (0o755 directories and executables, 0o644 files);
* one tar format (PAX: long paths in site-packages are common);
* a gzip header with no file name and mtime 0, one compression level.

The blob is streamed to disk while its two digests are computed: the
``digest`` of the compressed bytes (what the registry stores) and the
``diff_id`` of the uncompressed tar (what the image config lists).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .layout import Entry

__all__ = ["LayerBlob", "write_layer"]

# zlib's own default: within a few percent of level 9's size at a fraction
# of its time on large binary packages. Changing it changes every digest.
_COMPRESSLEVEL = 6
_DIR_MODE = 0o755
# tarfile copies file contents in 16 KiB pieces by default; 1 MiB pieces cut
# the Python overhead per byte (each piece is hashed and compressed) ~60-fold.
# (TarFile's ``copybufsize`` argument exists since Python 3.8, undocumented.)
_COPY_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class LayerBlob:
    """A layer written to disk.

    Attributes:
        digest: ``sha256:<hex>`` of the compressed blob.
        diff_id: ``sha256:<hex>`` of the uncompressed tar.
        size: compressed size in bytes.
        path: where the blob is.
    """

    digest: str
    diff_id: str
    size: int
    path: Path


class _Hashing(io.RawIOBase):
    """A write-only stream that hashes and counts what passes to ``sink``."""

    def __init__(self, sink: BinaryIO | None) -> None:
        super().__init__()
        self.sink = sink
        self.sha = hashlib.sha256()
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(data)
        self.sha.update(view)
        self.count += view.nbytes
        if self.sink is not None:
            self.sink.write(view)
        return view.nbytes


class _Tee(io.RawIOBase):
    """Hash the uncompressed tar on its way into the gzip stream."""

    def __init__(self, gz: gzip.GzipFile) -> None:
        super().__init__()
        self.gz = gz
        self.sha = hashlib.sha256()
        self.count = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.count  # tarfile asks once, when it starts

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(data)
        self.sha.update(view)
        self.gz.write(view)
        self.count += view.nbytes
        return view.nbytes


def write_layer(entries: Iterable[Entry], dest: Path) -> LayerBlob:
    """Write ``entries`` as a reproducible gzip tar at ``dest``.

    Raises:
        ValueError: two entries share a path.
    """
    items = sorted(entries, key=lambda e: e.path)
    paths = [e.path for e in items]
    if len(set(paths)) != len(paths):
        dupes = sorted({p for p in paths if paths.count(p) > 1})
        raise ValueError(f"duplicate layer entries: {dupes[:5]}")
    dirs = sorted({parent for p in paths for parent in _parents(p)} - set(paths))
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as raw:
        counter = _Hashing(raw)
        with gzip.GzipFile(fileobj=counter, mode="wb", mtime=0, filename="",
                           compresslevel=_COMPRESSLEVEL) as gz:
            tee = _Tee(gz)
            with tarfile.TarFile(fileobj=tee, mode="w", format=tarfile.PAX_FORMAT,
                                 copybufsize=_COPY_BYTES) as tar:
                for kind, obj in _merge(dirs, items):
                    if kind == "dir":
                        tar.addfile(_info(str(obj), tarfile.DIRTYPE, _DIR_MODE, 0))
                    else:
                        assert isinstance(obj, Entry)
                        _add(tar, obj)
    tmp.replace(dest)
    return LayerBlob(digest="sha256:" + counter.sha.hexdigest(),
                     diff_id="sha256:" + tee.sha.hexdigest(), size=counter.count, path=dest)


def _merge(dirs: list[str], items: list[Entry]) -> Iterable[tuple[str, object]]:
    """Directories and entries in one path order (a directory precedes its children)."""
    tagged: list[tuple[str, str, object]] = [(d, "dir", d) for d in dirs]
    tagged += [(e.path, "entry", e) for e in items]
    tagged.sort(key=lambda t: t[0])
    for _, kind, obj in tagged:
        yield kind, obj


def _add(tar: tarfile.TarFile, entry: Entry) -> None:
    if entry.link is not None:
        info = _info(entry.path, tarfile.SYMTYPE, 0o777, 0)
        info.linkname = entry.link
        tar.addfile(info)
        return
    if entry.data is not None:
        tar.addfile(_info(entry.path, tarfile.REGTYPE, entry.mode, len(entry.data)),
                    io.BytesIO(entry.data))
        return
    assert entry.source is not None
    with entry.source.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        # tarfile copies exactly ``size`` bytes and fails if the file shrank.
        tar.addfile(_info(entry.path, tarfile.REGTYPE, entry.mode, size), fh)


def _info(name: str, kind: bytes, mode: int, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _parents(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]
