"""`starburst env build | show | prune` against the emulated AWS.

The emulated ECR is a distribution registry (``docker-registry``) behind
ECR-style auth; the base image is the emulator's synthetic
``python:3.X-slim``. The snapshot is replaced by an empty one plus one
extra package built here as a wheel and installed offline, as in
test_envsync_e2e.py: the test environment's own packages are not
installable offline.
"""

from __future__ import annotations

import base64
import hashlib
import json
import platform
import shutil
import sys
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest
from _support import make_wheel
from click.testing import CliRunner

from starburst.cli import main
from starburst.envsync import snapshot as snapshot_module
from starburst.envsync.ecrauth import ecr_registry
from starburst.envsync.snapshot import Distribution, Snapshot
from starburst.envsync.target import Target
from starburst.testing.registry import registry_binary

needs_registry = pytest.mark.skipif(
    registry_binary() is None,
    reason="the distribution registry is not installed (apt-get install docker-registry)")


def _make_wheel(directory: Path, name: str, version: str) -> None:
    def record_hash(data: bytes) -> str:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        return "sha256=" + digest.decode()

    info = f"{name}-{version}.dist-info"
    content = {f"{name}.py": f"VERSION = {version!r}\n".encode(),
               f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\n"
                                   f"Version: {version}\n".encode(),
               f"{info}/WHEEL": (b"Wheel-Version: 1.0\nGenerator: starburst-tests\n"
                                 b"Root-Is-Purelib: true\nTag: py3-none-any\n")}
    record = "".join(f"{p},{record_hash(b)},{len(b)}\n" for p, b in content.items())
    content[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    directory.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(directory / f"{name}-{version}-py3-none-any.whl", "w") as zf:
        for arcname, data in content.items():
            zf.writestr(arcname, data)


@pytest.fixture(scope="module")
def env_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One envsync cache for the module: starburst's own layer is built once."""
    return tmp_path_factory.mktemp("env-cli-cache")


@pytest.fixture
def pkg(tmp_path: Path) -> tuple[str, Path]:
    """A package only this test uses (versions 0.1 and 0.2), so its images are its own."""
    name = f"envcli_{uuid.uuid4().hex[:10]}"
    for version in ("0.1", "0.2"):
        _make_wheel(tmp_path / "wheels", name, version)
    return name, tmp_path / "wheels"


@pytest.fixture
def offline(aws: Any, env_cache: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """uv offline, no build record yet, a fresh repository, an empty interpreter snapshot.

    Returns the repository name.
    """
    monkeypatch.setenv("UV_OFFLINE", "1")
    monkeypatch.setenv("STARBURST_CACHE_DIR", str(env_cache))
    shutil.rmtree(env_cache / "env", ignore_errors=True)  # the build record, per test
    repository = f"envcli-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("STARBURST_ECR_REPOSITORY", repository)
    monkeypatch.setattr(snapshot_module, "take_snapshot",
                        lambda platform="x86_64", **_: Snapshot(target=Target.of(platform),
                                                                 distributions=()))
    return repository


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["env", *args], catch_exceptions=False)
    return result.exit_code, result.output


def _pin(pkg: tuple[str, Path], version: str) -> list[str]:
    return ["--package", f"{pkg[0]}=={version}", "--find-links", str(pkg[1]), "--no-index"]


def _build(pkg: tuple[str, Path], version: str = "0.1") -> dict[str, Any]:
    code, out = _invoke("build", *_pin(pkg, version), "--json")
    assert code == 0, out
    data: dict[str, Any] = json.loads(out)
    return data


def _show(pkg: tuple[str, Path], version: str = "0.1") -> dict[str, Any]:
    code, out = _invoke("show", *_pin(pkg, version), "--json")
    assert code == 0, out
    data: dict[str, Any] = json.loads(out)
    return data


@needs_registry
def test_build_then_show_says_the_image_exists_and_nothing_changed(offline, pkg):
    before = _show(pkg)
    assert before["exists"] is False
    assert before["last_build"] is None
    built = _build(pkg)
    assert built["built"] is True
    assert built["bytes_uploaded"] > 0
    assert built["tag"].startswith("env-")
    assert built["tag"] == before["tag"]  # show computes the tag build pushes
    assert built["layers"]
    assert built["size"] > 0
    shown = _show(pkg)
    assert shown["exists"] is True
    assert shown["tag"] == built["tag"]
    assert shown["env_hash"] == built["env_hash"]
    assert shown["digest"] == built["digest"]
    assert shown["layers"] == built["layers"]
    assert shown["last_build"]["same_tag"] is True
    assert shown["changes"]["none"] is True
    # Text output says the same.
    code, out = _invoke("show", *_pin(pkg, "0.1"))
    assert code == 0, out
    assert "exists:   yes" in out
    assert "changes:  none since the last image" in out
    # A changed pin is reported against the recorded build, and its image is missing.
    changed = _show(pkg, "0.2")
    assert changed["exists"] is False
    assert changed["tag"] != built["tag"]
    assert changed["changes"]["changed"] == {pkg[0].replace("_", "-"): ["0.1", "0.2"]}


@needs_registry
def test_a_second_build_uploads_nothing(offline, pkg):
    first = _build(pkg)
    second = _build(pkg)
    assert first["built"] is True
    assert second["built"] is False
    assert second["bytes_uploaded"] == 0
    assert second["digest"] == first["digest"]
    code, out = _invoke("build", *_pin(pkg, "0.1"))
    assert code == 0, out
    assert "built:    no" in out
    assert "0 bytes uploaded" in out


@needs_registry
@pytest.mark.skipif(sys.version_info.micro == 0,
                    reason="on an x.y.0 interpreter the minor and the exact version agree")
@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_env_build_resolves_a_pin_that_needs_this_patch_release(offline, tmp_path, arch):
    # Defect 11: like pymdown-extensions 13.1.2 (Python >= 3.11.5) on 3.11.7,
    # `env build --platform arm64` exited 1: uv was asked for Python 3.11 (3.11.0).
    exact = platform.python_version()
    name = f"needspatch_{uuid.uuid4().hex[:10]}"
    make_wheel(tmp_path / "wheels", name, "1.0", {f"{name}.py": b"X = 1\n"},
               requires_python=f">={exact}")
    code, out = _invoke("build", "--platform", arch, *_pin((name, tmp_path / "wheels"), "1.0"),
                        "--json")
    assert code == 0, out
    assert json.loads(out)["built"] is True


@needs_registry
def test_prune_dry_run_lists_and_deletes_nothing_then_prunes(offline, pkg):
    old = _build(pkg, "0.1")
    new = _build(pkg, "0.2")
    assert old["tag"] != new["tag"]
    repository, region = new["repository"], new["region"]
    code, out = _invoke("prune", "--keep", "1", "--dry-run", "--json")
    assert code == 0, out
    plan = json.loads(out)
    assert plan["route"] == "registry"  # the emulator's images live only in the registry
    assert [x["tags"] for x in plan["kept"]] == [[new["tag"]]]
    assert [x["digest"] for x in plan["would_delete"]] == [old["digest"]]
    with ecr_registry(region=region) as registry:
        assert registry.manifest_digest(repository, old["tag"]) == old["digest"]
        assert registry.manifest_digest(repository, new["tag"]) == new["digest"]
    code, out = _invoke("prune", "--keep", "1", "--dry-run")
    assert code == 0, out
    assert "would delete" in out
    assert "dry run: nothing deleted" in out
    # For real now.
    code, out = _invoke("prune", "--keep", "1", "--yes", "--json")
    assert code == 0, out
    done = json.loads(out)
    assert [x["digest"] for x in done["deleted"]] == [old["digest"]]
    with ecr_registry(region=region) as registry:
        assert registry.manifest_digest(repository, old["tag"]) is None
        assert registry.manifest_digest(repository, new["tag"]) == new["digest"]


def test_prune_through_the_ecr_api_uses_batch_delete_image(offline, monkeypatch):
    """Without a registry override the images are ECR's: DescribeImages + BatchDeleteImage."""
    from starburst.aws import provision
    from starburst.aws.clients import client

    monkeypatch.delenv("STARBURST_REGISTRY_URL")
    repository = offline
    provision.ensure_repository(repository, region="us-east-1")
    ecr = client("ecr", region="us-east-1")
    for i, tag in enumerate(["env-" + "a" * 32, "env-" + "b" * 32, "release-1"]):
        manifest = json.dumps({
            "schemaVersion": 2,
            # moto's digest is a hash of the layer digests: make them differ.
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "digest": f"sha256:{i:064x}", "size": 1}],
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "digest": "sha256:" + "0" * 64, "size": 0}})
        ecr.put_image(repositoryName=repository, imageManifest=manifest, imageTag=tag)
    code, out = _invoke("prune", "--keep", "1", "--region", "us-east-1", "--dry-run",
                        "--json")
    assert code == 0, out
    plan = json.loads(out)
    assert plan["route"] == "ecr"
    assert len(plan["kept"]) == 1
    assert len(plan["would_delete"]) == 1
    assert all(not t.startswith("release") for x in plan["kept"] for t in x["tags"])
    code, out = _invoke("prune", "--keep", "1", "--region", "us-east-1", "--yes", "--json")
    assert code == 0, out
    left = {t for d in ecr.describe_images(repositoryName=repository)["imageDetails"]
            for t in d.get("imageTags", [])}
    assert "release-1" in left
    assert len([t for t in left if t.startswith("env-")]) == 1


def test_distribution_record_diff_lists_added_and_removed(tmp_path):
    from starburst.envsync.history import diff_snapshot, last_build, record_build

    old = Snapshot(target=Target.of("x86_64"), distributions=(
        Distribution("a", "1"), Distribution("b", "1")))
    record_build(snapshot=old, tag="env-x", env_hash="x", digest="sha256:0", reference="r",
                 repository="repo", built=True, bytes_uploaded=1, cache_dir=tmp_path)
    last = last_build("x86_64", tmp_path)
    assert last is not None
    new = Snapshot(target=Target.of("x86_64"), distributions=(
        Distribution("b", "2"), Distribution("c", "1")))
    diff = diff_snapshot(last, new)
    assert diff.added == {"c": "1"}
    assert diff.removed == {"a": "1"}
    assert diff.changed == {"b": ("1", "2")}
    assert not diff.empty
    assert last_build("arm64", tmp_path) is None
