"""Functions the joblib-backend tests run on workers.

A module of their own, as in ``_tasks.py``: a worker unpickles them by
reference and imports this small module, not a test module with pytest
(and scikit-learn) behind it.
"""

from __future__ import annotations

import time
from typing import Any

import starburst


class TaskFailed(ValueError):
    """Raised on purpose by :func:`fail_on`; its type must survive the trip back."""


def jittered_square(i: int) -> int:
    """``i * i`` after a short, item-dependent sleep that scrambles completion order."""
    time.sleep(0.005 * ((i * 7) % 5))
    return i * i


def fail_on(i: int, bad: int, others_sleep: float) -> int:
    """Raise :class:`TaskFailed` for ``i == bad``; every other item sleeps first."""
    if i == bad:
        raise TaskFailed(f"item {i} is bad")
    time.sleep(others_sleep)
    return i


def draw(i: int) -> tuple[int, int]:
    """``(i, a number from this task's seeded stream)``."""
    return i, int(starburst.task_rng().integers(1 << 62))


def total(values: Any, i: int) -> float:
    """``values.sum() + i``: a task that reads a large (numpy) argument."""
    return float(values.sum()) + i


def active_joblib_backend(_: int) -> str:
    """The class name of the joblib backend a nested ``Parallel`` would use here."""
    from joblib.parallel import get_active_backend

    backend, _n_jobs = get_active_backend()
    return type(backend).__name__
