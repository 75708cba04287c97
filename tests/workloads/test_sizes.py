"""Sizes users hit at once: one 50 MB result, and 10,000 tiny tasks."""

from __future__ import annotations

from . import _array_tasks as array_tasks
from . import _plain_tasks as plain
from ._harness import Workload, assert_identical

#: 50 MB: far above the inline limit, so the result travels through the store.
BIG = 50 * 1000 * 1000
#: Enough tiny tasks that per-task overhead, not the work, is what runs.
TINY_TASKS = 10_000


def test_a_50_mb_result(workload: Workload) -> None:
    with workload.executor() as ex:
        got = ex.submit(array_tasks.big_result, 7, BIG).result(timeout=120)
    assert_identical(got, array_tasks.big_result(7, BIG), what="a 50 MB result")


def test_ten_thousand_tiny_tasks(workload: Workload) -> None:
    with workload.executor() as ex:
        got = list(ex.map(plain.square, range(TINY_TASKS)))
    assert_identical(got, [plain.square(i) for i in range(TINY_TASKS)],
                     what="10,000 tiny tasks")
