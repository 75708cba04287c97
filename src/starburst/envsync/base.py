"""The base image: resolve it for the target platform, copy its layers once.

The default base is the official ``python:3.X.Y-slim`` image of the
running interpreter's exact release (from ECR Public, which mirrors Docker
Hub's official images, every patch tag included, without Docker Hub's
anonymous pull limits): packages are resolved for that release, so the
image must run it. ``base_image=`` names another one, which is the route
for system libraries: build an image with them once, point starburst at
it. A base whose config declares another Python (the official images set
``PYTHON_VERSION``) is refused at once, before anything is built.

Resolving a tag costs a round trip to the source registry, and the
resolved digest is part of the image tag; it is cached for a day (a
digest reference forever), so a warm check never leaves the target
registry, while security updates of the base still arrive daily.

Layers are copied into the target repository once: a layer the target
already holds is skipped (HEAD), one in another repository of the same
registry is mounted (no bytes move), others are downloaded and uploaded.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cache import cache_key
from .errors import EnvironmentBuildError, RegistryError
from .oci import (
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    Descriptor,
    ImageReference,
    select_platform,
    sha256_digest,
)
from .registry import Manifest, ProgressCallback, Registry
from .target import Target

__all__ = ["DEFAULT_BASE_IMAGE", "BaseImage", "copy_base", "default_base_image",
           "resolve_base"]

#: The default base; ``{python}`` is the target's exact Python version (``3.11.7``).
DEFAULT_BASE_IMAGE = "public.ecr.aws/docker/library/python:{python}-slim"
# The variable the official python images (and the synthetic test base) set
# to the interpreter release they carry.
_PYTHON_VERSION_ENV = "PYTHON_VERSION="
# python:3.X-slim is rebuilt about weekly for Debian security updates; a day
# picks those up soon while sparing every warm check a round trip.
_TAG_TTL_S = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class BaseImage:
    """A base image resolved for one platform.

    Attributes:
        reference: the reference it was resolved from.
        digest: digest of its platform-specific manifest (part of the tag).
        config: its image config (env, cmd, diff_ids, history).
        layers: its layer descriptors, bottom first.
    """

    reference: ImageReference
    digest: str
    config: dict[str, Any]
    layers: tuple[Descriptor, ...]


def default_base_image(target: Target) -> str:
    """The default base reference for ``target``: ``python:<exact version>-slim``."""
    return DEFAULT_BASE_IMAGE.format(python=target.version)


def resolve_base(source: Registry, ref: ImageReference, target: Target, *,
                 cache_dir: Path | None = None, refresh: bool = False,
                 clock: float | None = None) -> BaseImage:
    """Resolve ``ref`` to the manifest and config for ``target``.

    Raises:
        EnvironmentBuildError: the image has no manifest for the platform,
            its config does not match it, or it declares another Python
            release than the one packages are resolved for.
        RegistryError: the source registry failed.
    """
    now = time.time() if clock is None else clock
    cache_file = None
    if cache_dir is not None:
        key = cache_key("base", source.url, ref.repository, ref.reference, target.oci_arch)
        cache_file = cache_dir / "base" / f"{key}.json"
        cached = _load(cache_file, ref, now) if not refresh else None
        if cached is not None:
            _check_python(cached, target)
            return cached
    manifest = source.get_manifest(ref.repository, ref.reference)
    if manifest.media_type in (OCI_INDEX, DOCKER_MANIFEST_LIST) or \
            "manifests" in manifest.json():
        try:
            chosen = select_platform(manifest.json(), arch=target.oci_arch)
        except LookupError as exc:
            raise EnvironmentBuildError(f"base image {ref}: {exc}; choose another "
                                        "base_image= or platform=") from exc
        manifest = source.get_manifest(ref.repository, chosen.digest)
    body = manifest.json()
    config_desc = Descriptor.from_json(body["config"])
    config_bytes = source.get_blob(ref.repository, config_desc.digest)
    base = _build(ref, manifest.digest, body, config_bytes, target.oci_arch)
    if cache_file is not None:
        _store(cache_file, manifest, config_bytes, now, target.oci_arch)
    _check_python(base, target)
    return base


def python_of(base: BaseImage) -> str | None:
    """The Python release the base image declares (``PYTHON_VERSION``), or None."""
    env = (base.config.get("config") or {}).get("Env") or []
    for item in env:
        if isinstance(item, str) and item.startswith(_PYTHON_VERSION_ENV):
            return item[len(_PYTHON_VERSION_ENV):].strip() or None
    return None


def _check_python(base: BaseImage, target: Target) -> None:
    """Refuse a base whose Python is not the release packages are resolved for.

    Packages are resolved for ``target.version``; an image with another
    release may lack what they require (or, for another minor version,
    cannot load their compiled modules at all). A base that declares no
    ``PYTHON_VERSION`` cannot be checked and is trusted.
    """
    found = python_of(base)
    if found is None:
        return
    wanted = target.version
    same_minor = found.split(".")[:2] == wanted.split(".")[:2]
    exact = wanted.count(".") == 2
    if same_minor and (not exact or found == wanted):
        return
    raise EnvironmentBuildError(
        f"base image {base.reference} has Python {found}, but the workers' packages are "
        f"resolved for Python {wanted} (the interpreter they must match). Fix: pass "
        f"base_image= an image with Python {wanted} (the default is "
        f"{default_base_image(target)}), or build from a Python {found} interpreter "
        f"(take_snapshot(python={found!r}) resolves for it)")


def copy_base(base: BaseImage, source: Registry, dest: Registry, repo: str, *,
              progress: ProgressCallback | None = None) -> int:
    """Make every layer of ``base`` present in ``dest``/``repo``; return the bytes sent."""
    sent = 0
    with tempfile.TemporaryDirectory(prefix="starburst-base-") as tmp:
        for layer in base.layers:
            if dest.has_blob(repo, layer.digest):
                continue
            if dest.same_registry(source) and dest.mount_blob(
                    repo, layer.digest, base.reference.repository):
                continue
            path = Path(tmp) / layer.digest.replace(":", "-")
            source.download_blob(base.reference.repository, layer.digest, path)
            sent += dest.push_blob(repo, layer.digest, path, progress=progress)
            path.unlink()
    return sent


def _build(ref: ImageReference, digest: str, manifest: dict[str, Any], config_bytes: bytes,
           oci_arch: str) -> BaseImage:
    try:
        config = json.loads(config_bytes)
        layers = tuple(Descriptor.from_json(item) for item in manifest.get("layers", []))
    except (ValueError, KeyError, TypeError) as exc:
        raise EnvironmentBuildError(f"base image {ref} has a malformed manifest or config: "
                                    f"{exc}") from exc
    arch, os_name = config.get("architecture"), config.get("os")
    if (arch, os_name) != (oci_arch, "linux"):
        raise EnvironmentBuildError(
            f"base image {ref} is {os_name}/{arch}, but the workers run linux/"
            f"{oci_arch}; choose a base_image= built for that platform")
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    if len(diff_ids) != len(layers):
        raise EnvironmentBuildError(f"base image {ref} lists {len(layers)} layers but "
                                    f"{len(diff_ids)} diff_ids in its config")
    return BaseImage(reference=ref, digest=digest, config=config, layers=layers)


def _load(path: Path, ref: ImageReference, now: float) -> BaseImage | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not ref.is_digest and now - float(data["fetched_at"]) > _TAG_TTL_S:
            return None
        manifest_bytes = data["manifest"].encode()
        if sha256_digest(manifest_bytes) != data["digest"]:
            return None
        return _build(ref, data["digest"], json.loads(manifest_bytes),
                      data["config"].encode(), str(data["arch"]))
    except (OSError, ValueError, KeyError, TypeError, EnvironmentBuildError):
        return None


def _store(path: Path, manifest: Manifest, config_bytes: bytes, now: float,
           oci_arch: str) -> None:
    try:
        data = {"fetched_at": now, "digest": manifest.digest, "arch": oci_arch,
                "manifest": manifest.data.decode(), "config": config_bytes.decode()}
    except UnicodeDecodeError as exc:
        raise RegistryError("base image manifest or config is not UTF-8 JSON") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    tmp.replace(path)
