"""Graviton (platform="arm64"): the image, the task definition and the price.

A Fargate session for arm64 builds its image offline from a local wheel
directory holding the same package for aarch64 and for x86_64 (so the
test sees that the right one is chosen), pushes it to the emulated ECR
and registers an ARM64 task definition; no task runs. A package with
only an x86_64 wheel is refused with a fix that names platform="x86_64".
"""

from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path

import pytest
from _support import make_wheel

from starburst.aws.clients import client
from starburst.backends.fargate import ON_DEMAND, SPOT, FargateBackend
from starburst.envsync.ecrauth import ecr_registry
from starburst.envsync.errors import UnsupportedPackageError
from starburst.envsync.pull import split_reference
from starburst.envsync.resolve import IndexOptions, resolve
from starburst.envsync.snapshot import Distribution, Snapshot
from starburst.envsync.target import Target
from starburst.options import ExecutorOptions
from starburst.pricing import hourly_rate, lookup
from starburst.testing.registry import registry_binary

CP = f"cp{sys.version_info.major}{sys.version_info.minor}"
AARCH64 = f"{CP}-{CP}-manylinux_2_17_aarch64"
X86_64 = f"{CP}-{CP}-manylinux_2_17_x86_64"


def _fastthing(wheels: Path) -> None:
    for tag, machine in ((AARCH64, "aarch64"), (X86_64, "x86_64")):
        make_wheel(wheels, "fastthing", "1.0", {
            "fastthing/__init__.py": b"",
            "fastthing/_arch.py": f"MACHINE = {machine!r}\n".encode()}, tag=tag)


def _image_files(image: str, registry_url: str) -> tuple[dict[str, object], dict[str, bytes]]:
    """The config of a pushed single-platform image and its files (path -> bytes)."""
    registry = ecr_registry(client("ecr"), registry_url=registry_url)
    try:
        repo, reference = split_reference(registry, image)
        manifest = registry.get_manifest(repo, reference).json()
        config = json.loads(registry.get_blob(repo, manifest["config"]["digest"]))
        files: dict[str, bytes] = {}
        for layer in manifest["layers"]:
            blob = registry.get_blob(repo, layer["digest"])
            with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
                for member in tar.getmembers():
                    handle = tar.extractfile(member) if member.isfile() else None
                    if handle is not None:
                        files[member.name] = handle.read()
    finally:
        registry.close()
    return config, files


@pytest.mark.skipif(registry_binary() is None,
                    reason="the distribution registry is not installed (apt-get install "
                           "docker-registry; .ci/run installs it)")
def test_an_arm64_session_has_an_aarch64_image_an_arm64_definition_and_graviton_prices(
        aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UV_OFFLINE", "1")  # uv never reaches an index here
    monkeypatch.setenv("STARBURST_CACHE_DIR", str(tmp_path / "cache"))
    _fastthing(tmp_path / "wheels")
    options = ExecutorOptions.build(
        backend="fargate", env="auto", platform="arm64", spot=True, code=False,
        snapshot=Snapshot(target=Target.of("arm64"), distributions=()),
        packages=["fastthing==1.0"],
        index=IndexOptions(find_links=(str(tmp_path / "wheels"),), no_index=True))
    session = FargateBackend.open_session(session="sb-arm64", options=options)
    backend = session.backend
    try:
        assert isinstance(backend, FargateBackend)
        # Fargate Spot runs ARM64 tasks (AWS, since 2024): Graviton on Spot, no note.
        assert backend.spot == "prefer"
        assert not any("On-Demand on Graviton" in note for note in session.notes)
        config, files = _image_files(session.spec.image, str(aws.runner.registry_url))
        assert (config["architecture"], config["os"]) == ("arm64", "linux")
        site = f"usr/local/lib/python{sys.version_info.major}.{sys.version_info.minor}/" \
               "site-packages"
        assert files[f"{site}/fastthing/_arch.py"] == b"MACHINE = 'aarch64'\n"
        wheel = files[f"{site}/fastthing-1.0.dist-info/WHEEL"].decode()
        assert f"Tag: {AARCH64}" in wheel.splitlines()
        ecs = client("ecs")
        [arn] = [a for a in ecs.list_task_definitions()["taskDefinitionArns"]
                 if ":task-definition/starburst-arm64-" in a]
        definition = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
        assert definition["runtimePlatform"]["cpuArchitecture"] == "ARM64"
        [container] = definition["containerDefinitions"]
        assert container["image"] == session.spec.image
        assert container["stopTimeout"] == 120  # Spot: the whole two-minute notice
        graviton = lookup(aws.region, "arm64")
        public_ip = aws.shared.network.assign_public_ip
        assert backend.rates[ON_DEMAND] == pytest.approx(hourly_rate(
            graviton, 1, 2048, public_ip=public_ip))
        assert backend.rates[ON_DEMAND] < hourly_rate(lookup(aws.region, "x86_64"), 1, 2048,
                                                      public_ip=public_ip)
        assert session.hourly_rate == pytest.approx(backend.rates[SPOT])  # Graviton on Spot
        assert session.hourly_rate < backend.rates[ON_DEMAND]
        assert session.price_note.startswith(f"{aws.region} arm64, ")
    finally:
        backend.close()
        session.transport.destroy()
        session.transport.close()


def test_a_package_with_only_an_x86_64_wheel_suggests_x86_64(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            ) -> None:
    monkeypatch.setenv("UV_OFFLINE", "1")
    make_wheel(tmp_path / "wheels", "x86only", "2.0", {"x86only/__init__.py": b""}, tag=X86_64)
    snapshot = Snapshot(target=Target.of("arm64"),
                        distributions=(Distribution("x86only", "2.0", pure=False),))
    with pytest.raises(UnsupportedPackageError) as info:
        resolve(snapshot, index=IndexOptions(find_links=(str(tmp_path / "wheels"),),
                                             no_index=True), cache_dir=tmp_path / "cache")
    err = info.value
    assert (err.package, err.version, err.platform) == ("x86only", "2.0",
                                                        "aarch64-manylinux_2_28")
    assert "has wheels only for other platforms" in str(err)
    assert "platform='x86_64'" in str(err)
