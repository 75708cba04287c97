"""Functions that change their arguments, and float reductions, as a user writes them.

With ``ProcessPoolExecutor`` a task gets its own writable copy of each
argument (the caller's objects never change) and computes exactly what
the same call computes serially. The same must hold here, for arrays
small enough to ride inside the payload and for ones large enough to be
stored once by content hash.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import _array_tasks as array_tasks
from . import _frame_tasks as frame_tasks
from ._harness import Workload, assert_identical

#: Array lengths from a few elements to 4 MiB of float64 (above the 1 MiB
#: share threshold), odd ones included so no length lines up by luck.
LENGTHS = (3, 1_001, 65_537, 200_003, 524_288)
#: Float sums over 120 arrays of about 160 kB: long enough that numpy's
#: pairwise summation depends on where the data sits, small enough that the
#: whole input fits in nine chunks of the 4 MiB payload target.
SUM_ARRAYS, SUM_LENGTH = 120, 20_000


def _arrays(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n) * 1e3 for n in LENGTHS]


def test_arguments_arrive_writable_and_aligned(workload: Workload) -> None:
    arrays = _arrays(1)
    with workload.executor() as ex:
        layouts = list(ex.map(array_tasks.layout, arrays))
    # As pickle gives them: writable, and aligned for their dtype (numpy's
    # own flag; 8 bytes for float64).
    assert all(writable and aligned and address % 8 == 0
               for writable, aligned, address in layouts), (
        f"arguments of lengths {LENGTHS} arrive as (writable, aligned, address % 64): "
        f"{layouts}")


def test_numpy_functions_that_modify_their_arguments(workload: Workload) -> None:
    arrays = _arrays(1)
    before = [a.copy() for a in arrays]
    with workload.executor() as ex:
        bumped = list(ex.map(array_tasks.bump, arrays, return_exceptions=True))
        scaled = list(ex.map(array_tasks.normalise, arrays, return_exceptions=True))
    assert_identical(bumped, [array_tasks.bump(a.copy()) for a in before], what="a += 1")
    assert_identical(scaled, [array_tasks.normalise(a.copy()) for a in before], what="out=")
    assert_identical(arrays, before, what="the caller's own arrays")


def test_float_sums_are_bitwise_the_serial_ones(workload: Workload) -> None:
    rng = np.random.default_rng(2)
    arrays = [rng.standard_normal(SUM_LENGTH + i) * 10.0 ** rng.uniform(-3, 3)
              for i in range(SUM_ARRAYS)]
    with workload.executor() as ex:
        # Nine chunks, so that no chunk id is a prefix of another's ("1" and
        # "10"): this test shows the sums alone (test_pandas_groups.py has
        # the ids that share prefixes).
        got = list(ex.map(array_tasks.total, arrays, chunksize=-(-SUM_ARRAYS // 9)))
    assert_identical(got, [array_tasks.total(a) for a in arrays], what="float sums")


def test_a_pandas_function_that_assigns_into_its_frame(workload: Workload) -> None:
    rng = np.random.default_rng(3)
    # A small frame (pickled) and one above the 4 MiB Arrow threshold.
    frames = [pd.DataFrame({"k": np.arange(n) % 7, "v": rng.standard_normal(n)})
              for n in (10, 400_000)]
    before = [f.copy() for f in frames]
    with workload.executor() as ex:
        got = list(ex.map(frame_tasks.stamp, frames, return_exceptions=True))
    assert_identical(got, [frame_tasks.stamp(f.copy()) for f in before],
                     what="df.loc[0, 'v'] = 99")
    assert_identical(frames, before, what="the caller's own frames")
