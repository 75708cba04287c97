"""Fixtures of the operations tests (``starburst.admin``).

* ``aws``: the test session's one emulated AWS (``_support.SharedEmulator``,
  started on first use), reset (moto state wiped, worker processes killed,
  shared resources provisioned again), with its ``AWS_*``/``STARBURST_*``
  variables set for this test only.
* ``finished_session``: a fargate session whose worker printed, run to its end.

Unlike tests/aws/, the core suite's ``_clean_environment`` stays in force:
a test that does not take ``aws`` (``test_doctor``, the pricing tests) sees
no emulator, so it can prove that nothing reaches AWS.
"""

from __future__ import annotations

import pytest
from _support import SharedEmulator, finish_a_session

from starburst.testing import EmulatedAws


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> EmulatedAws:
    """The session's emulated AWS, its variables set, reset and provisioned for this test."""
    emulated = SharedEmulator.get()
    for name, value in SharedEmulator.env.items():
        monkeypatch.setenv(name, value)
    emulated.reset()
    return emulated


@pytest.fixture
def finished_session(aws: EmulatedAws) -> str:
    """A fargate session whose worker printed, run to its end."""
    return finish_a_session(aws)
