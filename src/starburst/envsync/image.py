"""Compose the worker image and push it, or find that it is already there.

::

    snapshot --resolve--> lock ─┐
    base ref --resolve--> base ─┼─> env hash --> tag env-<hash>
    running starburst ──────────┘        │
                                 HEAD manifest: present? --> done, nothing built or sent
                                         │ absent
    build layers (cache) + starburst layer --> copy base layers (HEAD / mount / copy)
    --> push blobs (HEAD first) --> config --> manifest under the tag

The tag is a hash of everything that determines the image: the lock,
the Python version, the platform, the base image's digest, the running
starburst's content and the layer recipe. Equal inputs give an equal tag,
and the warm path is one manifest HEAD (plus a token, once per process).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .auth import RegistryAuth
from .base import BaseImage, copy_base, default_base_image, resolve_base
from .cache import LAYOUT_VERSION, LayerCache, default_cache_dir
from .layers import DEFAULT_SPLIT_BYTES, BuildStats, Layer, build_layers
from .oci import (
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Descriptor,
    canonical_json,
    oci_layer_type,
    parse_reference,
    sha256_digest,
)
from .registry import ProgressCallback, Registry
from .resolve import IndexOptions, Lock, resolve
from .selfwheel import SelfInstall, self_identity, self_layer
from .snapshot import Snapshot, take_snapshot
from .target import Target

__all__ = ["ENTRYPOINT", "BuildReport", "ImagePlan", "ImageRef", "compose_config",
           "ensure_image", "env_hash", "plan_image"]

#: What every worker container runs.
ENTRYPOINT = ["python", "-m", "starburst.worker"]
#: Bump when the image recipe (config, layer order) changes for equal inputs.
_RECIPE_VERSION = 1
# 32 hex digits = 128 bits: collisions are out of reach, and the tag stays
# readable in the console (ECR allows 300 characters).
_TAG_HEX = 32
_LABEL = "dev.starburst"


@dataclass(frozen=True, slots=True)
class ImageRef:
    """A pushed worker image.

    Attributes:
        registry: registry host as ECS sees it (``<id>.dkr.ecr.<region>.amazonaws.com``).
        repository: repository name.
        tag: ``env-<hash>``.
        digest: manifest digest.
        env_hash: the full environment hash (also ``STARBURST_ENV_HASH`` in the image).
    """

    registry: str
    repository: str
    tag: str
    digest: str
    env_hash: str

    @property
    def reference(self) -> str:
        """``registry/repository:tag``."""
        return f"{self.registry}/{self.repository}:{self.tag}"

    @property
    def pinned(self) -> str:
        """``registry/repository@digest``: immune to the tag being moved."""
        return f"{self.registry}/{self.repository}@{self.digest}"


@dataclass(frozen=True, slots=True)
class BuildReport:
    """What :func:`ensure_image` did.

    Attributes:
        image: the image.
        built: False when the tag already existed and nothing was built or sent.
        bytes_uploaded: blob and manifest bytes sent to the target registry.
        layers: starburst's layers of the image (empty when not built).
        warnings: resolver notes (packages left out or added for the target).
        timings: seconds per phase: resolve, base, check, install, tar, upload, total.
    """

    image: ImageRef
    built: bool
    bytes_uploaded: int
    layers: tuple[Layer, ...] = ()
    warnings: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)


def env_hash(lock: Lock, base: BaseImage, me: SelfInstall, *, threshold: int) -> str:
    """sha256 of every input of the image (see the module docstring)."""
    payload = {
        "recipe": [_RECIPE_VERSION, LAYOUT_VERSION, ENTRYPOINT, threshold],
        "lock": lock.digest(),
        "python": lock.target.version,
        "platform": lock.target.uv_platform,
        "base": base.digest,
        "starburst": me.identity,
    }
    return hashlib.sha256(canonical_json(payload)).hexdigest()


def ensure_image(registry: Registry, repository: str, *, snapshot: Snapshot | None = None,
                 platform: str = "x86_64", base_image: str | None = None,
                 base_registry: Registry | None = None, index: IndexOptions | None = None,
                 threshold: int = DEFAULT_SPLIT_BYTES, cache_dir: Path | None = None,
                 progress: ProgressCallback | None = None, refresh: bool = False) -> BuildReport:
    """Make sure the image for this environment is in ``registry``/``repository``.

    Args:
        registry: the target registry (ECR: :func:`~starburst.envsync.ecrauth.ecr_registry`).
        repository: the target repository; it must exist (ECR) or be creatable.
        snapshot: the environment; the running interpreter's by default.
        platform: ``x86_64`` or ``arm64`` (ignored when ``snapshot`` is given).
        base_image: base image reference; ``python:3.X.Y-slim`` (the target's exact
            Python release) from ECR Public by default.
        base_registry: client for the base image's registry (anonymous by default).
        index: where packages come from.
        threshold: installed size from which a distribution gets its own layer.
        cache_dir: local cache root (layers, locks, base image resolution).
        progress: called with the bytes of each uploaded chunk.
        refresh: ignore cached locks and base image resolutions.

    Raises:
        UnsupportedPackageError: a package has no build for the target.
        EnvironmentBuildError, RegistryError: building or pushing failed.
    """
    timings: dict[str, float] = {}
    start = time.perf_counter()
    snap = snapshot or take_snapshot(platform)
    target = snap.target
    root = cache_dir or default_cache_dir()
    lock = resolve(snap, index=index, cache_dir=root, refresh=refresh)
    timings["resolve"] = time.perf_counter() - start

    ref = parse_reference(base_image or default_base_image(target))
    with contextlib.ExitStack() as stack:
        source = base_registry or stack.enter_context(Registry(ref.url, auth=RegistryAuth()))
        mark = time.perf_counter()
        base = resolve_base(source, ref, target, cache_dir=root, refresh=refresh)
        timings["base"] = time.perf_counter() - mark
        me = self_identity()
        full_hash = env_hash(lock, base, me, threshold=threshold)
        tag = f"env-{full_hash[:_TAG_HEX]}"
        mark = time.perf_counter()
        existing = registry.manifest_digest(repository, tag)
        timings["check"] = time.perf_counter() - mark
        if existing is not None:
            timings["total"] = time.perf_counter() - start
            return BuildReport(image=ImageRef(registry.name, repository, tag, existing,
                                              full_hash),
                               built=False, bytes_uploaded=0, warnings=lock.warnings,
                               timings=timings)

        # Local work first: a package that cannot be installed fails the
        # build before anything is sent.
        stats = BuildStats()
        cache = LayerCache(root)
        layers = build_layers(lock, cache=cache, index=index, threshold=threshold,
                              stats=stats)
        layers.append(self_layer(cache, target, stats=stats, installed=me))
        timings["install"], timings["tar"] = stats.install_s, stats.tar_s

        sent_before = registry.bytes_uploaded
        mark = time.perf_counter()
        copy_base(base, source, registry, repository, progress=progress)
        for layer in layers:
            registry.push_blob(repository, layer.blob.digest, layer.blob.path,
                               progress=progress)
        config = canonical_json(compose_config(base, layers, target, full_hash, me))
        registry.push_blob(repository, sha256_digest(config), config, progress=progress)
        manifest = canonical_json(_manifest(base, config, layers))
        digest = registry.put_manifest(repository, tag, manifest, OCI_MANIFEST)
        timings["upload"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - start
    return BuildReport(image=ImageRef(registry.name, repository, tag, digest, full_hash),
                       built=True, bytes_uploaded=registry.bytes_uploaded - sent_before,
                       layers=tuple(layers), warnings=lock.warnings, timings=timings)


@dataclass(frozen=True, slots=True)
class ImagePlan:
    """The tag an environment's image has, computed without touching the target registry.

    Attributes:
        env_hash: the full environment hash.
        tag: ``env-<hash>``, the tag :func:`ensure_image` pushes under.
        lock: the resolved lock.
        base: the resolved base image.
    """

    env_hash: str
    tag: str
    lock: Lock
    base: BaseImage


def plan_image(*, snapshot: Snapshot, base_image: str | None = None,
               base_registry: Registry | None = None, index: IndexOptions | None = None,
               threshold: int = DEFAULT_SPLIT_BYTES, cache_dir: Path | None = None,
               refresh: bool = False) -> ImagePlan:
    """The hash and tag :func:`ensure_image` would give this environment (nothing built).

    The inputs are those of :func:`ensure_image` and are read the same way
    (resolve, base image resolution, the running starburst's identity),
    so equal arguments give the tag :func:`ensure_image` checks for.
    """
    root = cache_dir or default_cache_dir()
    lock = resolve(snapshot, index=index, cache_dir=root, refresh=refresh)
    ref = parse_reference(base_image or default_base_image(snapshot.target))
    with contextlib.ExitStack() as stack:
        source = base_registry or stack.enter_context(Registry(ref.url, auth=RegistryAuth()))
        base = resolve_base(source, ref, snapshot.target, cache_dir=root, refresh=refresh)
    full_hash = env_hash(lock, base, self_identity(), threshold=threshold)
    return ImagePlan(env_hash=full_hash, tag=f"env-{full_hash[:_TAG_HEX]}", lock=lock, base=base)


def compose_config(base: BaseImage, layers: list[Layer], target: Target, full_hash: str,
                   me: SelfInstall) -> dict[str, Any]:
    """The image config: the base's, with starburst's layers, entrypoint, env and labels.

    The base's ``Cmd`` is removed: with an ``Entrypoint`` it would become
    arguments of the worker (``python -m starburst.worker python3``).
    PYTHONPATH is not needed: layers sit in the interpreter's own
    site-packages, where ``.pth`` files are honoured too.
    """
    cfg = copy.deepcopy(base.config)
    inner: dict[str, Any] = dict(cfg.get("config") or {})
    env = [e for e in inner.get("Env") or [] if not e.startswith("STARBURST_ENV_HASH=")]
    env.append(f"STARBURST_ENV_HASH={full_hash}")
    inner["Env"] = env
    inner["Entrypoint"] = list(ENTRYPOINT)
    inner.pop("Cmd", None)
    labels = dict(inner.get("Labels") or {})
    labels.update({
        f"{_LABEL}.env-hash": full_hash,
        f"{_LABEL}.python": target.python,
        f"{_LABEL}.python-version": target.version,
        f"{_LABEL}.platform": target.uv_platform,
        f"{_LABEL}.site-packages": "/" + target.site_packages,
        f"{_LABEL}.version": me.version,
    })
    inner["Labels"] = labels
    cfg["config"] = inner
    rootfs = dict(cfg.get("rootfs") or {"type": "layers"})
    rootfs["diff_ids"] = [*rootfs.get("diff_ids", []), *(x.blob.diff_id for x in layers)]
    cfg["rootfs"] = rootfs
    history = list(cfg.get("history") or [])
    history += [{"created": cfg.get("created", "1970-01-01T00:00:00Z"),
                 "created_by": f"starburst envsync: {layer.name}"} for layer in layers]
    cfg["history"] = history
    return cfg


def _manifest(base: BaseImage, config: bytes, layers: list[Layer]) -> dict[str, Any]:
    descriptors = [Descriptor(oci_layer_type(d.media_type), d.digest, d.size)
                   for d in base.layers]
    descriptors += [Descriptor(OCI_LAYER_GZIP, x.blob.digest, x.blob.size) for x in layers]
    return {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": Descriptor(OCI_CONFIG, sha256_digest(config), len(config)).to_json(),
        "layers": [d.to_json() for d in descriptors],
        "annotations": {
            "org.opencontainers.image.base.name": str(base.reference),
            "org.opencontainers.image.base.digest": base.digest,
        },
    }

