"""OCI image format pieces: media types, descriptors, references, platforms.

Pure functions and constants, no I/O. Manifests and configs are written
as canonical JSON (sorted keys, no spaces), so the same content always has
the same digest.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DOCKER_CONFIG",
    "DOCKER_LAYER_GZIP",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "MANIFEST_ACCEPT",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER_GZIP",
    "OCI_MANIFEST",
    "Descriptor",
    "ImageReference",
    "canonical_json",
    "oci_layer_type",
    "parse_reference",
    "select_platform",
    "sha256_digest",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

#: Everything a manifest GET may return; registries pick the first they hold.
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST])

# Docker media types whose bytes are identical to an OCI type's.
_TO_OCI = {
    DOCKER_LAYER_GZIP: OCI_LAYER_GZIP,
    DOCKER_CONFIG: OCI_CONFIG,
    DOCKER_MANIFEST: OCI_MANIFEST,
    DOCKER_MANIFEST_LIST: OCI_INDEX,
}

_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
# Docker Hub is addressed as docker.io in references, served at registry-1.
_DOCKER_HUB = "registry-1.docker.io"


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A content descriptor: what a manifest says about a blob.

    Attributes:
        media_type: how to read the blob.
        digest: ``sha256:<hex>`` of its bytes.
        size: its size in bytes.
        annotations: optional string annotations.
    """

    media_type: str
    digest: str
    size: int
    annotations: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The descriptor as it appears in a manifest."""
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest,
                               "size": self.size}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Descriptor:
        """Read a descriptor from a manifest.

        Raises:
            ValueError: a field is missing or the digest is not sha256.
        """
        digest = str(data.get("digest", ""))
        if not _DIGEST_RE.match(digest):
            raise ValueError(f"unsupported or malformed digest {digest!r}")
        return cls(media_type=str(data["mediaType"]), digest=digest, size=int(data["size"]),
                   annotations=tuple(sorted((data.get("annotations") or {}).items())))


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A parsed image reference such as ``public.ecr.aws/docker/library/python:3.11-slim``.

    Attributes:
        registry: host[:port] of the registry API.
        repository: repository path (``library/python`` on Docker Hub).
        reference: a tag or a ``sha256:`` digest.
    """

    registry: str
    repository: str
    reference: str

    @property
    def is_digest(self) -> bool:
        """Whether the reference pins a digest (immutable) rather than a tag."""
        return bool(_DIGEST_RE.match(self.reference))

    @property
    def url(self) -> str:
        """Base URL of the registry API: http for loopback hosts, https otherwise."""
        host = self.registry.split(":")[0]
        scheme = "http" if host in ("127.0.0.1", "localhost", "::1") else "https"
        return f"{scheme}://{self.registry}"

    def __str__(self) -> str:
        sep = "@" if self.is_digest else ":"
        return f"{self.registry}/{self.repository}{sep}{self.reference}"


def parse_reference(ref: str) -> ImageReference:
    """Parse an image reference the way docker does.

    ``python:3.11-slim`` is Docker Hub's ``library/python``; a first path
    component with a dot or a colon, or ``localhost``, is a registry host.

    Raises:
        ValueError: an empty repository.
    """
    rest, _, digest = ref.partition("@")
    first, _, remainder = rest.partition("/")
    if remainder and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, remainder
    else:
        registry, path = _DOCKER_HUB, rest
    if registry in ("docker.io", "index.docker.io"):
        registry = _DOCKER_HUB
    name, colon, tag = path.rpartition(":")
    if not colon or "/" in tag:
        name, tag = path, "latest"
    if registry == _DOCKER_HUB and "/" not in name:
        name = f"library/{name}"
    if not name:
        raise ValueError(f"image reference {ref!r} names no repository")
    return ImageReference(registry=registry, repository=name, reference=digest or tag)


def canonical_json(obj: object) -> bytes:
    """JSON with sorted keys and no whitespace: equal content, equal bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def oci_layer_type(media_type: str) -> str:
    """The OCI media type for a layer or config whose bytes are the same as Docker's."""
    return _TO_OCI.get(media_type, media_type)


def select_platform(index: dict[str, Any], *, arch: str, os: str = "linux") -> Descriptor:
    """The manifest descriptor of an image index for ``os``/``arch``.

    Attestation manifests (``unknown/unknown``) are skipped; on arm64 a
    ``v8`` variant, or none, is accepted.

    Raises:
        LookupError: the index has no manifest for the platform.
    """
    offered: list[str] = []
    for item in index.get("manifests", []):
        platform = item.get("platform") or {}
        offered.append(f"{platform.get('os')}/{platform.get('architecture')}")
        if platform.get("os") != os or platform.get("architecture") != arch:
            continue
        if arch == "arm64" and platform.get("variant") not in (None, "v8"):
            continue
        return Descriptor.from_json(item)
    raise LookupError(f"the image index has no {os}/{arch} manifest (it has: "
                      f"{', '.join(sorted(set(offered))) or 'none'})")
