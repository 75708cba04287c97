"""The joblib backend ``"starburst"``: scikit-learn and ``joblib.Parallel`` on starburst workers.

Each test runs on every backend of ``conftest.BACKENDS`` (through the
``backend`` fixture) unless it checks something local-only, and checks
that every session the joblib backend opened has stopped its workers.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import time
from collections.abc import Iterator
from typing import Any

import _joblib_tasks as tasks
import joblib
import numpy as np
import pytest
from _support import kill_all, session_processes, wait_for
from joblib import Parallel, delayed, parallel_config
from joblib.parallel import get_active_backend
from sklearn.datasets import load_iris
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC

import starburst
import starburst.client
from starburst.joblib import StarburstBackend


@pytest.fixture
def options(backend, fast_settings: starburst.Settings) -> dict[str, Any]:
    """Executor options for ``parallel_config``: the backend under test, short intervals."""
    return {"starburst_backend": backend.name, **backend.options,
            "settings": fast_settings, "progress": False}


def assert_sessions_ended(session_ids: list[str]) -> None:
    """Every session's worker processes exit (leftovers are killed, and fail the test)."""
    leftovers: list[int] = []
    for sid in session_ids:
        try:
            wait_for(lambda sid=sid: not session_processes(sid), timeout=15.0,
                     what=f"the workers of {sid} to exit")
        except AssertionError:
            leftovers.extend(session_processes(sid))
    kill_all(leftovers)
    assert not leftovers, f"worker processes outlived the joblib backend: {leftovers}"


@contextlib.contextmanager
def starburst_config(n_jobs: int, **executor_options: Any) -> Iterator[StarburstBackend]:
    """``parallel_config(backend="starburst", ...)``; yields the backend joblib built.

    Leaving the block must close the backend's executor, and its sessions'
    workers must be gone.
    """
    with parallel_config(backend="starburst", n_jobs=n_jobs, **executor_options):
        active, _ = get_active_backend()
        assert isinstance(active, StarburstBackend)
        yield active
    assert active.executor is None
    assert_sessions_ended(active.session_ids)


def test_grid_search_matches_a_sequential_run(options) -> None:
    X, y = load_iris(return_X_y=True)
    grid = {"C": [0.1, 1.0, 10.0], "gamma": ["scale", 0.1]}

    local = GridSearchCV(SVC(), grid, cv=3).fit(X, y)
    with starburst_config(n_jobs=2, **options) as backend:
        remote = GridSearchCV(SVC(), grid, cv=3).fit(X, y)
        # GridSearchCV evaluates all candidates in one managed Parallel: one session.
        assert len(backend.session_ids) == 1

    assert remote.best_params_ == local.best_params_
    assert remote.cv_results_["params"] == local.cv_results_["params"]
    np.testing.assert_array_equal(remote.cv_results_["mean_test_score"],
                                  local.cv_results_["mean_test_score"])
    np.testing.assert_array_equal(remote.cv_results_["split0_test_score"],
                                  local.cv_results_["split0_test_score"])


def test_parallel_returns_results_in_input_order() -> None:
    # The plain form, executor defaults: backend named on Parallel itself.
    out = Parallel(n_jobs=2, backend="starburst")(
        delayed(tasks.jittered_square)(i) for i in range(50))
    assert out == [i * i for i in range(50)]


def test_results_in_order_with_options_and_generators(options) -> None:
    with starburst_config(n_jobs=2, **options) as backend:
        out = Parallel(batch_size=3)(delayed(tasks.jittered_square)(i) for i in range(40))
        unordered = Parallel(return_as="generator_unordered")(
            delayed(tasks.jittered_square)(i) for i in range(20))
        assert sorted(unordered) == [i * i for i in range(20)]
        # Both (unmanaged) Parallel calls ran in the block's one session.
        assert len(backend.session_ids) == 1
    assert out == [i * i for i in range(40)]


def test_parallel_calls_in_one_config_block_share_one_session(options) -> None:
    X, y = load_iris(return_X_y=True)
    with starburst_config(n_jobs=2, **options) as backend:
        for call in range(12):
            out = Parallel()(delayed(tasks.jittered_square)(i) for i in range(call, call + 5))
            assert out == [i * i for i in range(call, call + 5)]
            executor = backend.executor
            assert executor is not None, "a Parallel call closed the block's session"
        GridSearchCV(SVC(), {"C": [0.1, 1.0]}, cv=2).fit(X, y)
        with Parallel() as parallel:
            assert parallel(delayed(tasks.jittered_square)(i) for i in range(3)) == [0, 1, 4]
        # A nested block that sets no backend shares the outer block's one too.
        with parallel_config(verbose=0):
            assert Parallel()(delayed(tasks.jittered_square)(i) for i in range(3)) == [0, 1, 4]
        assert backend.executor is executor
        assert len(backend.session_ids) == 1, backend.session_ids


def test_parallel_outside_a_config_block_closes_its_session_at_its_end(fast_settings) -> None:
    backend = StarburstBackend(settings=fast_settings, progress=False)
    out = Parallel(n_jobs=2, backend=backend)(
        delayed(tasks.jittered_square)(i) for i in range(6))
    assert out == [i * i for i in range(6)]
    assert len(backend.session_ids) == 1
    assert backend.executor is None
    assert_sessions_ended(backend.session_ids)


def test_grid_search_cv_results_equal_lokys_bitwise_except_times(options) -> None:
    X, y = load_iris(return_X_y=True)
    grid = {"C": [0.1, 1.0, 10.0], "gamma": [0.01, 0.1]}
    with parallel_config(backend="loky", n_jobs=2):
        loky = GridSearchCV(SVC(), grid, cv=3).fit(X, y).cv_results_
    with starburst_config(n_jobs=2, **options):
        ours = GridSearchCV(SVC(), grid, cv=3).fit(X, y).cv_results_
    keys = sorted(k for k in loky if not k.endswith("_time"))
    assert keys == sorted(k for k in ours if not k.endswith("_time"))
    for key in keys:
        expected, got = loky[key], ours[key]
        if isinstance(expected, np.ma.MaskedArray):
            assert list(got) == list(expected), key
            assert np.array_equal(np.ma.getmaskarray(got), np.ma.getmaskarray(expected)), key
        elif isinstance(expected, np.ndarray):
            assert got.dtype == expected.dtype, key
            assert got.tobytes() == expected.tobytes(), key
        else:
            assert got == expected, key


def test_task_exception_keeps_its_type_and_aborts_the_rest(options) -> None:
    with starburst_config(n_jobs=2, **options):
        started = time.monotonic()
        with pytest.raises(tasks.TaskFailed, match="item 3 is bad") as info:
            Parallel(batch_size=1)(delayed(tasks.fail_on)(i, 3, 60.0) for i in range(3, 12))
        elapsed = time.monotonic() - started
    assert type(info.value) is tasks.TaskFailed
    assert isinstance(info.value.__cause__, starburst.RemoteTraceback)
    # The other items sleep 60 s each: the abort stopped them instead of waiting.
    assert elapsed < 40, f"the error took {elapsed:.1f}s: the rest of the input ran"


def test_managed_parallel_is_usable_after_a_failed_call(options) -> None:
    with starburst_config(n_jobs=2, **options) as backend:
        with Parallel(batch_size=1) as parallel:
            # The last item fails: were an earlier one to fail, joblib itself (any
            # backend, loky included, joblib 1.6) could leave batches of this call
            # in its ready queue and return them as part of the next call.
            with pytest.raises(tasks.TaskFailed):
                parallel(delayed(tasks.fail_on)(i, 5, 0.0) for i in range(6))
            # abort_everything(ensure_ready=True) left a fresh executor open.
            assert parallel(delayed(tasks.jittered_square)(i) for i in range(6)) == [
                i * i for i in range(6)]
        assert len(backend.session_ids) == 2


def test_seed_option_reaches_the_tasks(options) -> None:
    def run(seed: int) -> list[tuple[int, int]]:
        with starburst_config(n_jobs=2, seed=seed, **options):
            return Parallel(batch_size=1)(delayed(tasks.draw)(i) for i in range(6))

    first, again, other = run(7), run(7), run(8)
    assert [i for i, _ in first] == list(range(6))
    assert first == again
    assert len({v for _, v in first}) == 6
    assert {v for _, v in other}.isdisjoint({v for _, v in first})


def test_large_arguments_are_stored_once_per_session(options, monkeypatch) -> None:
    frames: list[int] = []
    real_dumps = starburst.client.dumps

    def counting_dumps(obj: Any, *args: Any, **kwargs: Any) -> bytes:
        frame = real_dumps(obj, *args, **kwargs)
        frames.append(len(frame))
        return frame

    real_parts = starburst.client.dumps_parts

    def counting_parts(parts: Any, *args: Any, **kwargs: Any) -> bytes:
        frame = real_parts(parts, *args, **kwargs)
        frames.append(len(frame))
        return frame

    monkeypatch.setattr(starburst.client, "dumps", counting_dumps)
    monkeypatch.setattr(starburst.client, "dumps_parts", counting_parts)  # the payloads
    values = np.random.default_rng(0).random(300_000)  # 2.4 MB
    with starburst_config(n_jobs=2, **options):
        out = Parallel(batch_size=1)(delayed(tasks.total)(values, i) for i in range(8))
    assert out == [float(values.sum()) + i for i in range(8)]
    big = [n for n in frames if n >= values.nbytes]
    assert len(big) == 1, f"the array was pickled {len(big)} times (frame sizes {frames})"
    assert len(frames) >= 8


def test_nested_parallel_on_a_worker_uses_threads(options) -> None:
    with starburst_config(n_jobs=2, **options):
        names = Parallel(batch_size=1)(delayed(tasks.active_joblib_backend)(i) for i in range(2))
    assert names == ["ThreadingBackend", "ThreadingBackend"]


# -- the backend contract, local only ---------------------------------------


def test_n_jobs_sets_the_worker_count(fast_settings) -> None:
    cores = len(os.sched_getaffinity(0))
    backend = StarburstBackend(settings=fast_settings, progress=False)
    assert backend.effective_n_jobs(-1) == cores
    assert backend.effective_n_jobs(None) == cores
    assert backend.effective_n_jobs(-2) == max(1, cores - 1)
    assert backend.effective_n_jobs(7) == 7
    with pytest.raises(ValueError, match="n_jobs == 0"):
        backend.effective_n_jobs(0)
    assert backend.configure(n_jobs=3) == 3
    executor = backend.executor
    assert executor is not None
    assert executor.workers == 3
    assert backend.effective_n_jobs(3) == 3
    backend.terminate()
    assert backend.executor is None
    assert_sessions_ended(backend.session_ids)

    with_workers = StarburstBackend(workers=2, settings=fast_settings, progress=False)
    assert with_workers.effective_n_jobs(-1) == 2
    assert with_workers.effective_n_jobs(-2) == 1


def test_n_jobs_one_runs_in_this_process_without_a_session() -> None:
    backend = StarburstBackend(progress=False)
    with pytest.raises(joblib.parallel.FallbackToBackend):
        backend.configure(n_jobs=1)
    assert backend.session_ids == []
    out = Parallel(n_jobs=1, backend="starburst")(delayed(os.getpid)() for _ in range(2))
    assert out == [os.getpid()] * 2


def test_bad_options_fail_in_parallel_config() -> None:
    with pytest.raises(starburst.ConfigurationError, match="workers"):
        parallel_config(backend="starburst", workers=0)
    with pytest.raises(starburst.ConfigurationError, match="unknown backend"):
        parallel_config(backend="starburst", starburst_backend="nowhere")


def test_plan_options_are_the_defaults() -> None:
    starburst.plan(workers=3, progress=False)
    try:
        assert StarburstBackend().effective_n_jobs(-1) == 3
        assert StarburstBackend(workers=5).effective_n_jobs(-1) == 5
    finally:
        starburst.plan()


def test_submit_outside_a_parallel_call_is_refused() -> None:
    backend = StarburstBackend(progress=False)
    with pytest.raises(RuntimeError, match="no open executor"):
        backend.submit(lambda: [1])
    assert backend.session_ids == []


def test_backend_pickles_without_its_executor(fast_settings) -> None:
    backend = StarburstBackend(workers=2, seed=5, settings=fast_settings, progress=False)
    backend.configure(n_jobs=2)
    try:
        copy = pickle.loads(pickle.dumps(backend))
    finally:
        backend.terminate()
    assert isinstance(copy, StarburstBackend)
    assert copy.executor is None
    assert copy.session_ids == []
    assert copy.effective_n_jobs(-1) == 2
    assert_sessions_ended(backend.session_ids)


class _SlowPollTime:
    """``time`` for ``joblib.parallel`` whose ``sleep`` (its 10 ms result poll) takes 1 s."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(1.0 if seconds > 0 else 0)


def test_a_small_call_ends_when_its_results_arrive_not_at_joblibs_poll(
        fast_settings, monkeypatch: pytest.MonkeyPatch) -> None:
    # With results taken through callbacks, joblib's main thread polls every
    # 10 ms, so a call ends on a poll tick; patched to 1 s, the tick shows.
    with starburst_config(n_jobs=2, settings=fast_settings, progress=False):
        assert Parallel()(delayed(tasks.jittered_square)(i) for i in range(4)) == [
            0, 1, 4, 9]  # warm
        monkeypatch.setattr(joblib.parallel, "time", _SlowPollTime())
        started = time.monotonic()
        squares = Parallel()(delayed(tasks.jittered_square)(i) for i in range(10))
        elapsed = time.monotonic() - started
        monkeypatch.undo()
    assert squares == [i * i for i in range(10)]
    assert elapsed < 0.9, f"the call took {elapsed:.2f}s: it waited for joblib's poll"
