"""The worker: ``python -m starburst.worker``, the same entrypoint on every backend."""

from __future__ import annotations

from .loop import Worker

__all__ = ["Worker"]
