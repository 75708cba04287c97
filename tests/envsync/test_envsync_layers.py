"""Reproducible tar layers, the --target layout mapping, and the layer cache."""

from __future__ import annotations

import csv
import gzip
import io
import os
import tarfile
from pathlib import Path

from _envsync_support import SITE, make_wheel, payload

from starburst.envsync.cache import LayerCache
from starburst.envsync.layers import BuildStats, build_layers
from starburst.envsync.layout import Entry, installed_distributions
from starburst.envsync.resolve import IndexOptions, Lock, install
from starburst.envsync.target import Target
from starburst.envsync.tarlayer import write_layer

TARGET = Target.of("x86_64")


def _entries(root: Path) -> list[Entry]:
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("A = 1\n")
    tool = root / "pkg" / "tool.sh"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o700)
    return [Entry(path="usr/local/lib/x/pkg/tool.sh", mode=0o755, source=tool),
            Entry(path="usr/local/lib/x/pkg/__init__.py", mode=0o644,
                  source=root / "pkg" / "__init__.py"),
            Entry(path="usr/local/lib/x/pkg/link", mode=0o777, link="__init__.py"),
            Entry(path="usr/local/lib/x/data.txt", mode=0o644, data=b"in memory\n")]


def test_same_entries_give_the_same_digest_whatever_the_file_metadata(tmp_path: Path) -> None:
    first = write_layer(_entries(tmp_path / "a"), tmp_path / "a.tar.gz")
    entries = _entries(tmp_path / "b")
    for entry in entries:
        if entry.source is not None:
            os.utime(entry.source, (1_000_000_000, 1_000_000_000))  # other mtimes
    second = write_layer(reversed(entries), tmp_path / "b.tar.gz")  # other order
    assert (first.digest, first.diff_id, first.size) == (second.digest, second.diff_id,
                                                         second.size)
    assert first.path.read_bytes() == second.path.read_bytes()


def test_tar_and_gzip_headers_are_normalised(tmp_path: Path) -> None:
    blob = write_layer(_entries(tmp_path / "src"), tmp_path / "layer.tar.gz")
    raw = blob.path.read_bytes()
    assert raw[:2] == b"\x1f\x8b"
    assert raw[3] & 0x08 == 0  # no FNAME: no file name in the gzip header
    assert raw[4:8] == b"\0\0\0\0"  # gzip mtime 0
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(raw))) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == ["usr", "usr/local", "usr/local/lib", "usr/local/lib/x",
                     "usr/local/lib/x/data.txt", "usr/local/lib/x/pkg",
                     "usr/local/lib/x/pkg/__init__.py", "usr/local/lib/x/pkg/link",
                     "usr/local/lib/x/pkg/tool.sh"]
    for m in members:
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "")
    modes = {m.name: m.mode for m in members}
    assert modes["usr"] == 0o755
    assert modes["usr/local/lib/x/pkg/tool.sh"] == 0o755
    assert modes["usr/local/lib/x/pkg/__init__.py"] == 0o644
    assert members[names.index("usr/local/lib/x/pkg/link")].linkname == "__init__.py"


def _lock(*pins: tuple[str, str]) -> Lock:
    return Lock(target=TARGET, pins=tuple(sorted(pins)), buildable=tuple(n for n, _ in pins))


def test_target_install_is_mapped_to_the_image_prefix(tmp_path: Path, wheels: Path) -> None:
    make_wheel(wheels, "tooly", "1.0", {"tooly/__init__.py": b"def main(): pass\n"},
               scripts={"tooly": "tooly:main"})
    site = tmp_path / "site"
    install(_lock(("tooly", "1.0")), site,
            index=IndexOptions(find_links=(str(wheels),), no_index=True))
    dists = installed_distributions(site, TARGET)
    entries = {e.path: e for e in dists["tooly"].entries}
    script = entries["usr/local/bin/tooly"]
    assert script.data is not None
    assert script.data.startswith(f"#!/usr/local/bin/python{TARGET.python}\n".encode())
    assert f"{SITE}/tooly/__init__.py" in entries
    assert not any(p.endswith(("uv_cache.json", "direct_url.json")) for p in entries)
    record = entries[f"{SITE}/tooly-1.0.dist-info/RECORD"].data
    assert record is not None
    rows = {row[0]: row for row in csv.reader(io.StringIO(record.decode()))}
    assert "../../../bin/tooly" in rows  # pip's path from site-packages to the script
    assert "bin/tooly" not in rows
    assert not any(p.endswith("uv_cache.json") for p in rows)
    assert rows["tooly-1.0.dist-info/RECORD"][1:] == ["", ""]


def test_big_distributions_get_own_layers_and_a_warm_rebuild_installs_nothing(
        tmp_path: Path, wheels: Path) -> None:
    make_wheel(wheels, "heavy", "1.0", {"heavy/blob.bin": payload("heavy", 150_000)})
    make_wheel(wheels, "light", "1.0", {"light.py": b""})
    make_wheel(wheels, "tiny", "1.0", {"tiny.py": b""})
    lock = _lock(("heavy", "1.0"), ("light", "1.0"), ("tiny", "1.0"))
    index = IndexOptions(find_links=(str(wheels),), no_index=True)
    cache = LayerCache(tmp_path / "cache")
    stats = BuildStats()
    layers = build_layers(lock, cache=cache, index=index, threshold=100_000, stats=stats)
    assert [x.name for x in layers] == ["heavy==1.0", "2 packages"]
    assert layers[1].members == ("light==1.0", "tiny==1.0")
    assert stats.layers_built == 2
    assert sorted(stats.installed) == ["heavy", "light", "tiny"]
    warm = BuildStats()
    again = build_layers(lock, cache=cache, index=index, threshold=100_000, stats=warm)
    assert [x.blob for x in again] == [x.blob for x in layers]
    assert all(x.cached for x in again)
    assert warm.installed == []  # sizes and layers came from the cache
    assert warm.install_s == 0.0
    # A new small package: only the shared layer is rebuilt, only small ones installed.
    make_wheel(wheels, "tiny", "1.1", {"tiny.py": b"V = 1\n"})
    changed = BuildStats()
    newer = build_layers(_lock(("heavy", "1.0"), ("light", "1.0"), ("tiny", "1.1")),
                         cache=cache, index=index, threshold=100_000, stats=changed)
    assert newer[0].blob == layers[0].blob
    assert newer[1].blob.digest != layers[1].blob.digest
    assert sorted(changed.installed) == ["light", "tiny"]
