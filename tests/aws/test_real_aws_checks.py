"""The real-AWS tests' checks, run on the emulated AWS so they stay correct.

``tests/real_aws`` runs only against a real account (marked ``aws``); its
helper ``_run_and_check`` (a map, the computed cost, nothing left for
``starburst cleanup``) runs here on the emulator, On-Demand and Spot.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

import starburst


def _real_aws_module() -> ModuleType:
    path = Path(__file__).parent.parent / "real_aws" / "test_real_aws.py"
    spec = importlib.util.spec_from_file_location("_real_aws_checks", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("options", [{}, {"spot": "prefer"}], ids=["on-demand", "spot"])
def test_the_real_aws_checks_pass_on_the_emulator(aws, options):
    real = _real_aws_module()
    settings = starburst.Settings(poll=0.05, lease=4.0, heartbeat=1.0, client_heartbeat=1.0)
    real._run_and_check(settings=settings, **options)
