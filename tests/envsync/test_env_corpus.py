"""The environment corpus (bench/env_corpus.py): its two smallest environments, end to end.

They are created from PyPI (allowed here: the registries are reachable in
CI), resolved, built, pushed to the emulated ECR, pulled back for a check
of their wheel tags and imported by a task isolated from the host's
site-packages. x86_64 only: the arm64 half of the corpus runs in the bench.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from starburst.testing.registry import registry_binary

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "env_corpus.py"


def _bench() -> ModuleType:
    """bench/env_corpus.py as a module (the bench directory is not a package)."""
    name = "env_corpus_under_test"
    spec = importlib.util.spec_from_file_location(name, BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    path = list(sys.path)
    sys.modules[name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = path  # the bench puts its directory first on the path
        del sys.modules[name]
    return module


def _wheel(site: Path, name: str, *tags: str) -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "WHEEL").write_text("Wheel-Version: 1.0\n" + "".join(f"Tag: {t}\n" for t in tags),
                                encoding="utf-8")


def test_the_wheel_tag_check_refuses_a_wheel_of_the_other_platform(tmp_path: Path) -> None:
    check = _bench().check_wheel_tags
    _wheel(tmp_path, "pure", "py3-none-any")
    _wheel(tmp_path, "native", "cp311-cp311-manylinux_2_17_aarch64",
           "cp311-cp311-manylinux2014_aarch64")
    assert check(tmp_path, "arm64") == (True, "ok (2 wheels)")
    ok, detail = check(tmp_path, "x86_64")
    assert not ok
    assert "native-1.0.dist-info: cp311-cp311-manylinux_2_17_aarch64" in detail
    _wheel(tmp_path, "intel", "cp311-cp311-manylinux_2_28_x86_64")
    ok, detail = check(tmp_path, "arm64")
    assert not ok
    assert "intel-1.0.dist-info" in detail


@pytest.mark.slow
def test_the_smallest_two_environments_build_push_and_import_from_the_image() -> None:
    if registry_binary() is None:
        pytest.skip("the distribution registry is not installed (apt-get install "
                    "docker-registry)")
    corpus = _bench().corpus(Path("/nonexistent"))
    smallest = [env.name for env in corpus[:2]]
    # The bench installs the environments' packages as a user would, from the
    # package index (as the test command's own install step does), not only from
    # uv's cache: on a fresh machine that cache is empty. (The other envsync tests
    # stay offline.)
    env = {k: v for k, v in os.environ.items() if k != "UV_OFFLINE"}
    proc = subprocess.run([sys.executable, str(BENCH), "--env", ",".join(smallest),
                           "--platform", "x86_64", "--json"], cwd=ROOT, capture_output=True,
                          text=True, timeout=240, check=False,
                          env=env)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert data["bench"] == "env_corpus"
    assert data["pass"] is True
    rows = {(r["env"], r["platform"]): r for r in data["rows"]}
    assert set(rows) == {(name, "x86_64") for name in smallest}
    for row in rows.values():
        assert row["imports"].startswith("ok "), row
        assert row["wheel_tags"].startswith("ok ("), row
        assert row["image_mib"] > 0
        assert row["resolve_s"] is not None
