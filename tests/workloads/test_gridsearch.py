"""scikit-learn's ``GridSearchCV`` on the joblib backend, against a serial fit.

``import starburst.joblib`` and ``parallel_config(backend="starburst")``
are the only changes to the user's code; ``cv_results_`` must equal a
serial fit's exactly, except the ``*_time`` columns.
"""

from __future__ import annotations

from typing import Any

import pytest
from joblib import parallel_config
from joblib.parallel import get_active_backend
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC

import starburst.joblib  # registers backend="starburst"

from ._harness import Workload, differences

#: The grid of issue #17's benchmark; 6 candidates x 5 folds = 30 fits.
GRID = {"C": [0.1, 1, 10], "gamma": [1e-3, 1e-4]}
FOLDS = 5
#: The first 600 of the 1,797 digits: the same search, a few seconds a fit
#: set on a loaded 2-core machine.
SAMPLES = 600


@pytest.fixture(scope="module")
def digits() -> tuple[Any, Any]:
    X, y = load_digits(return_X_y=True)
    return X[:SAMPLES], y[:SAMPLES]


def test_grid_search_matches_a_serial_fit(workload: Workload, digits: tuple[Any, Any]) -> None:
    X, y = digits
    serial = GridSearchCV(SVC(), GRID, cv=FOLDS).fit(X, y)
    options = workload.options()
    options["starburst_backend"] = options.pop("backend")
    options.pop("workers")  # n_jobs is the worker count
    with parallel_config(backend="starburst", **options):
        search = GridSearchCV(SVC(), GRID, cv=FOLDS, n_jobs=2).fit(X, y)
        backend, _ = get_active_backend()
    assert isinstance(backend, starburst.joblib.StarburstBackend)
    assert backend.session_ids, "the search ran outside starburst"
    workload.assert_nothing_left(backend.session_ids)
    keys = [k for k in serial.cv_results_ if not k.endswith("_time")]
    assert sorted(search.cv_results_) == sorted(serial.cv_results_)
    found = [d for k in keys for d in differences(search.cv_results_[k], serial.cv_results_[k],
                                                   f"cv_results_[{k!r}]")]
    assert not found, f"cv_results_ differ from the serial fit's: {found[:5]}"
    assert search.best_params_ == serial.best_params_
