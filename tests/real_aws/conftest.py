"""Fixtures of the real-AWS tests (marked ``aws``; skipped unless STARBURST_TEST_REAL_AWS=1).

They use the developer's own credentials, region and starburst config, so
the core suite's ``_clean_environment`` (which drops every ``AWS_*`` and
``STARBURST_*`` variable) is replaced here by one that keeps them.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _clean_environment() -> None:
    """Keep the developer's AWS credentials and starburst settings: these tests need them."""
