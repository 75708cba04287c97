"""Workload tasks on numpy arrays: in-place changes, sums, sizes, Monte Carlo.

A module of their own (as ``tests/_tasks.py``), one per dependency: a
worker unpickles a task by reference and imports only its small module
(never pandas or scipy for a task that needs neither, never a test
module with pytest behind it). Each test also calls them serially, in its
own process, for the result they must match.
"""

from __future__ import annotations

import random

import numpy as np

import starburst

# -- functions that change their arguments -------------------------------------


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


# -- Monte Carlo ---------------------------------------------------------------


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


# -- sizes ---------------------------------------------------------------------


def big_result(seed: int, size: int) -> np.ndarray:
    """A ``size``-byte array of seeded random bytes."""
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)
