"""Compute backends, found by name and imported lazily.

A missing extra raises a :class:`~starburst.exceptions.ConfigurationError`
with the exact ``pip install`` to run (as fsspec's registry does).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from ..exceptions import ConfigurationError
from ..scheduling.events import WorkerExit, describe_exit
from .base import ComputeBackend, WorkerSpec

__all__ = ["ComputeBackend", "WorkerExit", "WorkerSpec", "describe_exit", "get_backend_class",
           "known_backends"]

# name -> (module, class, install hint)
_REGISTRY: dict[str, tuple[str, str, str]] = {
    "local": ("starburst.backends.local", "LocalBackend", ""),
    "fargate": ("starburst.backends.fargate", "FargateBackend",
                "pip install 'starburst-cloud[aws]'"),
    "batch": ("starburst.backends.batch", "BatchBackend",
              "pip install 'starburst-cloud[aws]'"),
}


def known_backends() -> list[str]:
    """Names accepted by ``Executor(backend=...)``."""
    return sorted(_REGISTRY)


def get_backend_class(name: str, extra: Mapping[str, Any] | None = None) -> type[ComputeBackend]:
    """Import and return the backend class registered as ``name``.

    ``extra`` are the backend options: ``backend="fargate"`` with ``gpu=``
    runs on AWS Batch (Fargate has no GPUs), so it resolves to ``batch``.
    """
    if name not in _REGISTRY:
        raise ConfigurationError(
            f"unknown backend {name!r}; choose one of: {', '.join(known_backends())}")
    if name == "fargate" and extra is not None and extra.get("gpu") is not None:
        name = "batch"
    module_name, attr, hint = _REGISTRY[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"backend {name!r} needs packages that are not installed ({exc}); run: {hint}"
        ) from exc
    cls: Any = getattr(module, attr)
    return cls  # type: ignore[no-any-return]
