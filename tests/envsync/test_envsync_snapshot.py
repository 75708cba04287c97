"""Snapshots: exact versions, pure vs compiled, local installs kept apart."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest

from starburst.envsync.snapshot import Dependency, canonical_name, take_snapshot


def _dist(site: Path, name: str, version: str, *, tag: str = "py3-none-any",
          requires: tuple[str, ...] = (), direct_url: dict[str, object] | None = None,
          files: dict[str, str] | None = None) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    (info / "METADATA").write_text(meta)
    (info / "WHEEL").write_text(f"Wheel-Version: 1.0\nTag: {tag}\n")
    record = [f"{info.name}/METADATA,,", f"{info.name}/WHEEL,,"]
    for rel, text in (files or {}).items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text)
        record.append(f"{rel},,")
    if direct_url is not None:
        (info / "direct_url.json").write_text(json.dumps(direct_url))
    (info / "RECORD").write_text("\n".join(record) + "\n")


def test_running_environment_has_exact_versions_and_leaves_starburst_out() -> None:
    snap = take_snapshot()
    by_name = {d.name: d for d in snap.distributions}
    assert by_name["httpx"].version == importlib.metadata.version("httpx")
    assert by_name["httpx"].pure
    assert not by_name["pyyaml"].pure  # a compiled extension wheel
    assert "starburst-cloud" not in by_name
    assert all(d.name != "starburst-cloud" for d in snap.local)
    assert [d.name for d in snap.distributions] == sorted(by_name)


def test_local_installs_are_separated_with_their_code(tmp_path: Path) -> None:
    site, proj = tmp_path / "site", tmp_path / "proj"
    (proj / "src" / "myproj").mkdir(parents=True)
    (proj / "src" / "myproj" / "__init__.py").write_text("")
    _dist(site, "Alpha_Pkg", "1.0", requires=("beta>=1", 'gamma; extra == "x"', "beta"))
    _dist(site, "beta", "2.0", tag="cp311-cp311-manylinux_2_17_x86_64")
    _dist(site, "myproj", "0.1",
          direct_url={"url": proj.as_uri(), "dir_info": {"editable": True}},
          files={"_myproj.pth": f"{proj / 'src'}\n"})
    _dist(site, "locallib", "3.0",
          direct_url={"url": "file:///wheels/locallib-3.0-py3-none-any.whl",
                      "archive_info": {}},
          files={"locallib/__init__.py": "", "locallib/sub/mod.py": ""})
    _dist(site, "fromgit", "0.0.1",
          direct_url={"url": "https://example.invalid/x.git",
                      "vcs_info": {"vcs": "git", "commit_id": "abc"}},
          files={"fromgit.py": ""})
    _dist(site, "starburst-cloud", "9.9")
    _dist(site, "macstuff", "1.0")

    snap = take_snapshot("arm64", exclude=["MacStuff"], path=[str(site)])
    assert snap.target.arch == "arm64"
    assert [(d.name, d.version, d.pure) for d in snap.distributions] == [
        ("alpha-pkg", "1.0", True), ("beta", "2.0", False)]
    assert snap.distributions[0].requires == (Dependency("beta", False),
                                              Dependency("gamma", True))
    assert snap.excluded == ("macstuff",)
    local = {d.name: d for d in snap.local}
    assert sorted(local) == ["fromgit", "locallib", "myproj"]
    assert local["myproj"].kind == "editable"
    assert local["myproj"].root == proj
    assert local["myproj"].modules == (("myproj", str(proj / "src" / "myproj")),)
    assert local["locallib"].kind == "archive"
    assert local["locallib"].modules == (("locallib", str(site / "locallib")),)
    assert local["fromgit"].kind == "vcs"
    assert local["fromgit"].modules == (("fromgit", str(site / "fromgit.py")),)
    assert snap.constraints() == "alpha-pkg==1.0\nbeta==2.0\n"
    assert snap.requirements() == "alpha-pkg\nbeta\n"


def test_snapshot_key_changes_with_any_version(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _dist(site, "one", "1.0")
    key = take_snapshot(path=[str(site)]).key()
    assert take_snapshot(path=[str(site)]).key() == key
    (site / "one-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: one\nVersion: 1.0.1\n")
    assert take_snapshot(path=[str(site)]).key() != key
    assert take_snapshot("arm64", path=[str(site)]).key() != key


@pytest.mark.parametrize(("raw", "canonical"), [
    ("Scikit_Learn", "scikit-learn"), ("zope.interface", "zope-interface"),
    ("A--B__c", "a-b-c")])
def test_canonical_name(raw: str, canonical: str) -> None:
    assert canonical_name(raw) == canonical
