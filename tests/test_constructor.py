"""``Executor``'s constructor takes ``ProcessPoolExecutor``'s arguments unchanged,
and checks every option at construction (issue #17, defects 13 and 14)."""

from __future__ import annotations

import multiprocessing
import os
import warnings

import pytest

import starburst
from starburst.options import ExecutorOptions


def test_max_workers_is_an_alias_of_workers(fast_settings: starburst.Settings) -> None:
    with starburst.Executor(max_workers=2, settings=fast_settings, progress=False) as ex:
        assert ex.workers == 2
        assert ex.submit(abs, -3).result(timeout=30) == 3


def test_an_int_first_positional_is_max_workers(fast_settings: starburst.Settings) -> None:
    with starburst.Executor(2, settings=fast_settings, progress=False) as ex:
        assert ex.workers == 2
        assert ex._options.backend == "local"
        assert list(ex.map(abs, [-1, -2])) == [1, 2]


def test_a_str_first_positional_stays_the_backend() -> None:
    assert ExecutorOptions.resolve(backend="local").backend == "local"
    with pytest.raises(starburst.ConfigurationError, match="unknown backend 'nope'"):
        starburst.Executor("nope", progress=False)


@pytest.mark.parametrize(("args", "kwargs", "words"), [
    ((True,), {}, ["True", "max_workers", "backend"]),
    ((2.5,), {}, ["2.5", "max_workers", "backend"]),
    ((0,), {}, ["max_workers=0", "positive integer"]),
    ((), {"max_workers": 2, "workers": 3}, ["max_workers=2", "workers=3", "one of them"]),
    ((2,), {"workers": 3}, ["max_workers=2", "workers=3", "one of them"]),
])
def test_bad_worker_counts_are_refused(args: tuple[object, ...], kwargs: dict[str, object],
                                       words: list[str]) -> None:
    with pytest.raises(starburst.ConfigurationError) as info:
        starburst.Executor(*args, progress=False, **kwargs)  # type: ignore[arg-type]
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_mp_context_is_accepted_locally(fast_settings: starburst.Settings) -> None:
    for context in (None, multiprocessing.get_context("spawn"),
                    multiprocessing.get_context("forkserver")):
        with starburst.Executor(1, mp_context=context, settings=fast_settings,
                                progress=False) as ex:
            assert ex.submit(abs, -1).result(timeout=30) == 1


def test_mp_context_must_be_a_context_and_is_local_only() -> None:
    with pytest.raises(starburst.ConfigurationError, match="mp_context='spawn' must be"):
        starburst.Executor(mp_context="spawn", progress=False)
    with pytest.raises(starburst.ConfigurationError, match="mp_context= applies to the local "
                                                           "backend only"):
        ExecutorOptions.resolve(backend="fargate", mp_context=multiprocessing.get_context())


def test_initializer_options_are_validated_at_construction() -> None:
    options = ExecutorOptions.resolve(initializer=print, initargs=("a", 1),
                                      max_tasks_per_child=3)
    assert (options.initializer, options.initargs, options.max_tasks_per_child) == (
        print, ("a", 1), 3)
    for kwargs, words in [
        ({"initializer": "setup"}, ["initializer='setup'", "callable"]),
        ({"initializer": print, "initargs": ["a"]}, ["initargs=['a']", "tuple"]),
        ({"initargs": (1,)}, ["initargs", "without an initializer"]),
        ({"max_tasks_per_child": 0}, ["max_tasks_per_child=0", "positive integer"]),
        ({"max_tasks_per_child": True}, ["max_tasks_per_child=True", "positive integer"]),
    ]:
        with pytest.raises(starburst.ConfigurationError) as info:
            starburst.Executor(progress=False, **kwargs)  # type: ignore[arg-type]
        for word in words:
            assert word in str(info.value), (word, str(info.value))


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"detached": "no"}, ["detached='no'", "True or False"]),
    ({"detached": 0}, ["detached=0", "True or False"]),
    ({"progress": "x"}, ["progress='x'", "True, False or None"]),
    ({"progress": 1}, ["progress=1", "True, False or None"]),
    ({"debug": "yes"}, ["debug='yes'", "True or False"]),
    ({"settings": "fast"}, ["settings='fast'", "starburst.Settings"]),
    ({"settings": {"poll": 1}}, ["settings={'poll': 1}", "starburst.Settings(poll=1)"]),
    ({"max_cost": float("inf")}, ["max_cost=inf", "positive number of dollars"]),
    ({"cpu": True}, ["cpu=True", "vCPUs"]),
])
def test_every_option_is_checked_at_construction(kwargs: dict[str, object],
                                                 words: list[str]) -> None:
    with pytest.raises(starburst.ConfigurationError) as info:
        starburst.Executor(progress=kwargs.pop("progress", False), **kwargs)  # type: ignore[arg-type]
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_detached_no_is_refused_not_run_detached() -> None:
    # Before: detached="no" was truthy and the session ran detached.
    with pytest.raises(starburst.ConfigurationError, match="detached='no'"):
        starburst.plan(detached="no")


def test_a_huge_local_worker_count_is_capped_with_a_warning(
        fast_settings: starburst.Settings) -> None:
    cap = max(32, 8 * len(os.sched_getaffinity(0)))  # 8 per core, at least 32
    assert cap >= (os.cpu_count() or 1)
    with pytest.warns(RuntimeWarning, match=rf"workers=1000000000 .* capped at {cap}"):
        ex = starburst.Executor(10**9, settings=fast_settings, progress=False)
    with ex:
        assert ex.workers == cap
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with starburst.Executor(cap, settings=fast_settings, progress=False) as ex:
            assert ex.workers == cap


def test_an_unknown_option_says_truthfully_where_it_applies() -> None:
    with pytest.raises(starburst.ConfigurationError) as info:
        starburst.Executor(bogus=1, progress=False)  # type: ignore[call-arg]
    message = str(info.value)
    assert "bogus" in message
    assert "not an option of any backend" in message
    assert "apply to backend='fargate'" not in message
    with pytest.raises(starburst.ConfigurationError) as info:
        starburst.Executor(region="us-east-1", progress=False)  # type: ignore[call-arg]
    assert "region applies to backend='fargate' only" in str(info.value)
