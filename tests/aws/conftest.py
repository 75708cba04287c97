"""Fixtures of the AWS suite: one emulated AWS per test session, reset per test.

* ``_no_developer_environment`` (session, autouse): the developer's
  ``AWS_*``/``STARBURST_*`` variables are removed before anything runs,
  so nothing here can reach a real account.
* ``emulated`` (session): :func:`starburst.testing.emulated_aws`, started once.
* ``aws``: the same emulator, reset (moto state wiped, worker processes
  killed, shared resources provisioned again) before the test.
* ``finished_session``: a fargate session whose worker printed, run to its end.
* ``_clean_environment`` overrides the core suite's fixture of that name:
  it keeps the emulator's variables and drops every other ``AWS_*`` and
  ``STARBURST_*``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from _support import SharedEmulator, finish_a_session

from starburst.testing import EmulatedAws

_PREFIXES = ("AWS_", "STARBURST_")
#: The AWS_*/STARBURST_* variables the session's emulator set.
_EMULATOR_ENV: dict[str, str] = {}


@pytest.fixture(scope="session", autouse=True)
def _no_developer_environment() -> Iterator[None]:
    """Remove the developer's ``AWS_*``/``STARBURST_*`` before anything else runs."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(_PREFIXES):
                patch.delenv(name)
        yield


@pytest.fixture(scope="session")
def emulated(_no_developer_environment: None) -> Iterator[EmulatedAws]:
    """One emulated AWS (moto server + ECS task runner) for the whole session."""
    # With the distribution registry installed, the emulator also plays ECR
    # (env="auto" images are built, pushed and run from); without it, env="auto"
    # tests skip and everything else runs as before.
    # One emulator per test session, shared with the core suite's fargate
    # backend (moto's state is process-wide; see _support.SharedEmulator).
    aws = SharedEmulator.get()
    _EMULATOR_ENV.update(SharedEmulator.env)
    os.environ.update(SharedEmulator.env)
    try:
        yield aws
    finally:
        _EMULATOR_ENV.clear()


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop ``AWS_*``/``STARBURST_*`` that are not the emulator's."""
    for name in list(os.environ):
        if name.startswith(_PREFIXES) and _EMULATOR_ENV.get(name) != os.environ[name]:
            monkeypatch.delenv(name)


@pytest.fixture
def aws(emulated: EmulatedAws) -> EmulatedAws:
    """The session's emulated AWS, reset and provisioned for this test."""
    emulated.reset()
    return emulated


@pytest.fixture
def finished_session(aws) -> str:
    """A fargate session whose worker printed, run to its end."""
    return finish_a_session(aws)
