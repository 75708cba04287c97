"""A process-wide default, like R's ``future::plan()``.

``starburst.plan(backend="fargate", workers=50)`` sets the options that
``starburst.map`` and ``starburst.submit`` use. The default executor is
created on first use and kept (so workers stay warm across calls) until
``plan()`` changes or the interpreter exits.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any, TypeVar

from .backends import get_backend_class
from .executor import Executor
from .options import ExecutorOptions

__all__ = ["current_plan", "map", "plan", "submit"]

T = TypeVar("T")
_MAP_ARGS = ("timeout", "chunksize", "buffersize")

_lock = threading.Lock()
_plan: dict[str, Any] = {}
_default: Executor | None = None


def plan(**options: Any) -> None:
    """Set the default executor options (those of :class:`starburst.Executor`).

    ``plan()`` with no arguments returns to the defaults (local, unless
    ``STARBURST_*``, ``[tool.starburst]`` or the user config file say
    otherwise). The options are validated now, with those files, so a typo
    fails here rather than at first use.
    """
    global _default
    validated = ExecutorOptions.resolve(**options)
    get_backend_class(validated.backend, validated.extra)
    with _lock:
        old, _default = _default, None
        _plan.clear()
        _plan.update(options)
    if old is not None:
        old.shutdown(wait=True)


def current_plan() -> dict[str, Any]:
    """The options set by :func:`plan` (empty: local defaults)."""
    with _lock:
        return dict(_plan)


def _executor() -> Executor:
    global _default
    with _lock:
        if _default is None:
            _default = Executor(**_plan)
        return _default


def map(fn: Callable[..., T], *iterables: Iterable[Any], **overrides: Any) -> list[T]:
    """Run ``fn`` over the iterables with the current plan; return the results as a list.

    Executor options in ``overrides`` (e.g. ``workers=4``) run this call on
    its own executor with the plan updated by them; ``timeout``,
    ``chunksize`` and ``buffersize`` go to ``Executor.map``.
    """
    map_kw = {k: overrides.pop(k) for k in _MAP_ARGS if k in overrides}
    if overrides:
        with Executor(**{**current_plan(), **overrides}) as ex:
            return list(ex.map(fn, *iterables, **map_kw))
    return list(_executor().map(fn, *iterables, **map_kw))


def submit(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
    """Submit ``fn(*args, **kwargs)`` to the default executor of the current plan."""
    return _executor().submit(fn, *args, **kwargs)


@atexit.register
def _shutdown_default() -> None:
    global _default
    with _lock:
        ex, _default = _default, None
    if ex is not None:
        ex.shutdown(wait=True)
