"""Environment sync end to end: Executor(backend="fargate", env="auto") in the emulator.

The emulated ECR is a real distribution registry (``docker-registry``,
installed by ``.ci/run``) behind ECR-style auth; the base image is a
synthetic ``python:3.X-slim``; the one extra package is a wheel built
here and installed offline (``--find-links``, ``--no-index``). Tasks run
from the pushed image: its layers unpacked by the emulated task runner,
its site-packages first on the worker's path.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from _support import make_wheel, wait_for

import starburst
from starburst.backends import _environment
from starburst.envsync.resolve import IndexOptions
from starburst.envsync.snapshot import Snapshot
from starburst.envsync.target import Target
from starburst.exceptions import ConfigurationError
from starburst.testing.registry import registry_binary
from starburst.worker.__main__ import check_environment

needs_registry = pytest.mark.skipif(
    registry_binary() is None,
    reason="the distribution registry is not installed (apt-get install docker-registry; "
           ".ci/run installs it)")


@pytest.fixture(scope="module")
def env_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One envsync cache for the module: starburst's own layer is built once."""
    return tmp_path_factory.mktemp("envsync-cache")


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    make_wheel(tmp_path / "wheels", "onlyinimage", "0.1",
                {"onlyinimage.py": b"VERSION = '0.1'\n"})
    return tmp_path / "wheels"


@pytest.fixture
def reports(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every BuildReport of the test's sessions, in order."""
    seen: list[Any] = []
    original = _environment.ensure_environment

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(original(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(_environment, "ensure_environment", spy)
    return seen


@pytest.fixture
def make_executor(aws, env_cache: Path, wheels: Path, monkeypatch: pytest.MonkeyPatch,
                  ) -> Iterator[Callable[[], starburst.Executor]]:
    monkeypatch.setenv("UV_OFFLINE", "1")  # uv never reaches an index here
    monkeypatch.setenv("STARBURST_CACHE_DIR", str(env_cache))
    settings = starburst.Settings(lease=4.0, heartbeat=1.0, poll=0.05, idle_timeout=30,
                                  client_heartbeat=1.0, client_stale=600, timeout_grace=1.0)
    made: list[starburst.Executor] = []

    def make() -> starburst.Executor:
        ex = starburst.Executor(
            backend="fargate", env="auto", workers=1, settings=settings, progress=False,
            # Only the extra package: the test environment's own packages are not
            # offline-installable (the worker falls back to the host for them).
            snapshot=Snapshot(target=Target.of("x86_64"), distributions=()),
            packages=["onlyinimage==0.1"],
            index=IndexOptions(find_links=(str(wheels),), no_index=True))
        made.append(ex)
        return ex

    try:
        yield make
    finally:
        for ex in made:
            ex.shutdown(wait=True, cancel_futures=True)
        wait_for(lambda: not aws.runner.pids(), timeout=20,
                 what="every task process to exit after shutdown")


def _load_module(name: str, path: Path) -> ModuleType:
    """Import ``path`` as ``name`` without putting its folder on sys.path."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@needs_registry
@pytest.mark.slow
def test_package_only_in_the_image_is_importable_by_a_task(aws, make_executor, reports):
    with pytest.raises(ImportError):
        __import__("onlyinimage")

    def probe() -> dict[str, str]:
        import onlyinimage

        import starburst as me
        return {"version": onlyinimage.VERSION, "file": onlyinimage.__file__,
                "starburst": me.__file__, "hash": os.environ.get("STARBURST_ENV_HASH", "")}

    with make_executor() as ex:
        got = ex.submit(probe).result(timeout=180)
    assert got["version"] == "0.1"
    assert "starburst-images-" in got["file"]  # unpacked from the pushed image
    assert "starburst-images-" in got["starburst"]  # the image's starburst, not the host's
    (report,) = reports
    assert report.built
    assert report.bytes_uploaded > 0
    assert got["hash"] == report.image.env_hash
    assert aws.runner.pulled == [report.image.digest]


@needs_registry
@pytest.mark.slow
def test_an_edited_local_module_needs_no_rebuild(aws, make_executor, reports, tmp_path,
                                                 monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    source = project / "usercode_e2e.py"
    source.write_text("VALUE = 1\n", encoding="utf-8")
    monkeypatch.chdir(project)  # the working directory's modules are the user's code
    monkeypatch.delitem(sys.modules, "usercode_e2e", raising=False)
    _load_module("usercode_e2e", source)

    def value() -> int:
        import usercode_e2e
        return int(usercode_e2e.VALUE)

    with make_executor() as ex:
        assert ex.submit(value).result(timeout=180) == 1
    source.write_text("VALUE = 2\n", encoding="utf-8")
    _load_module("usercode_e2e", source)
    with make_executor() as ex:
        assert ex.submit(value).result(timeout=180) == 2
    first, second = reports
    assert not second.built  # nothing built or sent
    assert second.bytes_uploaded == 0
    assert second.image == first.image


def test_the_worker_refuses_an_image_with_another_environment_hash(tmp_path):
    expected, actual = "a" * 64, "b" * 64
    with pytest.raises(ConfigurationError, match="environment mismatch: this worker's image "
                                                 "has environment hash bbbbbbbbbbbb"):
        check_environment({"STARBURST_EXPECTED_ENV_HASH": expected,
                           "STARBURST_ENV_HASH": actual})
    with pytest.raises(ConfigurationError, match="none \\(not a starburst-built image\\)"):
        check_environment({"STARBURST_EXPECTED_ENV_HASH": expected})
    check_environment({"STARBURST_EXPECTED_ENV_HASH": expected, "STARBURST_ENV_HASH": expected})
    check_environment({"STARBURST_ENV_HASH": actual})  # env="off": nothing expected
    # The worker process itself exits at once, saying why.
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join(sys.path),
           "STARBURST_EXPECTED_ENV_HASH": expected, "STARBURST_ENV_HASH": actual,
           "STARBURST_TRANSPORT": f"local:{tmp_path}", "STARBURST_SESSION": "s1"}
    done = subprocess.run([sys.executable, "-m", "starburst.worker"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "environment mismatch" in done.stderr


def test_env_options_are_validated():
    _, options = _environment.pop_env_options({}, arch=None)
    assert _environment.settle_mode(None, options, None).mode == "auto"
    assert _environment.settle_mode(None, options, "my/image:1").mode == "off"
    with pytest.raises(ConfigurationError, match="env='off' needs a container image"):
        _environment.settle_mode("off", options, None)
    with pytest.raises(ConfigurationError, match="no Docker engine support"):
        _environment.settle_mode("docker", options, None)
    with pytest.raises(ConfigurationError, match="must be one of"):
        _environment.pop_env_options({"env": "maybe"}, arch=None)
    with pytest.raises(ConfigurationError, match="pin each extra package"):
        _environment.pop_env_options({"packages": ["requests"]}, arch=None)
    with pytest.raises(ConfigurationError, match="disagree"):
        _environment.pop_env_options({"platform": "arm64"}, arch="x86_64")
    _, options = _environment.pop_env_options({"platform": "arm64"}, arch=None)
    assert options.platform == "arm64"


def test_env_off_without_image_is_a_clear_error(aws, monkeypatch):
    monkeypatch.setenv("STARBURST_CONFIG", os.devnull)  # no configured image
    with pytest.raises(ConfigurationError, match="env='off' needs a container image"):
        starburst.Executor(backend="fargate", env="off", progress=False).submit(abs, 1)
