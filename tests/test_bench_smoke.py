"""Smoke tests of the benches: each runs end to end at tiny sizes and its JSON line parses.

The figures themselves are not asserted (200 tasks on a busy CI machine say
nothing about throughput); only that every pool ran, shut down, and the
last line of stdout is the JSON object later tooling reads.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "local_throughput.py"


@pytest.mark.slow
def test_local_throughput_quick_json() -> None:
    for module in ("loky", "distributed"):  # the bench extra; not imported here
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install -e '.[bench]')")
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--tasks", "200", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no output; stderr:\n{proc.stderr[-3000:]}"
    data = json.loads(lines[-1])

    expected = {"bench", "tasks", "workers", "repeat", "quick", "tuned_chunksize", "env", "map",
                "submit", "ratios", "startup_s", "memory", "targets", "pass"}
    assert expected <= data.keys()
    assert data["bench"] == "local_throughput"
    assert data["tasks"] == 200
    assert data["quick"] is True
    assert set(data["map"]) == {"starburst", "ppe_cs1", "ppe_cs_tuned", "loky_cs1",
                                "loky_cs_tuned", "dask"}
    assert set(data["submit"]) == {"starburst", "ppe", "loky", "dask"}
    for figures in (*data["map"].values(), *data["submit"].values()):
        assert figures["median_tasks_per_s"] > 0
        assert len(figures["runs_s"]) == data["repeat"]
    assert set(data["ratios"]) == {"map_vs_ppe_cs1", "submit_vs_ppe"}
    assert data["ratios"]["map_vs_ppe_cs1"]["ppe_cs1"] == 1.0
    assert set(data["targets"]) == {"map_5x_ppe_cs1", "submit_0_5x_ppe", "submit_1x_ppe_goal"}
    for target in data["targets"].values():
        assert {"value", "threshold", "pass", "gating"} <= target.keys()
    memory = data["memory"]
    assert memory["generator"]["sum_ok"] is True
    assert memory["baseline"]["maxrss_mib"] > 0
    assert memory["generator"]["maxrss_mib"] > 0
    assert "growth_mib" in memory
    # The human-readable report came first.
    assert "starburst map" in proc.stdout
    assert "PASS" in proc.stdout or "FAIL" in proc.stdout


def test_dataframes_bench_json() -> None:
    """bench/dataframes.py on a small frame, one run: local and S3 tables, JSON last."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "dataframes.py"), "--rows", "120000",
         "--repeat", "1", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert data["bench"] == "dataframes"
    assert data["rows"] == 120_000
    assert data["throughput_bytes_per_s"] > 0
    for direction in ("to_worker", "to_client"):
        figures = data["figures"][direction]
        assert {"pickle", "pickle_zstd", "local", "s3"} <= set(figures)
        for method in figures.values():
            assert method["encode"]["median_s"] > 0
            assert method["decode"]["median_s"] > 0
            assert method["bytes"] > 0
        assert figures["s3"]["bytes"] < figures["local"]["bytes"]  # compressed over S3 only
        assert data["ratios_vs_pickle"][direction]["pickle"]["frame"] == 1.0
    assert "assumption: S3 moves" in proc.stdout
    assert "pickle+zstd" in proc.stdout


@pytest.mark.slow
def test_joblib_vs_loky_quick_json() -> None:
    """bench/joblib_vs_loky.py at tiny sizes: both backends, both modes, equal results."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "joblib_vs_loky.py"), "--quick", "--repeat", "1",
         "--calls", "5", "--cv", "2", "--samples", "200", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert data["bench"] == "joblib_vs_loky"
    assert (data["calls"], data["cv"], data["samples"], data["repeat"]) == (5, 2, 200, 1)
    workloads = {"grid_warm", "grid_cold", "calls_warm", "calls_cold"}
    assert set(data["figures"]) == workloads
    assert set(data["ratios"]) == workloads
    for figures in data["figures"].values():
        assert set(figures) == {"starburst", "loky"}
        for backend in figures.values():
            assert backend["median_s"] > 0
            assert len(backend["runs_s"]) == 1
    # starburst's cv_results_ equal loky's bitwise (but *_time); calls' results too.
    assert data["equal"] == {"grid": True, "calls": True}
    assert set(data["targets"]) == {f"{w}" for w in workloads}
    assert "grid (warm)" in proc.stdout
