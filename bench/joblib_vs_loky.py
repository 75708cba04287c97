"""joblib on starburst's local backend against joblib's own loky backend, side by side.

Two workloads, each run on both joblib backends in the same process, with
``n_jobs=2`` (``--n-jobs``):

* ``grid``: ``GridSearchCV(SVC(), {"C": [0.1, 1, 10], "gamma": [1e-3, 1e-4]},
  cv=5, n_jobs=2).fit`` on scikit-learn's ``load_digits`` (30 fits in one
  managed ``Parallel`` call);
* ``calls``: 200 (``--calls``) small ``Parallel(n_jobs=2)`` calls of 10
  (``--tasks``) tasks each, one after the other, as a loop over a dataset's
  parts would make them.

Each workload is timed in two ways:

* ``warm`` (the target): every pool is started fresh and warmed with one
  small ``Parallel`` call before timing, as in the other benches. starburst
  runs inside one ``parallel_config(backend="starburst")`` block (one
  session); loky's reusable executor is shut down before the warm-up, so
  neither pool's workers have imported scikit-learn from an earlier run
  (loky keeps its workers for the life of the process: a loop of fits in
  one starburst block gets the same reuse).
* ``cold``: the pool's start is in the timed region: starburst opens its
  ``parallel_config`` block (a new session, new workers) inside it; loky's
  reusable executor is shut down before each run.

Runs alternate between the backends, ``--repeat`` times (median reported);
the ratio is starburst's median time over loky's (target: at most 1.2 in
``warm``). ``grid`` also checks that starburst's ``cv_results_`` equal
loky's bitwise, except the ``*_time`` columns.

Usage (from the repository root)::

    nice -n 10 .venv/bin/python bench/joblib_vs_loky.py [--repeat 5] [--json]
    .venv/bin/python bench/joblib_vs_loky.py --quick --repeat 1 --calls 5 --cv 2 \
        --samples 200 --json   # smoke test
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _report as report  # the bench directory is not a package

BACKENDS = ("starburst", "loky")
MODES = ("warm", "cold")
# The target: starburst's warm time at most 1.2x loky's.
MAX_RATIO = 1.2


def small_task(i: int) -> int:
    """A task of a small ``Parallel`` call: a little arithmetic (module-level, picklable)."""
    return sum(j * j for j in range(100 + i))


# -- the workloads -----------------------------------------------------------------

def _grid(cv: int, n_jobs: int, samples: int | None) -> dict[str, Any]:
    """Fit the issue's ``GridSearchCV`` (on the first ``samples`` digits); its ``cv_results_``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC

    X, y = load_digits(return_X_y=True)
    X, y = X[:samples], y[:samples]
    search = GridSearchCV(SVC(), {"C": [0.1, 1, 10], "gamma": [1e-3, 1e-4]}, cv=cv,
                          n_jobs=n_jobs)
    return dict(search.fit(X, y).cv_results_)


def _calls(calls: int, tasks: int, n_jobs: int) -> list[list[int]]:
    """``calls`` small ``Parallel`` calls of ``tasks`` tasks each."""
    from joblib import Parallel, delayed

    return [Parallel(n_jobs=n_jobs)(delayed(small_task)(i) for i in range(tasks))
            for _ in range(calls)]


@contextlib.contextmanager
def _backend(name: str, n_jobs: int) -> Iterator[None]:
    """The joblib configuration of one backend (starburst: one session for the block)."""
    from joblib import parallel_config

    if name == "starburst":
        import starburst.joblib  # noqa: F401  (registers backend="starburst")

        with parallel_config(backend="starburst", n_jobs=n_jobs, progress=False):
            yield
    else:
        with parallel_config(backend="loky", n_jobs=n_jobs):
            yield


def _stop_loky() -> None:
    """Shut loky's reusable executor down, so the next loky call starts cold."""
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)


def _run(name: str, mode: str, work: Callable[[], Any], n_jobs: int, timing: report.Timing) -> Any:
    """Time ``work`` on backend ``name`` in ``mode``; return its result."""
    gc.collect()
    if name == "loky":
        _stop_loky()
    if mode == "warm":
        with _backend(name, n_jobs):
            _calls(1, n_jobs, n_jobs)  # start and warm the pool
            t0 = time.perf_counter()
            out = work()
            timing.add(time.perf_counter() - t0)
        return out
    t0 = time.perf_counter()
    with _backend(name, n_jobs):
        out = work()
    timing.add(time.perf_counter() - t0)
    return out


def _same_results(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """``cv_results_`` equal bitwise except the ``*_time`` columns."""
    keys = {k for k in a if not k.endswith("_time")}
    if keys != {k for k in b if not k.endswith("_time")}:
        return False
    for key in keys:
        x, y = a[key], b[key]
        if isinstance(x, np.ndarray) and x.dtype.kind == "f":
            if x.dtype != y.dtype or x.tobytes() != np.asarray(y).tobytes():
                return False
        elif isinstance(x, np.ma.MaskedArray):
            if not (np.array_equal(x.mask, y.mask) and list(x) == list(y)):
                return False
        elif isinstance(x, np.ndarray):
            if not np.array_equal(x, y):
                return False
        elif x != y:
            return False
    return True


# -- main --------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = report.bench_parser(__doc__)
    parser.add_argument("--n-jobs", type=int, default=2, help="n_jobs of every call (2)")
    parser.add_argument("--cv", type=int, default=5, help="GridSearchCV folds (5)")
    parser.add_argument("--calls", type=int, default=200, help="small Parallel calls (200)")
    parser.add_argument("--tasks", type=int, default=10, help="tasks per small call (10)")
    parser.add_argument("--samples", type=int, default=None,
                        help="fit on the first N digits only (default: all 1,797)")
    report.add_common_args(parser, repeat=5)
    args = parser.parse_args(argv)
    repeat = report.resolve_repeat(args)
    logging.getLogger("starburst").setLevel(logging.WARNING)

    workloads: dict[str, Callable[[], Any]] = {
        "grid": lambda: _grid(args.cv, args.n_jobs, args.samples),
        "calls": lambda: _calls(args.calls, args.tasks, args.n_jobs),
    }
    timings = {(w, m, b): report.Timing(tasks=1)
               for w in workloads for m in MODES for b in BACKENDS}
    results: dict[tuple[str, str], Any] = {}
    equal = {"grid": True, "calls": True}
    for _ in range(repeat):
        for mode in MODES:
            for workload, work in workloads.items():
                for name in BACKENDS:
                    out = _run(name, mode, work, args.n_jobs, timings[workload, mode, name])
                    first = results.setdefault((workload, name), out)
                    if workload == "grid":
                        equal["grid"] &= _same_results(first, out)
                    else:
                        equal["calls"] &= first == out
    _stop_loky()
    for workload in workloads:
        same = (_same_results if workload == "grid" else (lambda a, b: a == b))(
            results[workload, "starburst"], results[workload, "loky"])
        equal[workload] &= bool(same)

    ratios = {f"{w}_{m}": timings[w, m, "starburst"].median_s / timings[w, m, "loky"].median_s
              for w in workloads for m in MODES}
    rows = []
    for workload in workloads:
        for mode in MODES:
            sb, lk = timings[workload, mode, "starburst"], timings[workload, mode, "loky"]
            rows.append([f"{workload} ({mode})", f"{sb.median_s:.3f}", f"{lk.median_s:.3f}",
                         f"{ratios[f'{workload}_{mode}']:.2f}x",
                         " ".join(f"{s:.2f}" for s in sb.runs),
                         " ".join(f"{s:.2f}" for s in lk.runs)])
    report.print_table(
        f"joblib: starburst (local) vs loky, n_jobs={args.n_jobs}, median of {repeat} "
        f"(grid: GridSearchCV SVC cv={args.cv} on load_digits; calls: {args.calls} "
        f"Parallel calls x {args.tasks} tasks)",
        ["workload", "starburst s", "loky s", "ratio", "starburst runs", "loky runs"], rows)
    print(f"results equal to loky's (cv_results_ bitwise but *_time): grid {equal['grid']}, "
          f"calls {equal['calls']}")
    targets = [report.Target(f"{key}: loky time / starburst time (ratio <= {MAX_RATIO})",
                             1.0 / ratios[key], round(1.0 / MAX_RATIO, 3),
                             gating=key.endswith("_warm"))
               for key in ratios]
    report.print_targets(targets)
    passed = report.gating_passed(targets) and all(equal.values())

    if args.json:
        report.emit_json({
            "bench": "joblib_vs_loky", "n_jobs": args.n_jobs, "cv": args.cv,
            "calls": args.calls, "tasks": args.tasks, "samples": args.samples,
            "repeat": repeat, "quick": args.quick,
            "env": report.environment(),
            "figures": {f"{w}_{m}": {b: timings[w, m, b].as_dict() for b in BACKENDS}
                        for w in workloads for m in MODES},
            "ratios": {k: round(v, 3) for k, v in ratios.items()},
            "equal": equal,
            "targets": {t.name.split(":")[0]: t.as_dict() for t in targets},
            "pass": passed,
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())
