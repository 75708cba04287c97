"""One large numpy array passed to many tasks is stored once, not once per task.

``ex.map(fn, itertools.repeat(array, n), ...)`` hands the same array to
every task. starburst stores any argument of 1 MiB or more once per
session, under the hash of its content, and the tasks' payloads refer to
it; each worker fetches it once and keeps its bytes for all the tasks it
runs, and each task decodes its own copy from them (as a process pool
gives each call its own arguments: a task may change its copy in place).
(Without that, a 100 MB array sent to 1,000 tasks would be 100 GB of
uploads.)

The script shows it three ways:

* each task reports which copy of the array it saw: every task had one of
  its own, so no task can see another's in-place change;
* a second map with the same array uploads nothing, so it starts faster;
* an equal copy of the array (a different object, same bytes) maps to the
  same stored object by content hash.

Each task computes statistics of one block of rows, so together they
cover the whole array; the client checks them against numpy here.

Run it::

    python examples/large_array.py --mb 200 --tasks 400
    python examples/large_array.py --backend fargate --workers 20 --mb 500
"""

from __future__ import annotations

import argparse
import itertools
import os
import time

import numpy as np

import starburst


def block_stats(array: np.ndarray, block: int, blocks: int) -> tuple[str, int, float, float]:
    """The task: (which copy of ``array`` this worker holds, block, sum, max of the block).

    The "copy" is the worker's process id and the array's address there, and
    the task marks its copy (``array[0, 0] = -1``): a later task that got the
    same copy would see the mark.
    """
    rows = np.array_split(np.arange(array.shape[0]), blocks)[block]
    part = array[rows[0]:rows[-1] + 1] if len(rows) else array[:0]
    copy = f"{os.getpid()}:{id(array)}:{'seen' if array[0, 0] == -1 else 'fresh'}"
    stats = float(part.sum()), float(part.max()) if part.size else float("-inf")
    array[0, 0] = -1  # an in-place change: no other task may see it
    return copy, block, *stats


def run(ex: starburst.Executor, array: np.ndarray, tasks: int) -> tuple[float, list[tuple[
        str, int, float, float]]]:
    """Map :func:`block_stats` over ``tasks`` blocks of ``array``; return (seconds, results)."""
    started = time.perf_counter()
    results = list(ex.map(block_stats, itertools.repeat(array, tasks), range(tasks),
                          itertools.repeat(tasks, tasks)))
    return time.perf_counter() - started, results


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the three maps, print what they show, check results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="local", help="starburst backend (default: local)")
    parser.add_argument("--workers", type=int, default=None,
                        help="workers (default: one per core locally)")
    parser.add_argument("--mb", type=float, default=100.0,
                        help="size of the array in MB (default: 100)")
    parser.add_argument("--tasks", type=int, default=200, help="tasks (default: 200)")
    args = parser.parse_args(argv)
    if args.mb < 2 or args.tasks < 1:
        parser.error("--mb must be at least 2 (arguments under 1 MiB are sent inline) "
                     "and --tasks positive")

    rows = max(1, int(args.mb * 1e6 / 8 / 16))
    array = np.random.default_rng(0).random((rows, 16))
    print(f"array: {array.nbytes / 1e6:.1f} MB, {args.tasks} tasks")

    with starburst.Executor(backend=args.backend, workers=args.workers) as ex:
        first, results = run(ex, array, args.tasks)
        second, _ = run(ex, array, args.tasks)
        third, copied = run(ex, array.copy(), args.tasks)
        workers = ex.workers

    print(f"map 1 (starts the workers, stores the array once): {first:.2f} s")
    print(f"map 2 (same array, already stored): {second:.2f} s")
    print(f"map 3 (an equal copy: same content hash, not stored again): {third:.2f} s")
    per_task = array.nbytes * args.tasks / 1e6
    print(f"inline, each map would have sent {per_task:,.0f} MB "
          f"({args.tasks} x {array.nbytes / 1e6:.1f} MB)")

    workers_seen = {copy.split(":")[0] for copy, *_ in results}
    fresh = sum(copy.endswith(":fresh") for copy, *_ in results)
    print(f"{len(workers_seen)} of {workers} workers ran tasks; {fresh} of {len(results)} "
          "tasks got a fresh copy of the array")

    sums = np.array([s for _, _, s, _ in sorted(results, key=lambda r: r[1])])
    highest = max(m for *_, m in results)
    ok = (np.isclose(sums.sum(), array.sum()) and highest == array.max()
          and [r[1:] for r in copied] == [r[1:] for r in results]
          and fresh == len(results) and array[0, 0] != -1)
    if not ok:
        print("FAILED: wrong statistics, or a task saw another task's change")
        return 1
    print("checked: block statistics match numpy; every task had its own copy")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
