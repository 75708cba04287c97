"""The code archive: the user's modules, deterministic, first on the worker's sys.path."""

from __future__ import annotations

import platform
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import pytest

from starburst.envsync.code import apply_code_archive, build_code_archive, collect_code
from starburst.envsync.snapshot import LocalDistribution, Snapshot
from starburst.envsync.target import Target


def _module(name: str, file: Path | None, *, package: bool = False) -> types.ModuleType:
    module = types.ModuleType(name)
    if file is not None:
        module.__file__ = str(file)
    if package and file is not None:
        module.__path__ = [str(file.parent)]
    return module


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "mypkg" / "sub").mkdir(parents=True)
    (root / "mypkg" / "__init__.py").write_text("NAME = 'mypkg'\n")
    (root / "mypkg" / "sub" / "__init__.py").write_text("")
    (root / "mypkg" / "sub" / "lazy.py").write_text("LAZY = True\n")  # never imported
    (root / "mypkg" / "data.json").write_text("{}\n")
    (root / "mypkg" / "__pycache__").mkdir()
    (root / "mypkg" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"stale")
    (root / "helper.py").write_text("def f():\n    return 'from archive'\n")
    venv = root / ".venv" / "lib" / "site-packages"
    venv.mkdir(parents=True)
    (venv / "thirdparty.py").write_text("")
    return root


def _table(project: Path) -> dict[str, types.ModuleType]:
    return {
        "mypkg": _module("mypkg", project / "mypkg" / "__init__.py", package=True),
        "mypkg.sub": _module("mypkg.sub", project / "mypkg" / "sub" / "__init__.py",
                             package=True),
        "helper": _module("helper", project / "helper.py"),
        "json": sys.modules["json"],  # the standard library: not user code
        "__main__": _module("__main__", project / "script.py"),
        "starburst": sys.modules["starburst"],
        "builtin_like": _module("builtin_like", None),
    }


def test_collects_user_modules_and_nothing_of_the_environment(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = _table(project)
    # A module under the working directory but inside an environment's prefix.
    monkeypatch.setattr(sys, "prefix", str(project / ".venv"))
    table["thirdparty"] = _module(
        "thirdparty", project / ".venv" / "lib" / "site-packages" / "thirdparty.py")
    found = collect_code(cwd=project, modules=table)
    assert found == {"helper": project / "helper.py", "mypkg": project / "mypkg"}


def test_archive_is_deterministic_and_content_hashed(project: Path, tmp_path: Path) -> None:
    table = _table(project)
    first = build_code_archive(cwd=project, out_dir=tmp_path / "a", modules=table)
    second = build_code_archive(cwd=project, out_dir=tmp_path / "b", modules=table)
    assert first is not None
    assert second is not None
    assert first.digest == second.digest
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.path.name == f"code-{first.digest[:16]}.zip"
    assert first.modules == ("helper", "mypkg")
    with zipfile.ZipFile(first.path) as zf:
        names = zf.namelist()
    assert names == ["helper.py", "mypkg/__init__.py", "mypkg/data.json",
                     "mypkg/sub/__init__.py", "mypkg/sub/lazy.py"]
    (project / "helper.py").write_text("def f():\n    return 'edited'\n")
    edited = build_code_archive(cwd=project, out_dir=tmp_path / "a", modules=table)
    assert edited is not None
    assert edited.digest != first.digest


def test_local_distributions_travel_even_from_site_packages(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "locallib").mkdir(parents=True)
    (site / "locallib" / "__init__.py").write_text("X = 1\n")
    (site / "locallib" / "_speedups.so").write_bytes(b"\x7fELF")
    # The other architecture than this machine's: its compiled module cannot go.
    other = "arm64" if platform.machine().lower() in ("x86_64", "amd64") else "x86_64"
    snap = Snapshot(target=Target.of(other), distributions=(), local=(
        LocalDistribution(name="locallib", version="1", kind="archive",
                          url="file:///w.whl", modules=(("locallib", str(site / "locallib")),)),
    ))
    archive = build_code_archive(snap, cwd=tmp_path / "elsewhere", out_dir=tmp_path / "out",
                                 modules={})
    assert archive is not None
    with zipfile.ZipFile(archive.path) as zf:
        names = zf.namelist()
    assert "locallib/__init__.py" in names
    assert "locallib/_speedups.so" not in names
    assert len(archive.warnings) == 1
    assert "compiled module" in archive.warnings[0]


def test_nothing_to_ship_gives_none(tmp_path: Path) -> None:
    assert build_code_archive(cwd=tmp_path, modules={"json": sys.modules["json"]}) is None


def test_worker_puts_the_archive_first_on_sys_path(project: Path, tmp_path: Path) -> None:
    archive = build_code_archive(cwd=project, out_dir=tmp_path / "out",
                                 modules=_table(project))
    assert archive is not None
    # Another 'helper' earlier on the path: the archive must shadow it.
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "helper.py").write_text("def f():\n    return 'stale'\n")
    probe = ("import sys; from starburst.envsync.code import apply_code_archive; "
             "d = apply_code_archive(sys.argv[1], extract_to=__import__('pathlib').Path("
             "sys.argv[2])); d2 = apply_code_archive(sys.argv[1], extract_to="
             "__import__('pathlib').Path(sys.argv[2])); import helper, mypkg.sub.lazy; "
             "print(helper.f(), mypkg.sub.lazy.LAZY, sys.path[0] == str(d), d == d2)")
    out = subprocess.run([sys.executable, "-c", probe, str(archive.path), str(tmp_path / "x")],
                         capture_output=True, text=True, check=True, timeout=60,
                         env={"PYTHONPATH": str(shadow), "PATH": "/usr/bin:/bin"}).stdout
    assert out.split() == ["from", "archive", "True", "True", "True"]


def test_unsafe_archive_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../escape.py", "")
    with pytest.raises(ValueError, match="unsafe"):
        apply_code_archive(bad, extract_to=tmp_path / "x")
    assert not (tmp_path / "escape.py").exists()
