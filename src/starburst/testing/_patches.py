"""Attributes of moto's classes replaced for one owner at a time, and put back.

moto's models and server application are process-wide, so
:class:`~starburst.testing.strict.StrictRules` and
:class:`~starburst.testing.audit.Audit` each patch them through one
:class:`ProcessPatches`: it refuses a second owner, keeps the originals for
the owner's wrappers to call (:meth:`ProcessPatches.original`), and restores
them on uninstall.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

__all__ = ["ProcessPatches"]


class ProcessPatches:
    """One owner's replacements of moto attributes at a time, in this process."""

    def __init__(self, busy: str) -> None:
        """``busy`` is the error message for a second owner (say what to do)."""
        self._busy = busy
        self._lock = threading.Lock()
        self._owner: object | None = None
        self._saved: list[tuple[Any, str, Any]] = []
        # Kept after uninstall: a request served while uninstalling still finds them.
        self._originals: dict[str, Any] = {}

    def install(self, owner: object, replacements: Mapping[str, tuple[Any, str, Any]]) -> bool:
        """Set each ``name: (class, attribute, value)`` for ``owner``.

        Returns:
            False (nothing changed) if ``owner`` is installed already.

        Raises:
            RuntimeError: another owner's replacements are installed.
        """
        with self._lock:
            if self._owner is owner:
                return False
            if self._owner is not None:
                raise RuntimeError(self._busy)
            for name, (target, attribute, _) in replacements.items():
                self._originals[name] = getattr(target, attribute)
            for name, (target, attribute, value) in replacements.items():
                self._saved.append((target, attribute, self._originals[name]))
                setattr(target, attribute, value)
            self._owner = owner
            return True

    def original(self, name: str) -> Any:
        """What the replacement called ``name`` replaced."""
        return self._originals[name]

    def uninstall(self, owner: object) -> bool:
        """Put back what ``owner`` replaced; False (nothing done) if it is not installed."""
        with self._lock:
            if self._owner is not owner:
                return False
            for target, attribute, original in reversed(self._saved):
                setattr(target, attribute, original)
            self._saved = []
            self._owner = None
            return True
