"""Map a ``uv pip install --target`` directory onto the image's file system.

``--target`` installs everything under one directory: packages at its
top, console scripts in ``bin/`` with the *laptop's* interpreter in their
``#!`` line, and, for packages installed from a local path, a
``uv_cache.json`` holding a timestamp. This module turns that tree into
the entries of a normal installation in the base image's prefix:

* packages go to the base image's site-packages (``.pth`` files work);
* ``bin/`` goes to ``usr/local/bin`` with ``#!/usr/local/bin/python3.X``;
* uv's cache bookkeeping and ``direct_url.json`` files naming laptop
  paths are dropped, and each ``RECORD`` is rewritten to match, so the
  same package always gives the same bytes and ``pip`` inside the
  container sees a consistent install.

Nothing is modified on disk: uv may have hard-linked these files from its
cache, so rewritten contents are held in memory.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import stat
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

from .snapshot import canonical_name
from .target import Target

__all__ = ["Entry", "InstalledDistribution", "installed_distributions"]

# uv writes these into --target installs; they hold uv state, not package files.
_UV_FILES = frozenset({"uv_cache.json"})


@dataclass(frozen=True, slots=True)
class Entry:
    """One file (or symlink) of a layer.

    Attributes:
        path: path in the image without a leading slash.
        mode: permission bits, normalised to 0o644 or 0o755.
        source: file to read the content from, or None when ``data`` holds it.
        data: content held in memory (rewritten files).
        link: symlink target, for symlinks.
    """

    path: str
    mode: int
    source: Path | None = None
    data: bytes | None = None
    link: str | None = None

    @property
    def size(self) -> int:
        """Content size in bytes (0 for symlinks)."""
        if self.link is not None:
            return 0
        if self.data is not None:
            return len(self.data)
        assert self.source is not None
        return self.source.stat().st_size


@dataclass(frozen=True, slots=True)
class InstalledDistribution:
    """A distribution installed in a ``--target`` directory, as image entries.

    Attributes:
        name: canonical name.
        version: installed version.
        entries: its files in the image.
        size: installed size in bytes (what the layer split threshold compares).
    """

    name: str
    version: str
    entries: tuple[Entry, ...]
    size: int


def installed_distributions(root: Path, target: Target) -> dict[str, InstalledDistribution]:
    """Every distribution installed under ``root``, by canonical name."""
    out: dict[str, InstalledDistribution] = {}
    for info in sorted(root.glob("*.dist-info")):
        dist = _distribution(root, info, target)
        out[dist.name] = dist
    return out


def _distribution(root: Path, info: Path, target: Target) -> InstalledDistribution:
    meta = HeaderParser().parsestr((info / "METADATA").read_text(encoding="utf-8"))
    name, version = canonical_name(meta["Name"]), str(meta["Version"])
    rows = _read_record(info / "RECORD")
    entries: list[Entry] = []
    record: list[tuple[str, str, str]] = []
    record_rel = f"{info.name}/RECORD"
    for rel, old_digest, old_size in rows:
        if rel == record_rel or (rel.startswith(info.name + "/")
                                 and _laptop_state(root / rel)):
            continue
        entry = _entry(root, rel, target)
        if entry is None:
            continue
        digest, size = old_digest, old_size
        if entry.data is not None:  # rewritten: its RECORD line must change too
            digest, size = _record_hash(entry.data), str(len(entry.data))
        record.append((_site_relative(entry.path, target), digest, size))
        entries.append(entry)
    record.sort()
    record.append((record_rel, "", ""))
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(record)
    entries.append(Entry(path=f"{target.site_packages}/{record_rel}", mode=0o644,
                         data=buf.getvalue().encode()))
    entries.sort(key=lambda e: e.path)
    return InstalledDistribution(name=name, version=version, entries=tuple(entries),
                                 size=sum(e.size for e in entries))


def _laptop_state(path: Path) -> bool:
    """Whether a dist-info file records the laptop, not the package.

    uv's ``uv_cache.json`` holds a timestamp; ``direct_url.json`` of a wheel
    installed from a local file names a temporary path. Both would make two
    builds of the same package differ and mean nothing in a container.
    """
    if path.name in _UV_FILES:
        return True
    if path.name != "direct_url.json":
        return False
    try:
        return str(json.loads(path.read_text(encoding="utf-8")).get("url", "")).startswith(
            "file:")
    except (OSError, ValueError, AttributeError):
        return False


def _read_record(path: Path) -> list[tuple[str, str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return [(row[0], row[1] if len(row) > 1 else "", row[2] if len(row) > 2 else "")
                for row in csv.reader(fh) if row]


def _entry(root: Path, rel: str, target: Target) -> Entry | None:
    """The image entry of ``root/rel``, or None if it is missing or escapes ``root``."""
    parts = Path(rel).parts
    if not parts or ".." in parts or Path(rel).is_absolute():
        return None
    path = root / rel
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    in_bin = parts[0] == "bin" and len(parts) > 1
    dest = ("usr/local/bin/" + "/".join(parts[1:]) if in_bin
            else f"{target.site_packages}/{Path(rel).as_posix()}")
    if stat.S_ISLNK(st.st_mode):
        link = os.readlink(path)
        if not os.path.isabs(link):
            return Entry(path=dest, mode=0o777, link=link)
        st = path.stat()  # an absolute link points into the laptop: copy the content
    mode = 0o755 if st.st_mode & 0o111 else 0o644
    if in_bin:
        data = _rewrite_shebang(path.read_bytes(), target)
        if data is not None:
            return Entry(path=dest, mode=mode, data=data)
    return Entry(path=dest, mode=mode, source=path)


def _rewrite_shebang(data: bytes, target: Target) -> bytes | None:
    """The script with the image's interpreter in its ``#!`` line; None if not a script."""
    if not data.startswith(b"#!"):
        return None
    first, sep, rest = data.partition(b"\n")
    if b"python" not in first:
        return None
    return f"#!/usr/local/bin/python{target.python}".encode() + sep + rest


def _site_relative(image_path: str, target: Target) -> str:
    prefix = target.site_packages + "/"
    if image_path.startswith(prefix):
        return image_path[len(prefix):]
    # From usr/local/lib/python3.X/site-packages up to usr/local: three levels.
    return "../../../" + image_path.removeprefix("usr/local/")


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()
