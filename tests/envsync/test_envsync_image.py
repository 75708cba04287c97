"""End to end: snapshot -> lock -> layers -> image pushed to an emulated ECR.

The target registry is a real CNCF distribution registry behind ECR-style
Basic auth (tokens from moto); the base image is a synthetic multi-platform
image in a second, anonymous registry; packages are wheels built here.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _envsync_support import (
    PYTHON,
    SITE,
    Traffic,
    compiled_sdist,
    make_wheel,
    payload,
    push_synthetic_base,
)

from starburst._version import __version__
from starburst.envsync.base import resolve_base
from starburst.envsync.errors import EnvironmentBuildError, UnsupportedPackageError
from starburst.envsync.image import BuildReport, ensure_image
from starburst.envsync.oci import OCI_MANIFEST, parse_reference
from starburst.envsync.pull import extract_image
from starburst.envsync.registry import Registry
from starburst.envsync.resolve import IndexOptions
from starburst.envsync.snapshot import Dependency, Distribution, Snapshot
from starburst.envsync.target import Target

# Packages of at least this installed size get their own layer in these tests.
THRESHOLD = 200 * 1024


def _snapshot(*dists: Distribution) -> Snapshot:
    return Snapshot(target=Target.of("x86_64"), distributions=tuple(dists))


def _build(registry: Registry, repo: str, snapshot: Snapshot, *, wheels: Path, cache: Path,
           source: Registry, base_image: str) -> BuildReport:
    return ensure_image(registry, repo, snapshot=snapshot, base_image=base_image,
                        base_registry=source, cache_dir=cache, threshold=THRESHOLD,
                        index=IndexOptions(find_links=(str(wheels),), no_index=True))


def _wheelhouse(wheels: Path, *, big_version: str = "1.0", small_version: str = "1.0") -> None:
    make_wheel(wheels, "bigone", big_version,
               {"bigone/__init__.py": f"VERSION = {big_version!r}\n".encode(),
                "bigone/data.bin": payload(f"bigone-{big_version}", 300 * 1024)})
    make_wheel(wheels, "bigtwo", "2.0",
               {"bigtwo/__init__.py": b"", "bigtwo/data.bin": payload("bigtwo", 250 * 1024)})
    make_wheel(wheels, "smallone", small_version,
               {"smallone.py": f"VERSION = {small_version!r}\n".encode()},
               requires=("bigone",))
    make_wheel(wheels, "smalltwo", "0.3", {"smalltwo.py": b"X = 2\n"},
               scripts={"smalltwo-cli": "smalltwo:main"})


def _dists(big_version: str = "1.0", small_version: str = "1.0") -> Snapshot:
    return _snapshot(Distribution("bigone", big_version, pure=True),
                     Distribution("bigtwo", "2.0", pure=True),
                     Distribution("smallone", small_version, pure=True,
                                  requires=(Dependency("bigone", False),)),
                     Distribution("smalltwo", "0.3", pure=True))


def _layer_digests(report: BuildReport) -> dict[str, str]:
    return {layer.name: layer.blob.digest for layer in report.layers}


@pytest.mark.slow
def test_same_environment_gives_identical_digests(
        registry: Registry, source: Registry, base_image: str, wheels: Path, tmp_path: Path,
        repo: str) -> None:
    _wheelhouse(wheels)
    reports = []
    for i in range(2):
        # A fresh cache each time (starburst's own layer rebuilt too): nothing reused.
        cache = tmp_path / f"cache{i}"
        reports.append(_build(registry, f"{repo}-{i}", _dists(), wheels=wheels, cache=cache,
                              source=source, base_image=base_image))
    first, second = reports
    assert first.built
    assert second.built
    assert first.image.tag == second.image.tag
    assert first.image.digest == second.image.digest
    assert _layer_digests(first) == _layer_digests(second)
    assert [layer.cached for layer in second.layers] == [False] * len(second.layers)
    names = [layer.name for layer in first.layers]
    assert names == ["bigone==1.0", "bigtwo==2.0", "2 packages", f"starburst-cloud=={__version__}"]


@pytest.mark.slow
def test_changing_one_package_changes_only_its_layer(
        registry: Registry, source: Registry, base_image: str, wheels: Path, cache_dir: Path,
        repo: str, traffic: Traffic) -> None:
    _wheelhouse(wheels)
    _wheelhouse(wheels, big_version="1.1", small_version="1.1")
    old = _build(registry, repo, _dists(), wheels=wheels, cache=cache_dir, source=source,
                 base_image=base_image)
    big = _build(registry, repo, _dists(big_version="1.1"), wheels=wheels, cache=cache_dir,
                 source=source, base_image=base_image)
    before, after = _layer_digests(old), _layer_digests(big)
    assert "bigone==1.0" in before
    assert "bigone==1.1" in after
    assert before["bigone==1.0"] != after["bigone==1.1"]
    for name in ("bigtwo==2.0", "2 packages"):
        assert before[name] == after[name]
    assert old.image.tag != big.image.tag
    # Only the new layer went up (plus config and manifest, a few KiB).
    new_layer = next(x for x in big.layers if x.name == "bigone==1.1")
    assert new_layer.blob.size <= big.bytes_uploaded < new_layer.blob.size + 16 * 1024
    small = _build(registry, repo, _dists(small_version="1.1"), wheels=wheels,
                   cache=cache_dir, source=source, base_image=base_image)
    changed = {k for k, v in _layer_digests(small).items() if before.get(k) != v}
    assert changed == {"2 packages"}


@pytest.mark.slow
def test_warm_check_sends_nothing_and_is_fast(
        registry: Registry, source: Registry, base_image: str, wheels: Path, cache_dir: Path,
        repo: str, traffic: Traffic) -> None:
    _wheelhouse(wheels)
    sent: list[int] = []
    first = ensure_image(registry, repo, snapshot=_dists(), base_image=base_image,
                         base_registry=source, cache_dir=cache_dir, threshold=THRESHOLD,
                         index=IndexOptions(find_links=(str(wheels),), no_index=True),
                         progress=sent.append)
    assert first.built
    assert sum(sent) > 0  # the progress callback saw the blob bytes
    traffic.requests = traffic.body_bytes = 0
    sent.clear()
    start = time.perf_counter()
    warm = ensure_image(registry, repo, snapshot=_dists(), base_image=base_image,
                        base_registry=source, cache_dir=cache_dir, threshold=THRESHOLD,
                        index=IndexOptions(find_links=(str(wheels),), no_index=True),
                        progress=sent.append)
    elapsed = time.perf_counter() - start
    assert not warm.built
    assert warm.image == first.image
    assert warm.bytes_uploaded == 0
    assert sum(sent) == 0
    assert traffic.body_bytes == 0
    detail = f"{traffic.requests} requests, {elapsed:.3f} s, phases {warm.timings}"
    assert traffic.requests == 1, detail  # one manifest HEAD
    assert elapsed < 1.0, detail


@pytest.mark.slow
def test_pushed_image_is_valid_and_its_packages_import(
        registry: Registry, source: Registry, base_image: str, wheels: Path, cache_dir: Path,
        repo: str, ecr_server: object, ecr_password: str, tmp_path: Path) -> None:
    make_wheel(wheels, "onlyinimage", "0.1", {
        "onlyinimage/__init__.py": b"VALUE = 42\n",
        # A .pth file: it only works because layers sit in the real site-packages.
        "onlyinimage_extra.pth": b"onlyinimage_extra\n",
        "onlyinimage_extra/pthmodule.py": b"FROM_PTH = True\n",
    }, scripts={"onlyinimage-cli": "onlyinimage:main"})
    snap = _snapshot(Distribution("onlyinimage", "0.1", pure=True))
    report = _build(registry, repo, snap, wheels=wheels, cache=cache_dir, source=source,
                    base_image=base_image)
    manifest = registry.get_manifest(repo, report.image.tag)
    assert manifest.media_type == OCI_MANIFEST
    assert manifest.digest == report.image.digest
    body = manifest.json()
    assert len(body["layers"]) == 1 + len(report.layers)  # base layer + ours
    config = json.loads(registry.get_blob(repo, body["config"]["digest"]))
    assert config["config"]["Entrypoint"] == ["python", "-m", "starburst.worker"]
    assert "Cmd" not in config["config"]
    assert f"STARBURST_ENV_HASH={report.image.env_hash}" in config["config"]["Env"]
    assert len(config["rootfs"]["diff_ids"]) == len(body["layers"])

    site = extract_image(registry, f"{repo}:{report.image.tag}", tmp_path / "rootfs")
    assert site == tmp_path / "rootfs" / SITE
    assert (site / "BASE_IMAGE.txt").is_file()  # from the synthetic base
    script = (tmp_path / "rootfs/usr/local/bin/onlyinimage-cli").read_text()
    assert script.startswith(f"#!/usr/local/bin/python{PYTHON}\n")
    # starburst's own files are there too (its dependencies are not in this snapshot).
    assert (site / "starburst" / "worker" / "__main__.py").is_file()
    probe = ("import site, sys; site.addsitedir(sys.argv[1]); import onlyinimage, pthmodule; "
             "print(onlyinimage.VALUE, pthmodule.FROM_PTH, onlyinimage.__file__.startswith("
             "sys.argv[1]))")
    # -S: without the host's site-packages, only the image's can provide these.
    out = subprocess.run([sys.executable, "-S", "-c", probe, str(site)], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    assert out.split() == ["42", "True", "True"]

    skopeo = shutil.which("skopeo")
    if skopeo is None:
        pytest.skip("skopeo is not installed (apt-get install skopeo)")
    host = registry.url.removeprefix("http://")
    ref = f"docker://{host}/{repo}:{report.image.tag}"
    creds = f"AWS:{ecr_password}"
    inspect = subprocess.run([skopeo, "inspect", "--tls-verify=false", "--creds", creds, ref],
                             capture_output=True, text=True, timeout=60, check=False)
    assert inspect.returncode == 0, inspect.stderr
    info = json.loads(inspect.stdout)
    assert info["Digest"] == report.image.digest
    assert info["Architecture"] == "amd64"
    assert info["Os"] == "linux"
    umoci = shutil.which("umoci")
    if umoci is None:
        pytest.skip("umoci is not installed (apt-get install umoci)")
    layout = tmp_path / "oci"
    copy = subprocess.run([skopeo, "copy", "--src-tls-verify=false", "--src-creds", creds,
                           ref, f"oci:{layout}:img"], capture_output=True, text=True,
                          timeout=120, check=False)
    assert copy.returncode == 0, copy.stderr
    bundle = tmp_path / "bundle"
    unpack = subprocess.run([umoci, "unpack", "--rootless", "--image", f"{layout}:img",
                             str(bundle)], capture_output=True, text=True, timeout=120,
                            check=False)
    assert unpack.returncode == 0, unpack.stderr
    assert (bundle / "rootfs" / SITE / "onlyinimage" / "__init__.py").read_text() == \
        "VALUE = 42\n"


def test_compiled_sdist_only_package_is_a_clear_error(
        registry: Registry, source: Registry, base_image: str, wheels: Path, cache_dir: Path,
        repo: str, traffic: Traffic) -> None:
    compiled_sdist(wheels, "fastmath", "2.3")
    # Installed on the laptop from a wheel built there: compiled, for macOS.
    snap = _snapshot(Distribution("fastmath", "2.3", pure=False))
    with pytest.raises(UnsupportedPackageError) as info:
        _build(registry, repo, snap, wheels=wheels, cache=cache_dir, source=source,
               base_image=base_image)
    err = info.value
    assert (err.package, err.version, err.platform) == ("fastmath", "2.3",
                                                        "x86_64-manylinux_2_28")
    message = str(err)
    assert "fastmath==2.3" in message
    assert "x86_64-manylinux_2_28" in message
    assert "compiler" in message
    assert "base_image=" in message
    assert "platform=" in message
    assert traffic.body_bytes == 0  # it failed before anything was pushed


def test_a_failing_install_sends_nothing(
        registry: Registry, source: Registry, base_image: str, wheels: Path, cache_dir: Path,
        repo: str, traffic: Traffic) -> None:
    # 'top' resolves, but its Linux-side dependency exists only as source code.
    compiled_sdist(wheels, "cdep", "1.0")
    make_wheel(wheels, "top", "1.0", {"top.py": b""}, requires=("cdep",))
    with pytest.raises(UnsupportedPackageError) as info:
        _build(registry, repo, _snapshot(Distribution("top", "1.0", pure=True)),
               wheels=wheels, cache=cache_dir, source=source, base_image=base_image)
    assert info.value.package == "cdep"
    assert traffic.body_bytes == 0
    assert not registry.has_blob(repo, next(iter(
        resolve_base(source, parse_reference(base_image), Target.of("x86_64")).layers)).digest)


EXACT = platform.python_version()


@pytest.mark.skipif(sys.version_info.micro == 0,
                    reason="on an x.y.0 interpreter the minor and the exact version agree")
@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_an_image_with_a_pin_that_needs_this_patch_release_is_built_for_it(
        registry: Registry, source: Registry, base_image: str, wheels: Path, cache_dir: Path,
        repo: str, tmp_path: Path, arch: str) -> None:
    # Defect 11: a pin requiring Python >= 3.11.5 failed to resolve for "3.11".
    make_wheel(wheels, "needspatch", "1.0", {"needspatch.py": b"X = 1\n"},
               requires_python=f">={EXACT}")
    snap = Snapshot(target=Target.of(arch),
                    distributions=(Distribution("needspatch", "1.0", pure=True),))
    report = ensure_image(registry, repo, snapshot=snap, base_image=base_image,
                          base_registry=source, cache_dir=cache_dir, threshold=THRESHOLD,
                          index=IndexOptions(find_links=(str(wheels),), no_index=True))
    config = json.loads(registry.get_blob(
        repo, registry.get_manifest(repo, report.image.tag).json()["config"]["digest"]))
    assert config["config"]["Labels"]["dev.starburst.python-version"] == EXACT
    assert f"PYTHON_VERSION={EXACT}" in config["config"]["Env"]  # the base's own Python
    site = extract_image(registry, f"{repo}:{report.image.tag}", tmp_path / "rootfs")
    assert (site / "needspatch.py").is_file()


def test_a_base_image_with_another_python_release_is_refused_at_once(
        registry: Registry, source: Registry, wheels: Path, cache_dir: Path, repo: str,
        traffic: Traffic) -> None:
    other = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro + 1}"
    push_synthetic_base(source, "library/otherpython", python=other)
    base = f"{source.url.removeprefix('http://')}/library/otherpython:{other}-slim"
    make_wheel(wheels, "app", "1.0", {"app.py": b""})
    with pytest.raises(EnvironmentBuildError) as info:
        _build(registry, repo, _snapshot(Distribution("app", "1.0", pure=True)),
               wheels=wheels, cache=cache_dir, source=source, base_image=base)
    message = str(info.value)
    assert f"has Python {other}" in message
    assert f"Python {EXACT}" in message
    assert "base_image=" in message
    assert traffic.body_bytes == 0  # refused before anything was pushed
