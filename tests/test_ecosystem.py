"""seed=, starmap, return_exceptions and task logging, on every backend."""

from __future__ import annotations

import logging

import _seedtasks as tasks
import pytest

import starburst


def test_seeded_results_do_not_depend_on_workers_or_chunks(executor_factory) -> None:
    with executor_factory(workers=1, seed=123) as ex:
        one = list(ex.map(tasks.draw, range(12), chunksize=1))
    with executor_factory(workers=2, seed=123) as ex:
        two = list(ex.map(tasks.draw, range(12), chunksize=5))
        submitted = [ex.submit(tasks.draw, i).result(timeout=60) for i in range(3)]
    assert one == two
    # Every task has its own stream, and the three generators are not the same stream.
    assert len({r[0] for r in one}) == 12
    assert all(len(set(r)) == 3 for r in one)
    with executor_factory(workers=2, seed=124) as ex:
        other = list(ex.map(tasks.draw, range(12)))
    assert other != one
    # submit positions count submissions, from 0, like map's input positions
    assert submitted == one[:3]


def test_task_rng_outside_a_seeded_task_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="seed"):
        starburst.task_rng()


def test_starmap_and_return_exceptions(executor_factory) -> None:
    with executor_factory() as ex:
        assert list(ex.starmap(pow, [(2, 3), (3, 2), (10, 0)])) == [8, 9, 1]
        out = list(ex.map(tasks.fail_on_two, range(4), return_exceptions=True))
    assert out[:2] == [0, 10]
    assert out[3] == 30
    assert type(out[2]) is KeyError
    assert "bad item 2" in str(out[2])
    assert isinstance(out[2].__cause__, starburst.RemoteTraceback)


def test_task_log_records_reach_client_loggers(executor_factory, caplog) -> None:
    caplog.set_level(logging.WARNING)
    with executor_factory() as ex:
        assert list(ex.map(tasks.log_and_return, range(3))) == [0, 1, 2]
    records = [r for r in caplog.records if r.name == "starburst.test.task"]
    assert sorted(r.getMessage() for r in records) == [f"task says {i}" for i in range(3)]
    assert all(r.levelno == logging.WARNING for r in records)
    assert {type(r.starburst_task) for r in records} == {int}
    assert all(r.starburst_worker for r in records)
    assert not any("too quiet" in r.getMessage() for r in caplog.records)


def test_seed_must_be_a_non_negative_integer() -> None:
    with pytest.raises(starburst.ConfigurationError, match="seed"):
        starburst.Executor(seed=-1)
