"""Workload tasks that use scipy: one point of an optimisation sweep.

A module of their own (as ``tests/_tasks.py``), one per dependency: a
worker unpickles a task by reference and imports only its small module
(never pandas or scipy for a task that needs neither, never a test
module with pytest behind it). Each test also calls them serially, in its
own process, for the result they must match.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

# -- scipy ---------------------------------------------------------------------


def fit_from(start: np.ndarray) -> tuple[np.ndarray, float, int, bool]:
    """Minimise the Rosenbrock function from ``start`` (one point of a sweep)."""
    result = optimize.minimize(optimize.rosen, start, jac=optimize.rosen_der, method="BFGS")
    return result.x, float(result.fun), int(result.nit), bool(result.success)
