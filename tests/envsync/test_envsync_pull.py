"""Unpacking images: layer order, OCI whiteouts, prefix filter, unsafe paths."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest
from _envsync_support import SITE

from starburst.envsync.errors import EnvironmentBuildError
from starburst.envsync.oci import (
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    canonical_json,
    sha256_digest,
)
from starburst.envsync.pull import extract_image, split_reference
from starburst.envsync.registry import Registry


def _layer(files: dict[str, bytes | None]) -> bytes:
    """A layer; a None value makes a directory."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def _push(reg: Registry, repo: str, layers: list[bytes]) -> None:
    config = canonical_json({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": []},
                             "config": {"Labels": {"dev.starburst.site-packages": f"/{SITE}"}}})
    reg.push_blob(repo, sha256_digest(config), config)
    for blob in layers:
        reg.push_blob(repo, sha256_digest(blob), blob)
    manifest = canonical_json({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": sha256_digest(b), "size": len(b)}
                   for b in layers]})
    reg.put_manifest(repo, "v1", manifest, OCI_MANIFEST)


def test_layers_apply_in_order_with_whiteouts(source: Registry, repo: str,
                                              tmp_path: Path) -> None:
    lower = _layer({"a": None, "a/x": b"x", "a/y": b"y", "b": None, "b/keep": b"k",
                    "b/other": b"o", f"{SITE}/old.py": b"1"})
    upper = _layer({"a/.wh..wh..opq": b"", "a/new": b"n", "b/.wh.keep": b"",
                    "c/file": b"c", f"{SITE}/old.py": b"2"})
    _push(source, repo, [lower, upper])
    root = tmp_path / "root"
    site = extract_image(source, f"{source.name}/{repo}:v1", root)
    assert site == root / SITE
    assert sorted(p.name for p in (root / "a").iterdir()) == ["new"]
    assert sorted(p.name for p in (root / "b").iterdir()) == ["other"]
    assert (root / "c" / "file").read_bytes() == b"c"
    assert (site / "old.py").read_bytes() == b"2"


def test_prefix_filter_extracts_only_site_packages(source: Registry, repo: str,
                                                   tmp_path: Path) -> None:
    _push(source, repo, [_layer({"etc/os-release": b"x", f"{SITE}/mod.py": b"m"})])
    site = extract_image(source, f"{repo}:v1", tmp_path / "root", only="usr/local/lib")
    assert (site / "mod.py").read_bytes() == b"m"
    assert not (tmp_path / "root" / "etc").exists()


def test_a_layer_escaping_the_destination_is_refused(source: Registry, repo: str,
                                                     tmp_path: Path) -> None:
    _push(source, repo, [_layer({"../../evil": b"x"})])
    with pytest.raises(EnvironmentBuildError, match="unsafe"):
        extract_image(source, f"{repo}:v1", tmp_path / "root")
    assert not (tmp_path / "evil").exists()


def test_split_reference() -> None:
    reg = Registry("http://127.0.0.1:5000", name="1.dkr.ecr.us-east-1.amazonaws.com")
    with reg:
        assert split_reference(reg, "repo:tag") == ("repo", "tag")
        assert split_reference(reg, "a/b@sha256:" + "0" * 64) == ("a/b", "sha256:" + "0" * 64)
        assert split_reference(reg, "127.0.0.1:5000/a/b:t") == ("a/b", "t")
        assert split_reference(reg, "1.dkr.ecr.us-east-1.amazonaws.com/w:env-1") == ("w",
                                                                                    "env-1")
        assert split_reference(reg, "plain") == ("plain", "latest")
