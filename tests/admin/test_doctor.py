"""`starburst doctor` runs and reports every check, even when an early one fails.

No AWS is reached: the early failures here (a broken config file, no region)
leave nothing to ask AWS with, and ``AWS_ENDPOINT_URL`` points at a closed
local port in case anything tried.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from starburst.admin.doctor import CHECK_NAMES
from starburst.cli import main


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    project = tmp_path / "pyproject.toml"  # a project without [tool.starburst]
    project.write_text('[project]\nname = "demo"\n')
    monkeypatch.setenv("STARBURST_PYPROJECT", str(project))
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "STARBURST_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)


def _doctor(*args: str) -> tuple[int, dict[str, dict[str, object]]]:
    result = CliRunner().invoke(main, ["doctor", "--json", *args], catch_exceptions=False)
    report = json.loads(result.stdout)
    return result.exit_code, {c["name"]: c for c in report["checks"]}


def test_a_broken_config_file_still_runs_every_check(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    broken = tmp_path / "config.toml"
    broken.write_text("region = eu-west-1\n")  # unquoted: not TOML
    monkeypatch.setenv("STARBURST_CONFIG", str(broken))
    code, checks = _doctor()
    assert code == 1
    assert list(checks) == list(CHECK_NAMES)
    assert not checks["config file"]["ok"]
    assert str(broken) in str(checks["config file"]["detail"])
    assert not checks["region"]["ok"]
    assert "--region" in str(checks["region"]["fix"])
    assert checks["bucket"]["detail"] == "not checked: needs the config file and the region"
    assert checks["uv"]["detail"] != ""  # checked for real: it needs neither


def test_no_region_reports_each_aws_check_as_not_checked(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    monkeypatch.setenv("STARBURST_CONFIG", str(tmp_path / "absent.toml"))
    code, checks = _doctor()
    assert code == 1
    assert list(checks) == list(CHECK_NAMES)
    assert checks["config file"]["ok"]
    assert not checks["region"]["ok"]
    for name in ("credentials", "clock skew", "ecs cluster", "fargate quota"):
        assert not checks[name]["ok"]
        assert checks[name]["detail"] == "not checked: needs the region", name
        assert checks[name]["skipped"]
    text = CliRunner().invoke(main, ["doctor"])
    assert text.exit_code == 1
    assert "skip" in text.stdout
