"""Fixtures of the core suite.

* ``_clean_environment`` (autouse): the developer's ``AWS_*`` and
  ``STARBURST_*`` variables never leak into a test.
* ``fast_settings``: protocol intervals that let a crash test finish in
  seconds.
* ``executor_factory``: builds executors on every backend in
  :data:`BACKENDS` and always shuts them down; the conformance suite and
  the crash matrix run once per backend through it.
* ``STARBURST_TEST_REAL_AWS`` (``1`` or ``emulated``, the default) says
  where the real-AWS tests (marked ``aws``) run: on the developer's
  account, or, for those taking ``tests/real_aws``'s ``account`` fixture,
  on ``emulated_aws()``; the others marked ``aws`` skip there.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from _support import REAL_AWS_ENV, SharedEmulator, kill_all, real_aws, session_processes, wait_for

import starburst


def pytest_configure(config: pytest.Config) -> None:
    """Refuse an unknown ``STARBURST_TEST_REAL_AWS`` before anything runs."""
    try:
        real_aws()
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from exc


def pytest_report_header(config: pytest.Config) -> str:
    """Say where the real-AWS tests run: a passing run on the emulator confirms no account."""
    if real_aws():
        return f"real-AWS tests (tests/real_aws): on your AWS account ({REAL_AWS_ENV}=1)"
    return (f"real-AWS tests (tests/real_aws): on emulated_aws(); {REAL_AWS_ENV}=1 runs them "
            "on your AWS account")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the tests marked ``aws`` that cannot run on the emulator, unless asked for.

    Those that take the ``account`` fixture (``tests/real_aws``) run on
    ``emulated_aws()`` when no real account is asked for.
    """
    if real_aws():
        return
    skip = pytest.mark.skip(reason=f"needs a real AWS account: set {REAL_AWS_ENV}=1 "
                                   "(it spends a few cents; see tests/real_aws/)")
    for item in items:
        if item.get_closest_marker("aws") is not None and \
                "account" not in getattr(item, "fixturenames", ()):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch,
                       tmp_path_factory: pytest.TempPathFactory) -> None:
    """Drop ``AWS_*`` and ``STARBURST_*`` from the developer's machine.

    The user config file is pointed at a file that does not exist, so the
    developer's own ``config.toml`` (worker counts, regions) never changes
    a test's defaults; the bulk price list URL at a closed port, so no test
    reaches the internet.
    """
    for name in list(os.environ):
        if name.startswith(("AWS_", "STARBURST_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STARBURST_CONFIG",
                       str(tmp_path_factory.getbasetemp() / "no-user-config.toml"))
    # `starburst pricing refresh` reads the public AWS Price List by default: a
    # test that does not serve its own (tests/_pricing_stub.py) gets a closed port.
    monkeypatch.setenv("STARBURST_PRICE_LIST_URL", "http://127.0.0.1:9")


@pytest.fixture
def fast_settings() -> starburst.Settings:
    """Intervals short enough that lost workers and timeouts show within seconds."""
    return starburst.Settings(lease=2.0, heartbeat=0.5, poll=0.05, idle_timeout=30,
                              client_heartbeat=1.0, client_stale=600, timeout_grace=1.0)


# -- backends ---------------------------------------------------------------


@dataclass
class BackendUnderTest:
    """A backend the suite runs against, and the Executor options it needs."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def _local() -> Iterator[dict[str, Any]]:
    yield {}


@contextlib.contextmanager
def _emulated_fargate() -> Iterator[dict[str, Any]]:
    """``backend="fargate"`` on the session's emulated AWS, reset for this test."""
    aws = SharedEmulator.get()
    saved = {k: os.environ.get(k) for k in SharedEmulator.env}
    os.environ.update(SharedEmulator.env)
    aws.reset()
    try:
        yield {}
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="session", autouse=True)
def _stop_emulator() -> Iterator[None]:
    yield
    SharedEmulator.stop()


#: Backend name -> context manager that sets up what the backend needs (an
#: emulated AWS, say) and yields the extra ``Executor`` options it takes.
#: Adding a backend to every conformance and crash test is one entry here.
BACKENDS: dict[str, Callable[[], contextlib.AbstractContextManager[dict[str, Any]]]] = {
    "local": _local,
    "fargate": _emulated_fargate,
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Iterator[BackendUnderTest]:
    """Each backend of :data:`BACKENDS`, set up for one test."""
    with BACKENDS[request.param]() as options:
        yield BackendUnderTest(request.param, options)


ExecutorFactory = Callable[..., starburst.Executor]


@pytest.fixture
def executor_factory(backend: BackendUnderTest,
                     fast_settings: starburst.Settings) -> Iterator[ExecutorFactory]:
    """Build ``Executor(backend=..., workers=2, settings=fast_settings, progress=False, **kw)``.

    Every executor built is shut down after the test (its queued work
    cancelled), and the test fails if any of its worker processes outlives
    that; leftovers are killed either way.
    """
    made: list[starburst.Executor] = []

    def make(**kw: Any) -> starburst.Executor:
        options: dict[str, Any] = {"workers": 2, "settings": fast_settings,
                                   "progress": False, **backend.options, **kw}
        ex = starburst.Executor(backend=backend.name, **options)
        made.append(ex)
        return ex

    make.backend = backend.name  # type: ignore[attr-defined]
    yield make

    leftovers: list[int] = []
    for ex in made:
        ex.shutdown(wait=True, cancel_futures=True)
        try:
            wait_for(lambda ex=ex: not session_processes(ex.session_id), timeout=10.0,
                     what=f"the workers of {ex.session_id} to exit after shutdown")
        except AssertionError:
            leftovers.extend(session_processes(ex.session_id))
    kill_all(leftovers)
    assert not leftovers, f"worker processes outlived shutdown: {leftovers}"
