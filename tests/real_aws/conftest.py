"""Fixtures of the real-AWS tests (marked ``aws``): one account per test, real or emulated.

``STARBURST_TEST_REAL_AWS`` says where they run, for the whole test run:

* ``1``: the developer's own account, with their credentials, region and
  starburst config as pytest found them (so neither the core suite's
  ``_clean_environment``, which this module replaces, nor an emulator
  another test started in this process can stand in for the account);
* ``emulated``, ``0`` or unset (the default suite):
  :func:`starburst.testing.emulated_aws`, reset for each test, with the
  developer's ``AWS_*`` and ``STARBURST_*`` removed, so nothing reaches a
  real account, and a config file of the test's own (setup writes it).

The test functions are the same in both; :class:`Account` carries what
differs. On the emulator a test also asserts that the AWS behaviour it is
about was served (:meth:`Account.serves`: a
:class:`~starburst.testing.StrictRules` counter moved), which a real
account does not report.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from _account import DEVELOPER_ENV, EMULATED_SETTINGS, PREFIXES, Account
from _support import SharedEmulator, real_aws, wait_for


def _developer_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(PREFIXES) and name not in DEVELOPER_ENV:
            monkeypatch.delenv(name)
    for name, value in DEVELOPER_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(autouse=True)
def _clean_environment() -> None:
    """Replaced by :func:`account`, which sets the environment of its mode."""


@pytest.fixture(autouse=True)
def account(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Account]:
    """The account of this test: the developer's (``STARBURST_TEST_REAL_AWS=1``) or emulated."""
    if real_aws():
        _developer_environment(monkeypatch)
        yield Account(None, monkeypatch)
        return
    for name in list(os.environ):
        if name.startswith(PREFIXES):
            monkeypatch.delenv(name)
    aws = SharedEmulator.get()
    for name, value in SharedEmulator.env.items():
        monkeypatch.setenv(name, value)
    config = tmp_path / "config.toml"
    config.write_text(aws.config_path.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setenv("STARBURST_CONFIG", str(config))
    aws.reset()
    yield Account(aws, monkeypatch, {"settings": EMULATED_SETTINGS})
    wait_for(lambda: not aws.runner.pids() and not (aws.batch and aws.batch.pids()),
             timeout=20, what="every emulated task and job to exit after the test")
