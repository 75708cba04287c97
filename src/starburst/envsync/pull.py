"""Pull an image from a registry and unpack its layers into a directory.

What a container runtime does, minus the container: used by the emulated
ECS task runner to run a worker from the image's files (the host
interpreter, with the image's site-packages added by
``site.addsitedir``), and by tests to check what an image holds.

Layers are applied bottom first with OCI whiteouts honoured
(``.wh.<name>`` deletes a lower file, ``.wh..wh..opq`` empties a lower
directory). Entries are extracted with tarfile's ``tar`` filter, which
refuses absolute paths and paths that climb out of the destination;
device files are skipped.
"""

from __future__ import annotations

import json
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import EnvironmentBuildError
from .oci import DOCKER_MANIFEST_LIST, OCI_INDEX, Descriptor, select_platform
from .registry import Registry
from .target import Target

__all__ = ["extract_image", "image_config", "split_reference"]

_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"
# Extraction filters arrived in Python 3.11.4; before that, the checks of
# _apply_layer (no "..", no absolute paths, no devices) are all there is.
_FILTER: dict[str, Any] = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}
_FILTER_ERRORS: tuple[type[Exception], ...] = (
    (tarfile.FilterError,) if hasattr(tarfile, "FilterError") else ())


def split_reference(registry: Registry, ref: str) -> tuple[str, str]:
    """``(repository, tag or digest)`` of ``repo:tag``, ``repo@digest`` or ``host/repo:tag``."""
    for prefix in {registry.name, registry.url.split("://", 1)[-1]}:
        if ref.startswith(prefix + "/"):
            ref = ref[len(prefix) + 1:]
    if "@" in ref:
        repo, _, reference = ref.partition("@")
    else:
        repo, colon, reference = ref.rpartition(":")
        if not colon or "/" in reference:
            repo, reference = ref, "latest"
    return repo, reference


def extract_image(registry: Registry, ref: str, dest: Path, *, platform: str = "x86_64",
                  only: str | None = None) -> Path:
    """Unpack image ``ref`` of ``registry`` into ``dest``; return its site-packages there.

    Args:
        registry: where the image is.
        ref: ``repo:tag``, ``repo@sha256:...`` (a registry host prefix is allowed).
        dest: root directory of the unpacked file system (created).
        platform: which manifest of a multi-platform index to take.
        only: extract only paths under this image path (``usr/local/lib``),
            to skip the operating system files of the base.

    Returns:
        The image's site-packages directory under ``dest``: the one named by
        the image's ``dev.starburst.site-packages`` label, else the
        python:3.X-slim location for the image's Python version.

    Raises:
        EnvironmentBuildError: the image has no manifest for the platform,
            or a layer holds an unsafe path.
        RegistryError: the registry failed.
    """
    repo, body, config = _resolve(registry, ref, platform)
    dest.mkdir(parents=True, exist_ok=True)
    prefix = PurePosixPath(only.strip("/")) if only else None
    with tempfile.TemporaryDirectory(prefix="starburst-pull-") as tmp:
        for item in body.get("layers", []):
            layer = Descriptor.from_json(item)
            blob = Path(tmp) / layer.digest.replace(":", "-")
            registry.download_blob(repo, layer.digest, blob)
            _apply_layer(blob, dest, prefix)
            blob.unlink()
    site = _site_packages(config, dest)
    site.mkdir(parents=True, exist_ok=True)
    return site


def image_config(registry: Registry, ref: str, *, platform: str = "x86_64") -> dict[str, Any]:
    """The config blob (``config.Env``, labels...) of image ``ref`` for ``platform``."""
    return _resolve(registry, ref, platform)[2]


def _resolve(registry: Registry, ref: str,
             platform: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``(repository, manifest, config)`` of ``ref``, a platform's manifest of an index."""
    target = Target.of(platform)
    repo, reference = split_reference(registry, ref)
    manifest = registry.get_manifest(repo, reference)
    body = manifest.json()
    if manifest.media_type in (OCI_INDEX, DOCKER_MANIFEST_LIST) or "manifests" in body:
        try:
            chosen = select_platform(body, arch=target.oci_arch)
        except LookupError as exc:
            raise EnvironmentBuildError(f"image {ref}: {exc}") from exc
        body = registry.get_manifest(repo, chosen.digest).json()
    config = json.loads(registry.get_blob(repo, Descriptor.from_json(body["config"]).digest))
    return repo, body, config


def _site_packages(config: dict[str, object], dest: Path) -> Path:
    inner = config.get("config")
    labels = inner.get("Labels") if isinstance(inner, dict) else None
    label = labels.get("dev.starburst.site-packages") if isinstance(labels, dict) else None
    if isinstance(label, str) and label:
        return dest / label.strip("/")
    found = sorted(dest.glob("usr/local/lib/python3.*/site-packages"))
    if found:
        return found[-1]
    raise EnvironmentBuildError("the image names no site-packages directory and has none "
                                "under /usr/local/lib")


def _apply_layer(blob: Path, dest: Path, prefix: PurePosixPath | None) -> None:
    # Whiteouts apply to lower layers only, never to this layer's own entries.
    mine: set[Path] = set()
    with tarfile.open(blob, mode="r:*") as tar:
        for member in tar:
            name = PurePosixPath(member.name.lstrip("/"))
            if name.parts[:1] == (".",):
                name = PurePosixPath(*name.parts[1:]) if len(name.parts) > 1 else name
            if prefix is not None and not (name == prefix or prefix in name.parents):
                continue
            if ".." in name.parts:
                raise EnvironmentBuildError(f"layer {blob.name} holds the unsafe path "
                                            f"{member.name!r}")
            if name.name == _OPAQUE:
                _empty_dir(dest / name.parent, keep=mine)
                continue
            if name.name.startswith(_WHITEOUT):
                _remove(dest / name.parent / name.name[len(_WHITEOUT):])
                continue
            if member.ischr() or member.isblk() or member.isfifo():
                continue
            path = dest / name
            if path.is_symlink() or (path.exists() and not (member.isdir() and path.is_dir())):
                _remove(path)
            member.name = str(name)
            mine.add(path)
            try:
                tar.extract(member, dest, **_FILTER)
            except _FILTER_ERRORS as exc:
                raise EnvironmentBuildError(f"layer {blob.name} holds an unsafe entry: "
                                            f"{exc}") from exc


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _empty_dir(path: Path, *, keep: set[Path]) -> None:
    if path.is_dir() and not path.is_symlink():
        for child in path.iterdir():
            if child not in keep and not any(k.is_relative_to(child) for k in keep):
                _remove(child)
