"""starburst's own layer: from a build of the checkout, or from installed files, alike."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from _envsync_support import SITE, tar_names

from starburst._version import __version__
from starburst.envsync._uv import run_uv
from starburst.envsync.cache import LayerCache
from starburst.envsync.selfwheel import self_identity, self_layer
from starburst.envsync.snapshot import SELF_DISTRIBUTION
from starburst.envsync.target import Target

ROOT = Path(__file__).resolve().parents[2]
TARGET = Target.of("x86_64")


def test_editable_checkout_is_identified_by_its_sources() -> None:
    me = self_identity()
    assert me.source == ROOT  # the test environment installs starburst editable
    assert me.version == __version__
    assert self_identity().identity == me.identity  # stable while nothing is edited


def test_installed_files_give_the_same_layer_as_a_build_of_the_checkout(
        tmp_path: Path) -> None:
    built = run_uv(["build", "--wheel", "--out-dir", str(tmp_path / "wheel"), str(ROOT)])
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "wheel").glob("*.whl"))
    installed = run_uv(["pip", "install", "--target", str(tmp_path / "site"), "--no-deps",
                        "--no-index", "--python-platform", TARGET.uv_platform,
                        "--python-version", TARGET.python, str(wheel)])
    assert installed.returncode == 0, installed.stderr
    dist = next(d for d in importlib.metadata.distributions(path=[str(tmp_path / "site")])
                if d.metadata["Name"] == SELF_DISTRIBUTION)
    me = self_identity(dist)
    assert me.source is None  # not editable: its files are copied, not rebuilt
    from_files = self_layer(LayerCache(tmp_path / "c1"), TARGET, installed=me)
    from_checkout = self_layer(LayerCache(tmp_path / "c2"), TARGET)
    assert from_files.blob.digest == from_checkout.blob.digest
    names = tar_names(from_files.blob.path)
    assert f"{SITE}/starburst/worker/__main__.py" in names
    assert not any(n.endswith((".pyc", "direct_url.json", "uv_cache.json")) for n in names)
    again = self_layer(LayerCache(tmp_path / "c1"), TARGET, installed=me)
    assert again.cached
    assert again.blob == from_files.blob
