"""Fixtures of the workload suite: every program runs on each backend.

* ``workload`` (parametrized ``local`` / ``fargate`` through the
  session-scoped ``_backend``): a :class:`Workload` whose
  :meth:`Workload.executor` builds an Executor on that backend and, after
  its ``with`` block, asserts that its session left nothing behind. The
  fargate variant uses the test session's one emulated AWS
  (``_support.SharedEmulator``), reset once when the first fargate test
  needs it and provisioned again (cheap, idempotent) before each test; the
  leak checks go by session id, so they hold whatever else ran before.
* ``_clean_environment`` overrides the core suite's fixture of that name,
  as ``tests/aws/conftest.py`` does: it keeps the emulator's variables and
  drops every other ``AWS_*`` and ``STARBURST_*``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import pytest
from _support import SharedEmulator

import starburst

from ._harness import Workload

_PREFIXES = ("AWS_", "STARBURST_")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch,
                       tmp_path_factory: pytest.TempPathFactory) -> None:
    """Drop the ``AWS_*``/``STARBURST_*`` that are not the emulator's.

    Without an emulator's config file, the user config points at a file that
    does not exist, so the developer's ``config.toml`` changes nothing here.
    """
    for name in list(os.environ):
        if name.startswith(_PREFIXES) and SharedEmulator.env.get(name) != os.environ[name]:
            monkeypatch.delenv(name)
    if "STARBURST_CONFIG" not in os.environ:
        monkeypatch.setenv("STARBURST_CONFIG",
                           str(tmp_path_factory.getbasetemp() / "no-user-config.toml"))


@contextlib.contextmanager
def _emulated_fargate() -> Iterator[None]:
    """The session's emulated AWS, reset once, its variables set while in use."""
    aws = SharedEmulator.get()
    saved = {name: os.environ.get(name) for name in SharedEmulator.env}
    os.environ.update(SharedEmulator.env)
    aws.reset()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="session", params=["local", "fargate"])
def _backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each backend, set up once for every workload that runs on it."""
    name: str = request.param
    setup: contextlib.AbstractContextManager[Any] = (
        _emulated_fargate() if name == "fargate" else contextlib.nullcontext())
    with setup:
        yield name


@pytest.fixture
def workload(_backend: str) -> Workload:
    """The backend of this run, its shared AWS resources present.

    Provisioning again is idempotent and cheap (a fraction of a second,
    against about one for a full reset): it restores what a test of
    another suite, run in between by pytest-xdist, may have torn down.
    """
    if _backend == "fargate":
        SharedEmulator.get().provision()
    return Workload(_backend, settings=SETTINGS)


#: Protocol intervals of the core suite's ``fast_settings``: a lost worker or
#: a stuck chunk shows within seconds instead of a test timeout. The idle
#: timeout is long enough that no worker leaves between two maps of a test.
SETTINGS = starburst.Settings(lease=10.0, heartbeat=1.0, poll=0.05, idle_timeout=30,
                              client_heartbeat=1.0, client_stale=600, timeout_grace=1.0)
