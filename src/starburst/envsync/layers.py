"""Split a lock into layers, build what the cache lacks, reuse the rest.

::

    lock --sizes (cache, or install)--> plan: one layer per big distribution,
                                              one layer for all the others
         --cache hit--------------------> layer (free)
         --install (uv, subset) -> tar --> layer (cached for next time)

A distribution whose installed size reaches the threshold gets a layer of
its own, keyed by (name, version, platform, python): upgrading it uploads
that layer only, and a layer already in the registry (or in the cache) is
never built or sent again. Small distributions share one layer, keyed by
the whole set: a change of any of them rebuilds that one small layer.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .cache import LayerCache, cache_key
from .errors import EnvironmentBuildError
from .layout import Entry, InstalledDistribution, installed_distributions
from .resolve import IndexOptions, Lock, install
from .tarlayer import LayerBlob, write_layer

__all__ = ["DEFAULT_SPLIT_BYTES", "BuildStats", "Layer", "build_layers", "layer_from_entries"]

#: Installed size from which a distribution gets a layer of its own. 20 MiB
#: singles out the heavy libraries (numpy, scipy, pandas, torch...), whose
#: upgrades should not re-upload everything else, while keeping the layer
#: count far below the 127 layers an overlay file system stacks.
DEFAULT_SPLIT_BYTES = 20 * 1024 * 1024
# Layers are written in parallel; beyond a few threads the disk, not the
# CPU, is the limit, and a laptop stays usable.
_MAX_TAR_THREADS = 4


@dataclass(frozen=True, slots=True)
class Layer:
    """One layer of the image.

    Attributes:
        name: what it holds, for people (``numpy==2.1.0``, ``12 packages``).
        blob: the compressed blob on disk and its digests.
        members: ``name==version`` of the distributions in it.
        cached: taken from the local cache rather than built now.
    """

    name: str
    blob: LayerBlob
    members: tuple[str, ...]
    cached: bool


@dataclass(slots=True)
class BuildStats:
    """Where the time of a build went, for reports and benchmarks."""

    install_s: float = 0.0
    tar_s: float = 0.0
    layers_built: int = 0
    layers_cached: int = 0
    installed: list[str] = field(default_factory=list)


def layer_from_entries(cache: LayerCache, key: str, name: str, members: tuple[str, ...],
                       entries: Callable[[], list[Entry]], stats: BuildStats) -> Layer:
    """The cached layer ``key``, or build it from ``entries()`` and cache it."""
    cached = cache.get(key)
    if cached is not None:
        stats.layers_cached += 1
        return Layer(name=name, blob=cached, members=members, cached=True)
    items = entries()
    start = time.perf_counter()
    blob = cache.put(key, write_layer(items, cache.scratch()))
    stats.tar_s += time.perf_counter() - start
    stats.layers_built += 1
    return Layer(name=name, blob=blob, members=members, cached=False)


def build_layers(lock: Lock, *, cache: LayerCache, index: IndexOptions | None = None,
                 threshold: int = DEFAULT_SPLIT_BYTES,
                 stats: BuildStats | None = None) -> list[Layer]:
    """The layers holding every distribution of ``lock``, big ones first, by name.

    Installs only what it must: distributions whose size was never
    measured, and those of layers missing from the cache.

    Raises:
        UnsupportedPackageError, EnvironmentBuildError: from the install.
    """
    stats = stats if stats is not None else BuildStats()
    target = lock.target
    with tempfile.TemporaryDirectory(prefix="starburst-layers-") as tmp:
        site = Path(tmp) / "site"
        installed: dict[str, InstalledDistribution] = {}

        def ensure(names: list[str]) -> None:
            missing = [n for n in names if n not in installed]
            if not missing:
                return
            start = time.perf_counter()
            install(lock, site, names=missing, index=index)
            stats.install_s += time.perf_counter() - start
            stats.installed.extend(missing)
            installed.update(installed_distributions(site, target))
            for name in missing:
                if name not in installed:
                    raise EnvironmentBuildError(
                        f"uv reported success but {name}=={lock.version_of(name)} is not in "
                        f"the install directory {site}")
                dist = installed[name]
                cache.record_size(name, dist.version, target, dist.size)

        sizes = {n: cache.installed_size(n, v, target) for n, v in lock.pins}
        ensure([n for n, s in sizes.items() if s is None])
        sizes.update({name: dist.size for name, dist in installed.items()})
        big = [n for n, _ in lock.pins if (sizes[n] or 0) >= threshold]
        small = [n for n, _ in lock.pins if n not in big]

        plans: list[_Plan] = []
        for name in big:
            version = lock.version_of(name) or ""
            member = f"{name}=={version}"
            plans.append(_Plan(cache_key("dist", name, version, target.key), member,
                               (member,), (name,)))
        if small:
            members = tuple(f"{n}=={lock.version_of(n)}" for n in small)
            label = f"{len(small)} packages" if len(small) != 1 else members[0]
            plans.append(_Plan(cache_key("group", members, target.key), label, members,
                               tuple(small)))
        cached = {plan.key: cache.get(plan.key) for plan in plans}
        todo = [plan for plan in plans if cached[plan.key] is None]
        # One uv call for everything still missing, then the layers in parallel.
        ensure(sorted({n for plan in todo for n in plan.names}))
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=_tar_workers(len(todo))) as pool:
            fresh = dict(zip((plan.key for plan in todo), pool.map(
                lambda plan: cache.put(plan.key, write_layer(
                    [e for n in plan.names for e in installed[n].entries], cache.scratch())),
                todo), strict=True))
        stats.tar_s += time.perf_counter() - start
        stats.layers_built += len(todo)
        stats.layers_cached += len(plans) - len(todo)
        layers: list[Layer] = []
        for plan in plans:
            blob = cached[plan.key] or fresh[plan.key]
            layers.append(Layer(name=plan.name, blob=blob, members=plan.members,
                                cached=cached[plan.key] is not None))
        return layers


@dataclass(frozen=True, slots=True)
class _Plan:
    key: str
    name: str
    members: tuple[str, ...]
    names: tuple[str, ...]


def _tar_workers(layers: int) -> int:
    """Threads for writing layers: gzip and sha256 release the GIL, so cores help."""
    return max(1, min(layers, os.cpu_count() or 1, _MAX_TAR_THREADS))
