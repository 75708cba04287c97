"""Reproducible random streams per task, like R's ``future`` with ``seed=TRUE``.

With ``Executor(seed=123)`` task ``i`` (its position in ``map``'s input,
or the submission order for ``submit``) gets the stream of
``numpy.random.SeedSequence(123).spawn(...)[i]``: computed directly as
``SeedSequence(123, spawn_key=(i,))``, so it does not depend on which
worker runs the task, how tasks are chunked, or the backend. Before each
task the worker seeds :mod:`random` and numpy's global generator from that
stream; :func:`task_rng` returns a ``numpy.random.Generator`` on it for
code that prefers explicit generators.
"""

from __future__ import annotations

import contextvars
import hashlib
import random
from typing import Any

__all__ = ["seed_task", "task_rng"]

_current: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "starburst_task_seed", default=None)


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        return None
    return numpy


def seed_task(base: int, position: int) -> contextvars.Token[tuple[int, int] | None]:
    """Seed ``random`` (and numpy's global generator) for task ``position``."""
    np = _numpy()
    if np is not None:
        # Two disjoint halves: the same key would give ``random`` and numpy
        # (both Mersenne Twister) the very same sequence.
        state = np.random.SeedSequence(base, spawn_key=(position,)).generate_state(16)
        np.random.seed(state[:8])
        random.seed(int.from_bytes(state[8:].tobytes(), "little"))
    else:
        digest = hashlib.sha256(f"starburst:{base}:{position}".encode()).digest()
        random.seed(int.from_bytes(digest, "little"))
    return _current.set((base, position))


def reset(token: contextvars.Token[tuple[int, int] | None]) -> None:
    """Forget the current task's seed (after the task)."""
    _current.reset(token)


def task_rng() -> Any:
    """A ``numpy.random.Generator`` on this task's stream (needs ``seed=`` and numpy).

    Raises:
        RuntimeError: outside a task, or when the executor has no ``seed=``.
    """
    current = _current.get()
    if current is None:
        raise RuntimeError("task_rng() works inside a task of an Executor(seed=...)")
    np = _numpy()
    if np is None:
        raise RuntimeError("task_rng() needs numpy on the worker")
    base, position = current
    return np.random.default_rng(np.random.SeedSequence(base, spawn_key=(position,)))
