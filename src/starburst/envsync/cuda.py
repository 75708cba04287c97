"""CUDA builds for GPU workers: CPU-only pins of the laptop become the index's CUDA builds.

Why a plain Python base image is enough. GPU workers run as AWS Batch
jobs on EC2 instances of the ECS GPU-optimized AMI, which carries the
NVIDIA driver and the NVIDIA container runtime; Batch passes the GPU
into the container (``resourceRequirements`` GPU). Everything above the
driver (the CUDA runtime, cuBLAS, cuDNN, NCCL) comes as wheels: PyPI's
Linux x86_64 ``torch`` wheels are CUDA builds that depend on the
``nvidia-*-cu12`` wheels, which the resolver adds to the lock like any
other dependency. So the worker image keeps the same ``python:X.Y-slim``
base as on Fargate; no CUDA base image (gigabytes more, and pinned to
one CUDA version) is needed, as long as the AMI's driver is new enough
for the CUDA version of the wheels (AWS keeps the ECS GPU-optimized AMI's
driver current).

What has to change is the pins. The snapshot pins what is installed here:

- On macOS, ``torch==2.5.1`` resolves on Linux to PyPI's ``torch 2.5.1``
  wheel, already the CUDA build: nothing to do.
- On a Linux or Windows laptop without a GPU, torch is often installed
  from ``https://download.pytorch.org/whl/cpu`` with a CPU-only local
  version label: ``torch==2.5.1+cpu``. Pinned as is, the worker gets the
  CPU-only build (or no build at all from PyPI, which has no ``+cpu``
  versions). :func:`gpu_pins` strips the ``+cpu`` label, so the pin is
  ``torch==2.5.1``: the same release, CUDA build. It does so for every
  distribution whose local label is CPU-only (torch, torchvision,
  torchaudio, and any other), and :func:`cuda_swaps` says what changed so
  the build report can show it.

A pin with another local label (``+cu121``, from PyTorch's own CUDA
index) is kept: it already names a CUDA build, and the user's
``index_url=``/``extra_index_urls=`` say where it comes from. On arm64
(``g5g`` instances), check that the torch wheels the index offers for
Linux aarch64 are CUDA builds (``torch.cuda.is_available()`` on a
worker): PyTorch has published them on its own index rather than PyPI.

Pure: no I/O, no network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .snapshot import Distribution, Snapshot

__all__ = ["CUDA_PACKAGES", "CudaSwap", "cpu_only", "cuda_swaps", "gpu_pins", "swap_report"]

#: Distributions whose index build for Linux x86_64 is the CUDA build.
CUDA_PACKAGES = frozenset({"torch", "torchvision", "torchaudio"})

# A PEP 440 local version label whose first segment is "cpu": "+cpu", "+cpu.cxx11.abi".
_CPU_LABEL = re.compile(r"\+cpu(?:[._-][A-Za-z0-9._-]*)?$", re.IGNORECASE)


@dataclass(frozen=True)
class CudaSwap:
    """One pin changed for the GPU image.

    Attributes:
        name: canonical distribution name.
        old: the version installed here (``2.5.1+cpu``).
        new: the version pinned for the GPU workers (``2.5.1``).
    """

    name: str
    old: str
    new: str

    @property
    def cuda(self) -> bool:
        """Whether the new pin is known to be the CUDA build on Linux x86_64."""
        return self.name in CUDA_PACKAGES

    def describe(self) -> str:
        """``torch 2.5.1+cpu -> 2.5.1 (CUDA build) for the GPU image``."""
        what = "CUDA build" if self.cuda else "the index's build, without the CPU-only label"
        return f"{self.name} {self.old} -> {self.new} ({what}) for the GPU image"


def cpu_only(version: str) -> bool:
    """Whether ``version`` carries a CPU-only local label (``2.5.1+cpu``)."""
    return _CPU_LABEL.search(version) is not None


def _swap(dist: Distribution) -> CudaSwap | None:
    if not cpu_only(dist.version):
        return None
    return CudaSwap(dist.name, dist.version, dist.version.split("+", 1)[0])


def cuda_swaps(snapshot: Snapshot) -> list[CudaSwap]:
    """The pins :func:`gpu_pins` changes, in the snapshot's order."""
    return [swap for dist in snapshot.distributions if (swap := _swap(dist)) is not None]


def gpu_pins(snapshot: Snapshot) -> Snapshot:
    """``snapshot`` with every CPU-only pin replaced by its public release (CUDA build).

    The distributions keep their order and everything but the version, so
    ``zip(snapshot.distributions, gpu_pins(snapshot).distributions)`` pairs
    each with itself; a snapshot without CPU-only pins comes back unchanged
    (the same object).
    """
    swaps = {s.name: s for s in cuda_swaps(snapshot)}
    if not swaps:
        return snapshot
    dists = tuple(replace(d, version=swaps[d.name].new) if d.name in swaps else d
                  for d in snapshot.distributions)
    return replace(snapshot, distributions=dists)


def swap_report(swaps: list[CudaSwap]) -> str:
    """One line for the build report (empty when nothing changed)."""
    return "; ".join(s.describe() for s in swaps)
