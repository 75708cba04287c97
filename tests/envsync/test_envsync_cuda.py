"""CUDA pins for GPU images: CPU-only local labels give way to the index's (CUDA) builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from starburst.envsync.cuda import CudaSwap, cpu_only, cuda_swaps, gpu_pins, swap_report
from starburst.envsync.snapshot import Dependency, Distribution, Snapshot, take_snapshot
from starburst.envsync.target import Target


def _snapshot(*pins: tuple[str, str]) -> Snapshot:
    dists = tuple(Distribution(name, version, pure=False,
                               requires=(Dependency("numpy", False),))
                  for name, version in sorted(pins))
    return Snapshot(target=Target("x86_64", "3.11"), distributions=dists)


@pytest.mark.parametrize(("version", "expected"), [
    ("2.5.1+cpu", True), ("2.0.1+CPU", True), ("1.13.1+cpu.cxx11.abi", True),
    ("2.5.1", False), ("2.5.1+cu121", False), ("1.0+cpuinfo", False), ("0.20.1+rocm6.1", False),
])
def test_cpu_only_labels(version: str, expected: bool) -> None:
    assert cpu_only(version) is expected


def test_cpu_pins_become_the_cuda_builds() -> None:
    snap = _snapshot(("numpy", "2.1.3"), ("torch", "2.5.1+cpu"),
                     ("torchvision", "0.20.1+cpu"), ("torchaudio", "2.5.1+cpu"),
                     ("intel-extension-for-pytorch", "2.5.0+cpu"))
    swapped = gpu_pins(snap)
    pins = {d.name: d.version for d in swapped.distributions}
    assert pins == {"numpy": "2.1.3", "torch": "2.5.1", "torchvision": "0.20.1",
                    "torchaudio": "2.5.1", "intel-extension-for-pytorch": "2.5.0"}
    # Only the version changes: order, purity and dependencies stay.
    for old, new in zip(snap.distributions, swapped.distributions, strict=True):
        assert (old.name, old.pure, old.requires) == (new.name, new.pure, new.requires)
    assert swapped.target == snap.target
    assert "torch==2.5.1\n" in swapped.constraints()
    assert "+cpu" not in swapped.constraints()
    # A different image: the snapshot's key (the lock's cache key) changes.
    assert swapped.key() != snap.key()


def test_swaps_say_what_changed() -> None:
    snap = _snapshot(("torch", "2.5.1+cpu"), ("intel-extension-for-pytorch", "2.5.0+cpu"),
                     ("numpy", "2.1.3"))
    swaps = cuda_swaps(snap)
    assert swaps == [CudaSwap("intel-extension-for-pytorch", "2.5.0+cpu", "2.5.0"),
                     CudaSwap("torch", "2.5.1+cpu", "2.5.1")]
    assert swaps[1].describe() == "torch 2.5.1+cpu -> 2.5.1 (CUDA build) for the GPU image"
    assert swaps[0].describe() == ("intel-extension-for-pytorch 2.5.0+cpu -> 2.5.0 (the index's "
                                   "build, without the CPU-only label) for the GPU image")
    assert swap_report(swaps).count(" for the GPU image") == 2
    assert swap_report([]) == ""


def test_cuda_and_plain_pins_are_left_alone() -> None:
    # A macOS snapshot's torch==2.5.1 is already the CUDA build on Linux; +cu121
    # already names one.
    snap = _snapshot(("torch", "2.5.1"), ("torchvision", "0.20.1+cu121"))
    assert gpu_pins(snap) is snap
    assert cuda_swaps(snap) == []


def test_from_an_installed_cpu_torch(tmp_path: Path) -> None:
    site = tmp_path / "site"
    info = site / "torch-2.5.1+cpu.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.5.1+cpu\n"
                                   "Requires-Dist: filelock\n")
    (info / "WHEEL").write_text("Wheel-Version: 1.0\nTag: cp311-cp311-linux_x86_64\n")
    (info / "RECORD").write_text("")
    snap = take_snapshot(path=[str(site)])
    assert snap.constraints() == "torch==2.5.1+cpu\n"
    assert gpu_pins(snap).constraints() == "torch==2.5.1\n"
