"""The code archive: the user's modules, deterministic, first on the worker's sys.path."""

from __future__ import annotations

import os
import platform
import shutil
import stat
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import pytest

from starburst.envsync.code import (
    apply_code_archive,
    build_code_archive,
    collect_code,
    private_code_dir,
)
from starburst.envsync.snapshot import LocalDistribution, Snapshot
from starburst.envsync.target import Target
from starburst.transport.local import LocalTransport
from starburst.wire.keys import code_key


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


# -- what stays out: private files and what git ignores ------------------------


@pytest.fixture
def leaky(tmp_path: Path) -> Path:
    """A project whose package holds secrets beside its one module."""
    root = tmp_path / "leaky"
    pkg = root / "secretpkg"
    (pkg / ".git").mkdir(parents=True)  # not a repository of its own: no HEAD
    (pkg / ".git" / "config").write_text("[credential]\n")
    (pkg / "__init__.py").write_text("VALUE = 'shipped'\n")
    (pkg / ".env").write_text("AWS_SECRET_ACCESS_KEY=oops\n")
    (pkg / "id.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    (pkg / "aws_credentials.txt").write_text("[default]\n")
    (pkg / "build" / "lib").mkdir(parents=True)
    (pkg / "build" / "lib" / "copy.py").write_text("")
    (pkg / "debug.log").write_text("")
    (root / ".gitignore").write_text("build/\n*.log\n")
    return root


def _leaky_table(root: Path) -> dict[str, types.ModuleType]:
    return {"secretpkg": _module("secretpkg", root / "secretpkg" / "__init__.py",
                                 package=True)}


def _git_init(root: Path) -> None:
    subprocess.run(["git", "init", "-q", str(root)], check=True, timeout=30,
                   env={"PATH": "/usr/bin:/bin", "HOME": str(root),
                        "GIT_CONFIG_NOSYSTEM": "1"})


def _names(archive_path: Path) -> list[str]:
    with zipfile.ZipFile(archive_path) as zf:
        return zf.namelist()


def test_only_the_module_ships_from_a_git_work_tree(leaky: Path, tmp_path: Path) -> None:
    _git_init(leaky)
    archive = build_code_archive(cwd=leaky, out_dir=tmp_path / "out",
                                 modules=_leaky_table(leaky))
    assert archive is not None
    assert _names(archive.path) == ["secretpkg/__init__.py"]
    assert archive.skipped == ("secretpkg/.env", "secretpkg/.git/",
                               "secretpkg/aws_credentials.txt", "secretpkg/build/",
                               "secretpkg/debug.log", "secretpkg/id.pem")
    note = archive.skipped_note()
    assert note is not None
    assert note.startswith("the code archive leaves out 6 private or git-ignored path(s): "
                           "secretpkg/.env, secretpkg/.git/")
    assert "and 1 more" in note


def test_outside_git_or_without_git_the_fixed_rules_apply(
        leaky: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outside = build_code_archive(cwd=leaky, out_dir=tmp_path / "a", modules=_leaky_table(leaky))
    _git_init(leaky)
    monkeypatch.setenv("PATH", str(tmp_path / "no-git-here"))  # git cannot be found
    no_git = build_code_archive(cwd=leaky, out_dir=tmp_path / "b", modules=_leaky_table(leaky))
    for archive in (outside, no_git):
        assert archive is not None
        assert _names(archive.path) == ["secretpkg/__init__.py", "secretpkg/build/lib/copy.py",
                                        "secretpkg/debug.log"]
        assert archive.skipped == ("secretpkg/.env", "secretpkg/.git/",
                                   "secretpkg/aws_credentials.txt", "secretpkg/id.pem")
    assert outside is not None
    assert no_git is not None
    assert outside.digest == no_git.digest  # still deterministic
    # What stays out is no part of the content: editing it changes no digest.
    (leaky / "secretpkg" / ".env").write_text("AWS_SECRET_ACCESS_KEY=other\n")
    (leaky / "secretpkg" / "id.pem").write_text("another key\n")
    again = build_code_archive(cwd=leaky, out_dir=tmp_path / "c", modules=_leaky_table(leaky))
    assert again is not None
    assert again.digest == no_git.digest


def test_a_private_single_module_stays_out(tmp_path: Path) -> None:
    (tmp_path / "my_credentials.py").write_text("KEY = 1\n")
    (tmp_path / "fine.py").write_text("")
    archive = build_code_archive(cwd=tmp_path, out_dir=tmp_path / "out", modules={
        "my_credentials": _module("my_credentials", tmp_path / "my_credentials.py"),
        "fine": _module("fine", tmp_path / "fine.py")})
    assert archive is not None
    assert _names(archive.path) == ["fine.py"]
    assert archive.skipped == ("my_credentials.py",)
    clean = build_code_archive(cwd=tmp_path, out_dir=tmp_path / "out",
                               modules={"fine": _module("fine", tmp_path / "fine.py")})
    assert clean is not None
    assert clean.skipped == ()
    assert clean.skipped_note() is None


# -- where the worker unpacks it: a private directory of its own ---------------


def test_the_workers_code_directory_is_fresh_private_and_named_for_the_session() -> None:
    first = private_code_dir("sb-20260101-000000-abcdef")
    second = private_code_dir("sb-20260101-000000-abcdef")
    try:
        assert first != second  # never one another user could have made first
        for made in (first, second):
            assert made.name.startswith("starburst-code-sb-20260101-000000-abcdef-")
            assert stat.S_IMODE(made.stat().st_mode) == 0o700
    finally:
        first.rmdir()
        second.rmdir()


def test_unpacking_into_a_directory_others_can_write_is_refused(
        project: Path, tmp_path: Path) -> None:
    archive = build_code_archive(cwd=project, out_dir=tmp_path / "out",
                                 modules=_table(project))
    assert archive is not None
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(PermissionError, match="not private"):
        apply_code_archive(archive.path, extract_to=shared)
    assert list(shared.iterdir()) == []
    fresh = tmp_path / "fresh"
    old = os.umask(0)
    try:
        target = apply_code_archive(archive.path, extract_to=fresh)
    finally:
        os.umask(old)
        sys.path.remove(str(target))
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    assert (target / "helper.py").is_file()


def test_a_task_process_without_its_supervisor_unpacks_privately_and_cleans_up(
        project: Path, tmp_path: Path) -> None:
    archive = build_code_archive(cwd=project, out_dir=tmp_path / "out",
                                 modules=_table(project))
    assert archive is not None
    transport = LocalTransport(tmp_path / "session")
    key = code_key("sb-y", archive.digest)
    transport.store.put(key, archive.path.read_bytes())
    probe = ("import os, stat, sys; from starburst.transport import open_transport; "
             "from starburst.worker.__main__ import load_code; "
             "load_code(open_transport(sys.argv[1])); import helper; "
             "d = os.path.dirname(os.path.dirname(helper.__file__)); "
             "print(d, oct(stat.S_IMODE(os.stat(d).st_mode)))")
    env = {k: v for k, v in os.environ.items() if k != "STARBURST_CODE_DIR"}
    try:
        out = subprocess.run(
            [sys.executable, "-c", probe, transport.spec], capture_output=True, text=True,
            check=True, timeout=60,
            env={**env, "STARBURST_CODE": key, "STARBURST_SESSION": "sb-y"}).stdout
    finally:
        transport.destroy()
    folder, mode = out.split()
    assert Path(folder).name.startswith("starburst-code-sb-y-")
    assert mode == "0o700"
    assert not Path(folder).exists()  # removed when the process exited


def test_load_code_unpacks_into_the_workers_directory(project: Path, tmp_path: Path) -> None:
    archive = build_code_archive(cwd=project, out_dir=tmp_path / "out",
                                 modules=_table(project))
    assert archive is not None
    transport = LocalTransport(tmp_path / "session")
    key = code_key("sb-x", archive.digest)
    transport.store.put(key, archive.path.read_bytes())
    folder = private_code_dir("sb-x")
    probe = ("import sys; from starburst.transport import open_transport; "
             "from starburst.worker.__main__ import load_code; "
             "load_code(open_transport(sys.argv[1])); import helper; print(helper.__file__)")
    try:
        out = subprocess.run(
            [sys.executable, "-c", probe, transport.spec], capture_output=True, text=True,
            check=True, timeout=60, env={**os.environ, "STARBURST_CODE": key,
                                         "STARBURST_SESSION": "sb-x",
                                         "STARBURST_CODE_DIR": str(folder)}).stdout
        assert Path(out.strip()).is_relative_to(folder)
    finally:
        shutil.rmtree(folder)
        transport.destroy()
