"""The task functions of the workloads, written as a user would write them.

A module of their own (as ``tests/_tasks.py``): workers unpickle them by
reference and import this small module, never a test module with pytest
behind it. Each test also calls them serially, in its own process, for
the result they must match.
"""

from __future__ import annotations

import json
import logging
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize

import starburst

# -- pandas groupby-apply ----------------------------------------------------------


def summarise_group(item: tuple[Any, pd.DataFrame]) -> tuple[Any, float, float, float, int]:
    """A group's key, the sum, mean and standard deviation of ``v``, its row count."""
    key, group = item
    values = group["v"]
    return key, float(values.sum()), float(values.mean()), float(values.std()), len(group)


# -- functions that change their arguments ------------------------------------------


def bump(a: np.ndarray) -> np.ndarray:
    """Add one in place and return the same array."""
    a += 1
    return a


def normalise(a: np.ndarray) -> np.ndarray:
    """Scale in place to unit maximum (``out=``, as numpy code often does)."""
    np.divide(a, np.abs(a).max(), out=a)
    return a


def layout(a: np.ndarray) -> tuple[bool, bool, int]:
    """Whether the task's argument is writable, aligned, and its address modulo 64."""
    return bool(a.flags.writeable), bool(a.flags.aligned), a.ctypes.data % 64


def total(a: np.ndarray) -> float:
    """``a.sum()``: a float reduction whose last bits depend on how it is computed."""
    return float(a.sum())


def stamp(df: pd.DataFrame) -> pd.DataFrame:
    """Overwrite the first value of ``v`` and add a column: a DataFrame changed in place."""
    df.loc[df.index[0], "v"] = 99.0
    df["w"] = df["v"] * 2
    return df


# -- scipy -------------------------------------------------------------------------


def fit_from(start: np.ndarray) -> tuple[np.ndarray, float, int, bool]:
    """Minimise the Rosenbrock function from ``start`` (one point of a sweep)."""
    result = optimize.minimize(optimize.rosen, start, jac=optimize.rosen_der, method="BFGS")
    return result.x, float(result.fun), int(result.nit), bool(result.success)


# -- Monte Carlo -------------------------------------------------------------------


def option_payoff(i: int) -> tuple[float, float, float]:
    """One batch of a European call priced by simulation, from this task's seeded streams.

    Uses all three generators a user might reach for: ``task_rng()``,
    numpy's global generator and the stdlib's ``random``.
    """
    rng = starburst.task_rng()
    z = rng.standard_normal(20_000)
    spot = 100.0 * np.exp((0.05 - 0.5 * 0.2**2) + 0.2 * z)
    payoff = float(np.maximum(spot - 105.0, 0.0).mean() * np.exp(-0.05))
    return payoff, float(np.random.standard_normal()), random.random()


# -- files -------------------------------------------------------------------------


def count_words(source: str, target: str) -> int:
    """Count the words of ``source``, write them as JSON to ``target``; return how many."""
    words = Path(source).read_text().split()
    counts: dict[str, int] = {}
    for word in words:
        counts[word] = counts.get(word, 0) + 1
    Path(target).write_text(json.dumps(dict(sorted(counts.items()))))
    return len(words)


# -- sizes -------------------------------------------------------------------------


def big_result(seed: int, size: int) -> np.ndarray:
    """A ``size``-byte array of seeded random bytes."""
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)


def square(i: int) -> int:
    """A tiny task."""
    return i * i


# -- output ------------------------------------------------------------------------

#: The logger the chatty task writes to; the test listens on it.
LOGGER = "workloads.chatty"


def chatty(i: int) -> int:
    """Print to stdout and stderr and log a warning, then return ``2 * i``."""
    print(f"processing item {i}")
    print(f"item {i} looks odd", file=sys.stderr)
    logging.getLogger(LOGGER).warning("item %d needs a second look", i)
    return 2 * i


# -- a result that cannot be unpickled on the client --------------------------------


class UnpicklableOnLoad(Exception):
    """Raised while the client unpickles :class:`Poison` (never on the worker)."""


def _refuse(reason: str) -> None:
    raise UnpicklableOnLoad(reason)


class Poison:
    """A value that pickles on the worker and fails to unpickle on the client."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return _refuse, ("this result cannot be rebuilt",)


def maybe_poison(i: int, bad: int) -> Any:
    """``i * 3``, except a :class:`Poison` for ``i == bad``."""
    return Poison() if i == bad else i * 3
