"""A seeded Monte Carlo (``seed=``) gives the same bits whatever the worker count.

docs/ecosystem.md: with ``seed=``, results are identical across runs,
backends, worker counts and chunk sizes; task ``i`` draws from its own
stream through ``task_rng()``, numpy's global generator and ``random``.
"""

from __future__ import annotations

from . import _array_tasks as tasks
from ._harness import Workload, assert_identical

#: Batches of the simulation (tasks); the seed is the documented example's.
BATCHES, SEED = 60, 2024


def test_seeded_monte_carlo_is_bitwise_the_same_on_1_and_3_workers(workload: Workload) -> None:
    with workload.executor(workers=1, seed=SEED) as ex:
        one = list(ex.map(tasks.option_payoff, range(BATCHES)))
    with workload.executor(workers=3, seed=SEED) as ex:
        three = list(ex.map(tasks.option_payoff, range(BATCHES), chunksize=7))
    assert_identical(three, one, what="3 workers against 1")
    # Each task has its own streams: no two batches drew the same numbers.
    for position in range(3):
        assert len({r[position] for r in one}) == BATCHES
    price = sum(r[0] for r in one) / BATCHES
    assert 5.0 < price < 12.0, f"a Black-Scholes call of about 8.0, not {price}"
