"""End to end on a real AWS account: Fargate, Fargate Spot, Graviton, a GPU.

Skipped unless ``STARBURST_TEST_REAL_AWS=1`` (the GPU test also needs
``STARBURST_TEST_REAL_GPU=1``: a g4dn.xlarge bills about $0.53/h and
starts in minutes). Run them after ``starburst setup``, with the smallest
sizes; each caps its spend with ``max_cost``. They check what the emulator
cannot: real images, real capacity providers, real stop codes and real
billing timestamps; and that nothing is left running afterwards.

    STARBURST_TEST_REAL_AWS=1 .venv/bin/pytest -n 0 tests/real_aws -m aws
"""

from __future__ import annotations

import operator
import os
import subprocess
from typing import Any

import pytest
from click.testing import CliRunner

import starburst
from starburst.cli import main

pytestmark = [pytest.mark.aws, pytest.mark.slow, pytest.mark.timeout(1800)]

_SMALL: dict[str, Any] = {"cpu": 0.25, "memory": "0.5GB", "workers": 2, "max_cost": 0.50,
                          "progress": False}


def _run_and_check(**options: Any) -> starburst.Executor:
    with starburst.Executor(backend="fargate", **{**_SMALL, **options}) as ex:
        assert list(ex.map(operator.mul, range(40), range(40))) == [i * i for i in range(40)]
    report = ex.cost()
    assert report.computed > 0  # priced from the tasks' own start and stop times
    _nothing_left(ex.session_id)
    return ex


def _nothing_left(session: str) -> None:
    """No task, job or queue of the session is left (cleanup has nothing to do)."""
    result = CliRunner().invoke(main, ["cleanup", session, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "Nothing to clean up" in result.output, result.output


def test_fargate_runs_a_map_and_leaves_nothing_running() -> None:
    _run_and_check()


def test_fargate_spot_runs_a_map() -> None:
    _run_and_check(spot="prefer")


def test_graviton_runs_a_map_from_an_arm64_image() -> None:
    ex = _run_and_check(platform="arm64", cpu=0.25)
    assert ex.status().tasks_done == 40


def test_graviton_runs_on_fargate_spot() -> None:
    # Fargate Spot supports ARM64 since 2024 (platform version 1.4.0).
    ex = _run_and_check(platform="arm64", cpu=0.25, spot="require")
    assert ex.status().tasks_done == 40


@pytest.mark.skipif(os.environ.get("STARBURST_TEST_REAL_GPU") != "1",
                    reason="a GPU instance costs ~$0.53/h: set STARBURST_TEST_REAL_GPU=1 too")
def test_a_gpu_worker_sees_its_gpu() -> None:
    with starburst.Executor(backend="fargate", gpu="nvidia-t4", workers=1, max_cost=1.00,
                            progress=False) as ex:
        listed = ex.submit(subprocess.getoutput, "nvidia-smi -L").result(timeout=1500)
    assert "Tesla T4" in listed
    _nothing_left(ex.session_id)
