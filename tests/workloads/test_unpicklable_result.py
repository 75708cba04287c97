"""A result that fails to unpickle on the client fails its own task only."""

from __future__ import annotations

from . import _plain_tasks as tasks
from ._harness import Workload, assert_identical

#: Four chunks of five: the bad task shares its chunk with four good ones.
ITEMS, CHUNK, BAD = 20, 5, 7


def test_one_bad_result_among_good_ones(workload: Workload) -> None:
    with workload.executor() as ex:
        got = list(ex.map(tasks.maybe_poison, range(ITEMS), [BAD] * ITEMS,
                          chunksize=CHUNK, return_exceptions=True))
    failed = [i for i, r in enumerate(got) if isinstance(r, BaseException)]
    assert failed == [BAD], f"failed tasks {failed} ({[repr(got[i]) for i in failed]})"
    assert "cannot be rebuilt" in f"{got[BAD]} {got[BAD].__cause__}"
    good = [r for i, r in enumerate(got) if i != BAD]
    assert_identical(good, [3 * i for i in range(ITEMS) if i != BAD], what="good results")
