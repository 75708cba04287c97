"""Environment sync: run the user's exact Python environment on Fargate, without Docker.

::

    take_snapshot()          installed distributions + versions, Python, platform
      -> resolve()           uv pip compile for linux (the snapshot as constraints)
      -> build_layers()      uv pip install --target, reproducible tar layers, cached
      -> ensure_image()      base image + layers + starburst -> OCI manifest, pushed to
                             ECR over the registry HTTP API; tag = hash of the inputs,
                             so an unchanged environment costs one manifest HEAD
    build_code_archive()     the user's own code, shipped per session, not baked in
    apply_code_archive()     (worker) put that code first on sys.path
    extract_image()          unpack a pushed image (the emulated task runner)

Names are imported lazily: a worker that only needs
:func:`apply_code_archive` does not import httpx.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import DEFAULT_BASE_IMAGE, BaseImage
    from .code import CodeArchive, apply_code_archive, build_code_archive
    from .ecrauth import EcrCredentials, ecr_registry
    from .errors import EnvironmentBuildError, RegistryError, UnsupportedPackageError
    from .image import BuildReport, ImageRef, ensure_image
    from .layers import DEFAULT_SPLIT_BYTES, Layer, build_layers
    from .pull import extract_image
    from .registry import Registry
    from .resolve import IndexOptions, Lock, install, resolve
    from .snapshot import Snapshot, take_snapshot
    from .target import Target

__all__ = [
    "DEFAULT_BASE_IMAGE",
    "DEFAULT_SPLIT_BYTES",
    "BaseImage",
    "BuildReport",
    "CodeArchive",
    "EcrCredentials",
    "EnvironmentBuildError",
    "ImageRef",
    "IndexOptions",
    "Layer",
    "Lock",
    "Registry",
    "RegistryError",
    "Snapshot",
    "Target",
    "UnsupportedPackageError",
    "apply_code_archive",
    "build_code_archive",
    "build_layers",
    "ecr_registry",
    "ensure_image",
    "extract_image",
    "install",
    "resolve",
    "take_snapshot",
]

_WHERE = {
    "DEFAULT_BASE_IMAGE": "base", "BaseImage": "base",
    "CodeArchive": "code", "apply_code_archive": "code", "build_code_archive": "code",
    "EcrCredentials": "ecrauth", "ecr_registry": "ecrauth",
    "EnvironmentBuildError": "errors", "RegistryError": "errors",
    "UnsupportedPackageError": "errors",
    "BuildReport": "image", "ImageRef": "image", "ensure_image": "image",
    "DEFAULT_SPLIT_BYTES": "layers", "Layer": "layers", "build_layers": "layers",
    "extract_image": "pull",
    "Registry": "registry",
    "IndexOptions": "resolve", "Lock": "resolve", "install": "resolve", "resolve": "resolve",
    "Snapshot": "snapshot", "take_snapshot": "snapshot",
    "Target": "target",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
