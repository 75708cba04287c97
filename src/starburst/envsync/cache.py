"""The local cache of environment sync: built layers, installed sizes, locks.

Layers are expensive (install, tar, gzip) and deterministic, so each is
kept under a key naming exactly what went into it; a rebuild that finds
every key is free. Layout::

    <cache>/layers/<key>.tar.gz    the compressed blob
    <cache>/layers/<key>.json      its digest, diff_id and size
    <cache>/sizes/<key>.json       installed size of one distribution
    <cache>/locks/<key>.json       resolved locks (see resolve.py)

The default root is ``platformdirs.user_cache_dir("starburst")``,
``STARBURST_CACHE_DIR`` overrides it. Writes go to a temporary file and
are renamed into place, so concurrent builds never see half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import platformdirs

from .target import Target
from .tarlayer import LayerBlob

__all__ = ["LAYOUT_VERSION", "LayerCache", "cache_key", "default_cache_dir"]

#: Bump when the content of a layer built from the same inputs would change
#: (tar layout, path mapping, RECORD rewriting), so stale blobs are not reused.
LAYOUT_VERSION = 1


def default_cache_dir() -> Path:
    """``STARBURST_CACHE_DIR``, or the platform's user cache directory for starburst."""
    env = os.environ.get("STARBURST_CACHE_DIR")
    return Path(env) if env else Path(platformdirs.user_cache_dir("starburst"))


def cache_key(*parts: object) -> str:
    """sha256 of the JSON of ``parts`` (with the layout version): a file-name-safe key."""
    data = json.dumps([LAYOUT_VERSION, *parts], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(data.encode()).hexdigest()


class LayerCache:
    """Built layers and measured sizes, on local disk."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root if root is not None else default_cache_dir()
        self.layers = self.root / "layers"
        self.sizes = self.root / "sizes"

    def scratch(self) -> Path:
        """A fresh path inside the cache directory for a layer being written.

        On the cache's file system, so :meth:`put` can rename it into place.
        """
        self.layers.mkdir(parents=True, exist_ok=True)
        return self.layers / f".build-{uuid.uuid4().hex}.tar.gz"

    def get(self, key: str) -> LayerBlob | None:
        """The cached layer ``key``, or None if absent or incomplete."""
        meta, blob = self.layers / f"{key}.json", self.layers / f"{key}.tar.gz"
        try:
            data = json.loads(meta.read_text(encoding="utf-8"))
            size = blob.stat().st_size
        except (OSError, ValueError):
            return None
        if size != data.get("size"):
            return None
        return LayerBlob(digest=data["digest"], diff_id=data["diff_id"], size=size, path=blob)

    def put(self, key: str, blob: LayerBlob) -> LayerBlob:
        """Move a freshly written blob into the cache under ``key``; return its new place."""
        dest = self.layers / f"{key}.tar.gz"
        blob.path.replace(dest)
        _write_json(self.layers / f"{key}.json",
                    {"digest": blob.digest, "diff_id": blob.diff_id, "size": blob.size})
        return LayerBlob(digest=blob.digest, diff_id=blob.diff_id, size=blob.size, path=dest)

    def installed_size(self, name: str, version: str, target: Target) -> int | None:
        """The recorded installed size of one distribution, or None if never measured."""
        try:
            data = json.loads(self._size_file(name, version, target).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        size = data.get("size")
        return size if isinstance(size, int) else None

    def record_size(self, name: str, version: str, target: Target, size: int) -> None:
        """Remember the installed size of one distribution."""
        _write_json(self._size_file(name, version, target), {"size": size})

    def _size_file(self, name: str, version: str, target: Target) -> Path:
        return self.sizes / f"{cache_key('size', name, version, target.key)}.json"


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
    tmp.replace(path)
