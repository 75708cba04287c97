"""A pandas groupby-apply over 400 groups of 1 MiB: ``ex.map(f, list(df.groupby("k")))``.

Each group is just above 1 MiB, so every chunk's payload goes to the
store rather than inline, and the map spans more than a hundred chunks:
chunk ids ``1``, ``10`` and ``100`` all exist, as in a user's first
real run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from . import _frame_tasks as tasks
from ._harness import Workload, assert_identical

#: Groups of the frame: more than the 100 chunk ids under which ids share
#: prefixes with their siblings (1, 10..19, 100..199).
GROUPS = 400
#: Rows per group: with an int64 key and a float64 value (16 bytes a row),
#: 65,600 rows is 1,049,600 bytes, just above 1 MiB.
ROWS_PER_GROUP = 65_600
#: Groups per chunk: 134 chunks, each payload 3 MiB (stored, not inline:
#: the local inline limit is 1 MiB, SQS's under 96 KiB).
CHUNK = 3


@pytest.fixture(scope="session")
def groups() -> list[tuple[Any, pd.DataFrame]]:
    """The groups of a 26M-row frame (420 MB), in ``groupby`` order.

    Session-scoped: pytest runs all local tests before all fargate ones,
    and a module-scoped fixture would be split (10 s on a loaded machine)
    again for the second backend.
    """
    rng = np.random.default_rng(17)
    n = GROUPS * ROWS_PER_GROUP
    # Keys in runs, as data sorted by time usually arrives (and several
    # seconds faster to split than shuffled keys on a loaded machine).
    frame = pd.DataFrame({"k": np.repeat(np.arange(GROUPS), ROWS_PER_GROUP),
                          "v": rng.standard_normal(n) * 1e3})
    return list(frame.groupby("k"))


def test_groupby_apply_over_400_groups(workload: Workload,
                                       groups: list[tuple[Any, pd.DataFrame]]) -> None:
    with workload.executor() as ex:
        # Three groups a chunk: 134 chunks. (The default sizing packs about
        # four 1 MiB groups into its 4 MiB payload target, then larger
        # chunks: some 50.)
        got = list(ex.map(tasks.summarise_group, groups, chunksize=CHUNK,
                          return_exceptions=True))
        chunks = ex.status().chunks_done
    assert chunks > 100, f"the map ran in {chunks} chunks, not the 100+ it must span"
    assert_identical(got, [tasks.summarise_group(g) for g in groups],
                     what="groupby-apply over 400 groups")
