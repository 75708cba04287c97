"""The target platform: the workers run the exact Python version of this interpreter."""

from __future__ import annotations

import platform
import re

import pytest

from starburst.envsync.base import default_base_image
from starburst.envsync.target import Target
from starburst.exceptions import ConfigurationError

EXACT = platform.python_version()
MINOR = ".".join(EXACT.split(".")[:2])


def test_the_default_target_is_this_interpreters_exact_version() -> None:
    target = Target.of("arm64")
    assert (target.python, target.version) == (MINOR, EXACT)
    assert Target().version == EXACT
    assert Target.of("x86_64", MINOR).version == EXACT  # this minor: this exact release


def test_an_exact_version_can_be_asked_for_and_keeps_its_minor() -> None:
    target = Target.of("x86_64", "3.12.4")
    assert (target.python, target.version) == ("3.12", "3.12.4")
    assert target.site_packages == "usr/local/lib/python3.12/site-packages"
    # Another minor without a patch release: the lowest one, never this interpreter's.
    assert Target.of("x86_64", "3.13").version == "3.13"
    assert Target("x86_64", "3.13").version == "3.13"


@pytest.mark.parametrize("bad", ["3", "3.x", "2.7.18", "3.11.7.1", "3.11.-1"])
def test_malformed_versions_are_refused(bad: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape("like '3.11' or '3.11.7'")):
        Target.of("x86_64", bad)


def test_the_default_base_image_has_the_exact_python_version() -> None:
    assert default_base_image(Target.of("x86_64")).endswith(f"/python:{EXACT}-slim")
    assert default_base_image(Target.of("x86_64", "3.13")).endswith("/python:3.13-slim")
