"""A scipy optimisation sweep: ``minimize`` from many starting points."""

from __future__ import annotations

import numpy as np

from . import _scipy_tasks as tasks
from ._harness import Workload, assert_identical

#: Starting points of the sweep, in 4 dimensions of the Rosenbrock valley.
STARTS, DIMENSIONS = 48, 4


def test_minimize_from_many_starting_points(workload: Workload) -> None:
    starts = list(np.random.default_rng(5).uniform(-2.0, 2.0, (STARTS, DIMENSIONS)))
    with workload.executor() as ex:
        got = list(ex.map(tasks.fit_from, starts, return_exceptions=True))
    assert_identical(got, [tasks.fit_from(s) for s in starts], what="minimize sweep")
    assert all(r[3] for r in got), "every start converges, as it does serially"
