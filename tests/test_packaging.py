"""The project builds as a wheel and an sdist that install and run in a fresh venv.

Issue #17, defect 22: the install hints name ``pip install 'starburst-cloud[aws]'``,
so the distributions must be publishable the day they are published. This
builds both with ``uv build`` (the wheel from the sdist, so the sdist is
proved complete), checks them with ``twine check``, looks inside the sdist,
installs the wheel into a new virtual environment that shares nothing with
the development one, and runs ``starburst demo`` there.

uv is asked to work offline first (its cache, filled when the development
environment was installed, holds hatchling and the runtime dependencies);
on a fresh machine with an empty cache it falls back to the package index.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

import starburst

ROOT = Path(__file__).resolve().parents[1]
#: uv ships with the aws extra (envsync uses it), so it sits beside this Python.
UV = Path(sys.executable).with_name("uv")
#: Generous for a loaded two-core machine: a build, a venv and an install
#: each take a few seconds from uv's cache, longer from the index.
_STEP_TIMEOUT = 240
#: What an sdist must hold for a wheel to be built from it and for its
#: tests to run; and what it must never carry.
_SDIST_NEEDS = ("pyproject.toml", "README.md", "LICENSE", "src/starburst/__init__.py",
                "src/starburst/py.typed", "src/starburst/_version.py", "tests/conftest.py")
_SDIST_NEVER = (".venv/", "__pycache__/", ".hypothesis/", ".mypy_cache/", ".pytest_cache/",
                ".ruff_cache/", "site/", "dist/")

pytestmark = pytest.mark.slow


def _run(args: list[str | Path], *, cwd: Path, env: dict[str, str] | None = None,
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=_STEP_TIMEOUT, check=False)


def _uv(args: list[str | Path], *, cwd: Path) -> str:
    """Run uv offline (from its cache); if that fails, once more with the index."""
    offline = _run([UV, *args, "--offline"], cwd=cwd)
    if offline.returncode == 0:
        return offline.stdout + offline.stderr
    online = _run([UV, *args], cwd=cwd)
    assert online.returncode == 0, (
        f"uv {' '.join(map(str, args))} failed offline:\n{offline.stderr}\n"
        f"and with the index:\n{online.stderr}")
    return online.stdout + online.stderr


def _built(dist: Path) -> tuple[Path, Path]:
    [wheel] = dist.glob("starburst_cloud-*.whl")
    [sdist] = dist.glob("starburst_cloud-*.tar.gz")
    return wheel, sdist


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel and sdist of this tree, built once for the module."""
    if not UV.exists():
        pytest.fail(f"uv is not installed beside {sys.executable}: install the dev extra "
                    "(uv pip install -e '.[dev]')")
    out = tmp_path_factory.mktemp("dist")
    _uv(["build", "--out-dir", out, ROOT], cwd=out)
    return out


def test_the_distributions_pass_twine_check(dist: Path) -> None:
    check = _run([sys.executable, "-m", "twine", "check", "--strict", *_built(dist)], cwd=dist)
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_sdist_holds_the_sources_and_no_build_debris(dist: Path) -> None:
    _, sdist = _built(dist)
    with tarfile.open(sdist) as tar:
        top = f"starburst_cloud-{starburst.__version__}/"
        names = [n.removeprefix(top) for n in tar.getnames()]
    for needed in _SDIST_NEEDS:
        assert needed in names, f"{needed} is missing from {sdist.name}"
    debris = [n for n in names if any(n.startswith(d) or f"/{d}" in n for d in _SDIST_NEVER)]
    assert debris == []


def test_the_wheel_holds_every_package_file_and_the_license(dist: Path) -> None:
    wheel, _ = _built(dist)
    with zipfile.ZipFile(wheel) as zf:
        packaged = {n for n in zf.namelist() if n.startswith("starburst/")}
    source = ROOT / "src"
    expected = {p.relative_to(source).as_posix() for p in (source / "starburst").rglob("*")
                if p.is_file() and "__pycache__" not in p.parts}
    assert expected - packaged == set()
    with zipfile.ZipFile(wheel) as zf:
        licenses = [n for n in zf.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        metadata = zf.read(next(n for n in zf.namelist() if n.endswith("/METADATA"))).decode()
    assert licenses, "the license text is not in the wheel"
    assert "License-Expression: Apache-2.0" in metadata


def test_the_wheel_installs_into_a_fresh_venv_and_runs_the_demo(dist: Path,
                                                                tmp_path: Path) -> None:
    wheel, _ = _built(dist)
    venv = tmp_path / "venv"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    _uv(["venv", "--python", version, venv], cwd=tmp_path)
    python = venv / "bin" / "python"
    _uv(["pip", "install", "--python", python, wheel], cwd=tmp_path)
    # Nothing of this tree or the development venv may leak in: a clean
    # environment, and a working directory outside the checkout.
    env = {"PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
           "HOME": str(tmp_path), "STARBURST_LOCAL_DIR": str(tmp_path),
           "STARBURST_CONFIG": str(tmp_path / "no-config.toml")}
    where = _run([python, "-c", "import starburst; print(starburst.__file__)"],
                 cwd=tmp_path, env=env)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout
    demo = _run([venv / "bin" / "starburst", "demo", "--tasks", "4", "--samples", "2000",
                 "--workers", "2"], cwd=tmp_path, env=env)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "pi ~ " in demo.stdout
    assert "8,000 points in 4 tasks on 2 local workers" in demo.stdout


def test_every_install_hint_names_an_extra_the_package_declares() -> None:
    """``pip install 'starburst-cloud[aws]'`` in an error message must be installable
    as written once published: each extra it names must exist."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "starburst-cloud"
    extras = set(project["optional-dependencies"])
    hints = [(path.name, wanted) for path in (ROOT / "src" / "starburst").rglob("*.py")
             for wanted in re.findall(r"starburst-cloud\[([\w,-]+)\]", path.read_text())]
    assert hints, "no install hint found: the pattern is out of date"
    unknown = [(name, wanted) for name, wanted in hints if set(wanted.split(",")) - extras]
    assert unknown == []
