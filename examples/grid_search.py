"""Tune a scikit-learn model with GridSearchCV on starburst workers, through joblib.

scikit-learn parallelises with joblib; ``import starburst.joblib`` registers
the joblib backend ``"starburst"``, and inside
``joblib.parallel_config(backend="starburst", n_jobs=N)`` every fit of the
search runs as a starburst task on N workers. Nothing else in the
scikit-learn code changes. Executor options go in the same call
(``starburst_backend="fargate"``, ``cpu=``, ``memory=``...).

The search: a support vector classifier on a synthetic classification
problem, over a grid of ``C`` and ``gamma``, with k-fold cross-validation.

Run it locally (the default) or on Fargate::

    python examples/grid_search.py --n-jobs 4 --verify
    python examples/grid_search.py --backend fargate --n-jobs 50 --samples 20000

With ``--verify`` the same search also runs sequentially in this process,
and the exit status is 1 unless both give identical scores.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import joblib
import numpy as np
from sklearn.datasets import make_classification
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC

import starburst.joblib  # noqa: F401  (registers joblib's backend "starburst")

GRID = {"C": [0.1, 1.0, 10.0, 100.0], "gamma": ["scale", 0.01, 0.1]}


def search(X: Any, y: Any, cv: int) -> GridSearchCV:
    """Fit the grid search (wherever the active joblib configuration runs it)."""
    return GridSearchCV(SVC(), GRID, cv=cv).fit(X, y)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the search on starburst, print (and verify) it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="local", help="starburst backend (default: local)")
    parser.add_argument("--n-jobs", type=int, default=4,
                        help="starburst workers, as joblib's n_jobs (default: 4)")
    parser.add_argument("--samples", type=int, default=1_000,
                        help="rows of the synthetic data set (default: 1,000)")
    parser.add_argument("--cv", type=int, default=3, help="cross-validation folds (default: 3)")
    parser.add_argument("--verify", action="store_true",
                        help="also run sequentially here and compare the scores")
    args = parser.parse_args(argv)

    X, y = make_classification(n_samples=args.samples, n_features=20, n_informative=8,
                               random_state=0)
    candidates = len(GRID["C"]) * len(GRID["gamma"])
    started = time.perf_counter()
    with joblib.parallel_config(backend="starburst", n_jobs=args.n_jobs,
                                starburst_backend=args.backend):
        remote = search(X, y, args.cv)
    elapsed = time.perf_counter() - started
    print(f"{candidates} candidates x {args.cv} folds = {candidates * args.cv} fits on "
          f"{args.backend} workers (n_jobs={args.n_jobs}) in {elapsed:.2f} s")
    print(f"best params: {remote.best_params_}")
    print(f"best CV accuracy: {remote.best_score_:.4f}")

    if args.verify:
        started = time.perf_counter()
        local = search(X, y, args.cv)
        print(f"sequential run here: {time.perf_counter() - started:.2f} s")
        same = (local.best_params_ == remote.best_params_ and np.array_equal(
            local.cv_results_["mean_test_score"], remote.cv_results_["mean_test_score"]))
        if not same:
            print("FAILED: starburst and the sequential run disagree")
            return 1
        print("verified: identical to the sequential run")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
