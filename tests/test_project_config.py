"""``[tool.starburst]`` in the project's pyproject.toml, beside the user config file.

Precedence for every key: argument > ``STARBURST_*`` > ``[tool.starburst]`` >
user config file > default. Every test points ``STARBURST_CONFIG`` at its own
file (or at none), so the developer's real config is never read.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest

import starburst
from starburst.aws.config import FIELDS, AwsConfig, load_config
from starburst.config_files import KEYS, find_pyproject, keys_of
from starburst.exceptions import ConfigurationError
from starburst.options import FILE_OPTIONS, ExecutorOptions


def _project(root: Path, table: str, *, before: str = "") -> Path:
    """``root/pyproject.toml`` with ``before`` (other tables) and then ``[tool.starburst]``."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "pyproject.toml"
    path.write_text(f'[project]\nname = "demo"\nversion = "1"\n{before}\n'
                    f"[tool.starburst]\n{table}", encoding="utf-8")
    return path


def _line(path: Path, text: str) -> int:
    """The line number of the first line of ``path`` that starts with ``text``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.startswith(text))


@pytest.fixture
def user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's user config file (not written yet), named by STARBURST_CONFIG."""
    path = tmp_path / "user" / "config.toml"
    path.parent.mkdir()
    monkeypatch.setenv("STARBURST_CONFIG", str(path))
    return path


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, user_config: Path) -> Path:
    """A project directory (a repository: it holds .git) that is the working directory."""
    root = tmp_path / "proj"
    (root / ".git").mkdir(parents=True)
    monkeypatch.chdir(root)
    return root


def test_an_aws_field_follows_the_precedence_over_four_levels(project, user_config,
                                                               monkeypatch):
    user_config.write_text('region = "user-region"\nbucket = "user-bucket"\n'
                           'cluster = "user-cluster"\nprefix = "user-prefix"\n')
    pyproject = _project(project, 'region = "project-region"\nbucket = "project-bucket"\n'
                                  'cluster = "project-cluster"\n')
    monkeypatch.setenv("STARBURST_BUCKET", "env-bucket")
    monkeypatch.setenv("STARBURST_CLUSTER", "env-cluster")
    config = load_config({"cluster": "arg-cluster"})
    assert (config.cluster, config.bucket, config.region, config.prefix, config.log_group) == (
        "arg-cluster", "env-bucket", "project-region", "user-prefix", AwsConfig().log_group)
    assert config.sources["cluster"] == "argument"
    assert config.sources["bucket"] == "environment"
    assert config.sources["region"] == str(pyproject)
    assert config.sources["prefix"] == str(user_config)
    assert config.sources["log_group"] == "default"
    described = config.described_sources()
    assert f"region from {pyproject}" in described
    assert "log_group" not in described


def test_an_executor_option_follows_the_precedence_over_four_levels(project, user_config,
                                                                     monkeypatch):
    user_config.write_text('workers = 2\ncpu = 0.5\nmemory = "1GB"\nmax_attempts = 5\n')
    pyproject = _project(project, 'workers = 3\ncpu = 2\nmemory = "4GB"\n')
    monkeypatch.setenv("STARBURST_WORKERS", "4")
    monkeypatch.setenv("STARBURST_CPU", "4")
    options = ExecutorOptions.resolve(workers=5)
    assert (options.workers, options.cpu, options.memory_mib, options.max_attempts) == (
        5, 4.0, 4096, 5)
    assert options.seed is None
    assert options.sources == {
        **dict.fromkeys(FILE_OPTIONS, "default"), "workers": "argument",
        "cpu": "environment", "memory": str(pyproject), "max_attempts": str(user_config)}
    # Take each level away in turn: the one below shows through.
    assert ExecutorOptions.resolve().workers == 4
    monkeypatch.delenv("STARBURST_WORKERS")
    assert ExecutorOptions.resolve().workers == 3
    pyproject.unlink()
    assert ExecutorOptions.resolve().workers == 2
    user_config.unlink()
    assert ExecutorOptions.resolve().workers is None


def test_the_search_walks_up_from_a_subdirectory(project, monkeypatch):
    pyproject = _project(project, "seed = 7\n")
    deep = project / "src" / "pkg"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert find_pyproject() == pyproject
    assert ExecutorOptions.resolve().seed == 7


def test_the_search_stops_at_the_top_of_the_repository(tmp_path, user_config, monkeypatch):
    _project(tmp_path, "workers = 9\n")  # above the repository: not this project's
    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)
    (repo / ".git").write_text("gitdir: elsewhere\n")  # a worktree's .git is a file
    monkeypatch.chdir(repo / "sub")
    assert find_pyproject() is None
    assert ExecutorOptions.resolve().workers is None


def test_the_nearest_pyproject_is_the_project_even_without_the_table(project, monkeypatch):
    _project(project, "workers = 9\n")
    inner = project / "packages" / "inner"
    inner.mkdir(parents=True)
    (inner / "pyproject.toml").write_text('[project]\nname = "inner"\n[tool.other]\nx = 1\n')
    monkeypatch.chdir(inner)
    assert find_pyproject() == inner / "pyproject.toml"
    options = ExecutorOptions.resolve()
    assert options.workers is None
    assert set(options.sources.values()) == {"default"}


def test_starburst_pyproject_names_the_file(tmp_path, project, monkeypatch):
    elsewhere = _project(tmp_path / "elsewhere", "chunksize = 11\n")
    _project(project, "chunksize = 3\n")
    monkeypatch.setenv("STARBURST_PYPROJECT", str(elsewhere))
    assert ExecutorOptions.resolve().chunksize == 11
    monkeypatch.setenv("STARBURST_PYPROJECT", str(elsewhere.parent))  # its directory works too
    assert ExecutorOptions.resolve().chunksize == 11
    monkeypatch.setenv("STARBURST_PYPROJECT", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigurationError, match=r"STARBURST_PYPROJECT=.*missing\.toml.*unset"):
        ExecutorOptions.resolve()


def test_an_unknown_key_names_the_file_the_line_and_the_valid_keys(project):
    pyproject = _project(project, 'workers = 2\nregoin = "eu-west-1"\n',
                         before='[tool.other]\nregoin = "not ours"\n')
    with pytest.raises(ConfigurationError) as info:
        ExecutorOptions.resolve()
    message = str(info.value)
    # The line inside [tool.starburst], not the same key in [tool.other] above it.
    assert f"{pyproject}, line {_line(pyproject, 'workers') + 1}: unknown key 'regoin'" in message
    assert "did you mean 'region'?" in message
    assert all(name in message for name in KEYS)


@pytest.mark.parametrize(("table", "expected"), [
    ('workers = "many"', r"workers must be a whole number, e.g\. workers = 8; got 'many'"),
    ("cpu = true", r"cpu must be a number, e.g\. cpu = 2; got True"),
    ("subnets = 5", r"subnets must be a list of strings, e\.g\. subnets = \[\"subnet-0abc\""),
    ("workers = 0", r"workers=0 must be a positive integer"),
    ('memory = "lots"', r"memory='lots' is not a size"),
    ('backend = "nope"', r"unknown backend 'nope'; choose one of: .*local"),
])
def test_a_bad_value_names_the_key_the_file_the_line_and_the_form(project, table, expected):
    pyproject = _project(project, f"seed = 1\n{table}\n")
    with pytest.raises(ConfigurationError,
                       match=rf"{re.escape(str(pyproject))}, line {_line(pyproject, 'seed') + 1}: "
                             rf"{expected}"):
        ExecutorOptions.resolve()


def test_bad_toml_and_a_table_that_is_not_one_name_the_line(project):
    pyproject = project / "pyproject.toml"
    pyproject.write_text('[project]\nname = "demo"\n[tool.starburst]\nworkers = = 2\n')
    where = re.escape(str(pyproject))
    with pytest.raises(ConfigurationError, match=rf"{where}, line 4: .*not valid TOML"):
        ExecutorOptions.resolve()
    pyproject.write_text('[project]\nname = "demo"\n[tool]\nstarburst = 3\n')
    with pytest.raises(ConfigurationError, match=rf"{where}, line 4: tool.starburst must be"):
        ExecutorOptions.resolve()


def test_a_value_from_the_environment_names_the_variable(project, monkeypatch):
    monkeypatch.setenv("STARBURST_CPU", "lots")
    with pytest.raises(ConfigurationError, match=r"environment variable STARBURST_CPU: cpu "
                                                 r"must be a number, e\.g\. STARBURST_CPU=2"):
        ExecutorOptions.resolve()
    monkeypatch.setenv("STARBURST_CPU", "0.25")
    monkeypatch.setenv("STARBURST_MAX_COST", "-1")
    with pytest.raises(ConfigurationError,
                       match=r"environment variable STARBURST_MAX_COST: max_cost=-1 must be"):
        ExecutorOptions.resolve()
    monkeypatch.delenv("STARBURST_MAX_COST")
    assert ExecutorOptions.resolve().cpu == 0.25


def test_backend_keys_apply_only_to_their_backend(project, user_config, monkeypatch):
    pyproject = _project(project, 'platform = "arm64"\nregion = "eu-west-1"\n')
    user_config.write_text('packages = ["numpy==2.1.0"]\n')
    local = ExecutorOptions.resolve()
    assert local.backend == "local"
    assert local.extra == {}
    monkeypatch.setenv("STARBURST_BASE_IMAGE", "python:3.11-slim")
    fargate = ExecutorOptions.resolve(backend="fargate")
    assert fargate.extra == {"platform": "arm64", "packages": ("numpy==2.1.0",),
                             "base_image": "python:3.11-slim"}
    assert fargate.sources["platform"] == str(pyproject)
    assert fargate.sources["base_image"] == "environment"
    # Given under its alias, the option is the caller's: the file does not add a second one.
    assert ExecutorOptions.resolve(backend="fargate", arch="x86_64").extra == {
        "arch": "x86_64", "packages": ("numpy==2.1.0",), "base_image": "python:3.11-slim"}


def test_plan_validates_with_the_files(project):
    before = starburst.current_plan()
    pyproject = _project(project, "max_attempts = 0\n")
    with pytest.raises(ConfigurationError, match=rf"{re.escape(str(pyproject))}, line \d+: "
                                                 r"max_attempts=0"):
        starburst.plan(workers=2)
    assert starburst.current_plan() == before


def test_a_local_executor_runs_with_the_workers_the_pyproject_names(project, fast_settings):
    # A Fargate-only key beside it must not break the local backend.
    _project(project, 'workers = 2\ncpu = 0.5\nplatform = "arm64"\nregion = "eu-west-1"\n')
    with starburst.Executor(progress=False, settings=fast_settings) as ex:
        assert ex.workers == 2
        assert list(ex.map(abs, range(-4, 0))) == [4, 3, 2, 1]
    # After the block: a launch is counted when the backend's launch call returns,
    # and on a loaded machine the first worker may finish these four tasks before
    # the second has started (the flake of CI).
    status = ex.status()
    assert (status.backend, status.workers_launched) == ("local", 2)
    with starburst.Executor(workers=1, progress=False, settings=fast_settings) as ex:
        assert ex.workers == 1


def test_the_keys_match_the_aws_fields_and_shadow_no_setting():
    assert {key.name for key in keys_of("aws")} == set(FIELDS)
    assert set(FILE_OPTIONS) <= set(inspect.signature(starburst.Executor).parameters)
    # Settings read STARBURST_<SETTING> (workers too); no key may take one of those names.
    assert not {f.name for f in dataclasses.fields(starburst.Settings)} & set(KEYS)
