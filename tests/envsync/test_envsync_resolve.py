"""Resolving a snapshot for Linux: keep, drop, add, refuse; and the lock cache."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import pytest
from _envsync_support import compiled_sdist, make_wheel, pure_sdist

from starburst.envsync import resolve as resolve_module
from starburst.envsync.errors import UnsupportedPackageError
from starburst.envsync.resolve import IndexOptions, Lock, install, resolve
from starburst.envsync.snapshot import Dependency, Distribution, Snapshot
from starburst.envsync.target import Target

MAC = "cp311-cp311-macosx_11_0_arm64"


def _index(wheels: Path) -> IndexOptions:
    return IndexOptions(find_links=(str(wheels),), no_index=True)


def _snap(*dists: Distribution, arch: str = "x86_64") -> Snapshot:
    return Snapshot(target=Target.of(arch), distributions=dists)


def test_mac_only_conditional_dependency_is_dropped_with_a_warning(wheels: Path) -> None:
    make_wheel(wheels, "app", "1.0", {"app.py": b""},
               requires=("macglue; sys_platform == 'darwin'", "linuxonly; "
                         "sys_platform == 'linux'"))
    make_wheel(wheels, "macglue", "2.0", {"macglue.py": b""}, tag=MAC)
    make_wheel(wheels, "linuxonly", "0.5", {"linuxonly.py": b""})
    snap = _snap(Distribution("app", "1.0", pure=True,
                              requires=(Dependency("linuxonly", True),
                                        Dependency("macglue", True))),
                 Distribution("macglue", "2.0", pure=False))
    lock = resolve(snap, index=_index(wheels))
    assert lock.pins == (("app", "1.0"), ("linuxonly", "0.5"))
    assert lock.buildable == ("app",)
    assert any("left out macglue==2.0" in w and "app" in w for w in lock.warnings)
    assert any("linuxonly==0.5" in w for w in lock.warnings)  # added for the target


def test_a_package_installed_on_purpose_without_a_linux_build_is_an_error(
        wheels: Path) -> None:
    make_wheel(wheels, "macglue", "2.0", {"macglue.py": b""}, tag=MAC)
    with pytest.raises(UnsupportedPackageError) as info:
        resolve(_snap(Distribution("macglue", "2.0", pure=False)), index=_index(wheels))
    assert info.value.package == "macglue"
    assert "wheels only for other platforms" in str(info.value)
    assert "exclude=['macglue'])" in str(info.value)


def test_compiled_sdist_is_refused_naming_package_version_platform(wheels: Path) -> None:
    compiled_sdist(wheels, "cfast", "0.9")
    with pytest.raises(UnsupportedPackageError) as info:
        resolve(_snap(Distribution("cfast", "0.9", pure=False), arch="arm64"),
                index=_index(wheels))
    err = info.value
    assert (err.package, err.version, err.platform) == ("cfast", "0.9",
                                                        "aarch64-manylinux_2_28")
    assert "needs a compiler" in str(err)
    assert "platform='x86_64'" in str(err)


def test_pure_python_sdist_is_built_into_a_wheel(wheels: Path, tmp_path: Path) -> None:
    pure_sdist(wheels, "puresrc", "1.2", "VALUE = 12\n")
    lock = resolve(_snap(Distribution("puresrc", "1.2", pure=True)), index=_index(wheels))
    assert lock.pins == (("puresrc", "1.2"),)
    install(lock, tmp_path / "site", index=_index(wheels))
    assert (tmp_path / "site" / "puresrc.py").read_text() == "VALUE = 12\n"


def test_an_unknown_dependency_must_come_as_a_wheel(wheels: Path, tmp_path: Path) -> None:
    pure_sdist(wheels, "newdep", "1.0", "")
    make_wheel(wheels, "top", "1.0", {"top.py": b""}, requires=("newdep",))
    lock = resolve(_snap(Distribution("top", "1.0", pure=True)), index=_index(wheels))
    assert lock.pins == (("newdep", "1.0"), ("top", "1.0"))
    assert lock.buildable == ("top",)
    with pytest.raises(UnsupportedPackageError) as info:
        install(lock, tmp_path / "site", index=_index(wheels))
    assert "not installed here" in str(info.value)


def test_a_package_missing_from_the_index_is_an_error(wheels: Path) -> None:
    with pytest.raises(UnsupportedPackageError) as info:
        resolve(_snap(Distribution("private-lib", "3.0", pure=True)), index=_index(wheels))
    assert info.value.package == "private-lib"
    assert "index_url=" in str(info.value)


def test_the_lock_is_cached_per_snapshot(wheels: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    make_wheel(wheels, "app", "1.0", {"app.py": b""})
    snap = _snap(Distribution("app", "1.0", pure=True))
    first = resolve(snap, index=_index(wheels), cache_dir=tmp_path)

    def no_uv(*args: object, **kwargs: object) -> object:
        raise AssertionError("uv ran although the lock was cached")

    monkeypatch.setattr(resolve_module, "run_uv", no_uv)
    assert resolve(snap, index=_index(wheels), cache_dir=tmp_path) == first
    with pytest.raises(AssertionError):
        resolve(snap, index=_index(wheels), cache_dir=tmp_path, refresh=True)
    assert Lock.from_json(first.to_json()) == first


# The interpreter the workers run: its exact version, not only its minor one.
EXACT = platform.python_version()


@pytest.mark.skipif(sys.version_info.micro == 0,
                    reason="on an x.y.0 interpreter the minor and the exact version agree")
@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_a_pin_that_needs_this_exact_patch_release_resolves_and_installs(
        wheels: Path, tmp_path: Path, arch: str) -> None:
    # Defect 11: pymdown-extensions 13.1.2 requires Python >= 3.11.5; asked to
    # resolve for "3.11" (3.11.0), uv found the pin unsatisfiable.
    make_wheel(wheels, "needspatch", "1.0", {"needspatch.py": b"X = 1\n"},
               requires_python=f">={EXACT}")
    snap = _snap(Distribution("needspatch", "1.0", pure=True), arch=arch)
    assert snap.target.version == EXACT
    lock = resolve(snap, index=_index(wheels))
    assert lock.pins == (("needspatch", "1.0"),)
    install(lock, tmp_path / "site", index=_index(wheels))
    assert (tmp_path / "site" / "needspatch.py").is_file()


def test_a_lock_records_the_exact_python_and_is_not_shared_across_patch_releases(
        wheels: Path, tmp_path: Path) -> None:
    make_wheel(wheels, "app", "1.0", {"app.py": b""})
    dist = Distribution("app", "1.0", pure=True)
    here = resolve(_snap(dist), index=_index(wheels), cache_dir=tmp_path)
    older = resolve(Snapshot(target=Target.of("x86_64", "3.11.1"), distributions=(dist,)),
                    index=_index(wheels), cache_dir=tmp_path)
    assert Lock.from_json(here.to_json()).target.version == EXACT
    assert older.target.version == "3.11.1"
    assert here.digest() != older.digest()
