"""``starburst.plan`` / ``starburst.map`` / ``starburst.submit``: the process-wide default."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future

import pytest
from _support import kill_all, session_processes, wait_for
from _tasks import add, double

import starburst
from starburst import api


@pytest.fixture
def planned(fast_settings: starburst.Settings) -> Iterator[dict[str, object]]:
    """A plan of two local workers with fast settings; reset (and shut down) afterwards."""
    options: dict[str, object] = {"workers": 2, "settings": fast_settings, "progress": False}
    starburst.plan(**options)
    sessions: list[str] = []
    try:
        yield options
    finally:
        default = api._default
        if default is not None:
            sessions.append(default.session_id)
        starburst.plan()
        for sid in sessions:
            try:
                wait_for(lambda sid=sid: not session_processes(sid), timeout=10,
                         what=f"the default executor's workers ({sid}) to exit")
            finally:
                kill_all(session_processes(sid))


def test_plan_is_reported_and_used_by_map_and_submit(planned):
    assert starburst.current_plan() == planned
    assert starburst.map(double, range(5)) == [0, 2, 4, 6, 8]
    future = starburst.submit(add, 1, 2)
    assert type(future) is Future
    assert future.result(timeout=30) == 3
    default = api._default
    assert default is not None
    assert default.workers == 2
    assert starburst.map(double, [7]) == [14]
    assert api._default is default  # the default executor (and its workers) is kept


def test_map_passes_map_arguments_through(planned):
    assert starburst.map(add, range(6), range(6), chunksize=2) == [0, 2, 4, 6, 8, 10]
    assert api._default is not None
    assert api._default.status().chunks_done == 3


def test_map_with_executor_options_runs_on_its_own_executor(planned):
    assert starburst.map(double, range(3), workers=1) == [0, 2, 4]
    assert api._default is None  # the default executor was not needed
    assert starburst.current_plan() == planned


def test_changing_the_plan_shuts_the_old_default_down(planned, fast_settings):
    assert starburst.submit(double, 1).result(timeout=30) == 2
    old = api._default
    assert old is not None
    starburst.plan(workers=1, settings=fast_settings, progress=False)
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        old.submit(double, 1)
    assert not session_processes(old.session_id)
    assert starburst.submit(double, 2).result(timeout=30) == 4
    assert api._default is not None
    assert api._default is not old
    assert api._default.workers == 1


def test_invalid_plan_is_refused_and_the_old_plan_kept(planned):
    with pytest.raises(starburst.ConfigurationError, match="workers=0"):
        starburst.plan(workers=0)
    with pytest.raises(starburst.ConfigurationError, match=r"memory='lots'"):
        starburst.plan(memory="lots")
    assert starburst.current_plan() == planned


def test_plan_with_an_unknown_backend_is_refused_now(planned):
    with pytest.raises(starburst.ConfigurationError, match="'nope'"):
        starburst.plan(backend="nope")
    assert starburst.current_plan() == planned


def test_plan_without_arguments_returns_to_the_local_defaults(planned):
    starburst.plan()
    assert starburst.current_plan() == {}


def test_current_plan_is_a_copy(planned):
    snapshot = starburst.current_plan()
    snapshot["workers"] = 99
    assert starburst.current_plan() == planned
