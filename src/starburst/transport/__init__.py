"""Transports found by the scheme of their spec, imported lazily.

``local:<dir>`` is always available; ``aws:...`` needs the ``aws`` extra.
"""

from __future__ import annotations

import importlib

from ..exceptions import ConfigurationError
from .base import Message, Queue, Store, Transport

__all__ = ["Message", "Queue", "Store", "Transport", "open_transport"]

# scheme -> (module, function(spec) -> Transport, install hint)
_REGISTRY: dict[str, tuple[str, str, str]] = {
    "local": ("starburst.transport.local", "from_spec", ""),
    "aws": ("starburst.transport.aws", "from_spec", "pip install 'starburst-cloud[aws]'"),
}


def open_transport(spec: str) -> Transport:
    """Rebuild a transport from its spec (what a worker receives in its environment)."""
    scheme, _, _rest = spec.partition(":")
    if scheme not in _REGISTRY:
        raise ConfigurationError(
            f"unknown transport {scheme!r} in {spec!r}; known: {', '.join(sorted(_REGISTRY))}"
        )
    module_name, attr, hint = _REGISTRY[scheme]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"the {scheme!r} transport needs packages that are not installed: {exc}. "
            f"Run: {hint}"
        ) from exc
    transport: Transport = getattr(module, attr)(spec)
    return transport
