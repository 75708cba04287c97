"""Smoke test of bench/envsync.py --quick: it runs offline and its JSON line parses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from starburst.testing.registry import registry_binary

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_envsync_bench_quick_json() -> None:
    if registry_binary() is None:
        pytest.skip("the distribution registry is not installed (apt-get install "
                    "docker-registry)")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "envsync.py"), "--quick",
                           "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert data["bench"] == "envsync"
    assert data["quick"] is True
    assert data["pass"] is True
    assert data["warm_check"]["bytes_uploaded"] == 0
    assert data["cold"]["built"] is True
    assert set(data["cold"]["layers"]) >= {"bigpkg==1.0", "2 packages"}
    assert data["upgrade"]["to"] == "1.1"
    assert 1.0 <= data["upgrade"]["ratio"] < 1.1
