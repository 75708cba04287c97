"""What every `starburst` command prints: JSON errors under --json, plain --help text.

No AWS is reached: the errors provoked here come from argument parsing, the
region check (botocore's bundled endpoint data) or the shipped price table,
and ``AWS_ENDPOINT_URL`` points at a closed local port in case anything tried.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from starburst.cli import main

#: A local port nothing listens on: a request that escaped would fail at once.
_CLOSED = "http://127.0.0.1:9"


@pytest.fixture(autouse=True)
def _no_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", _CLOSED)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _leaves(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], click.Command]]:
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        if isinstance(command, click.Group):
            yield from _leaves(command, (*path, name))
        else:
            yield (*path, name), command


LEAVES = dict(_leaves(main))
WITH_JSON = sorted(p for p, c in LEAVES.items() if any(o.name == "as_json" for o in c.params))


def test_every_command_that_prints_data_has_json() -> None:
    assert ("pricing", "refresh") in WITH_JSON
    assert len(WITH_JSON) >= 15


def _error(args: list[str]) -> tuple[int, dict[str, object]]:
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    try:
        data = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"`starburst {' '.join(args)}` printed no JSON on stdout: "
                    f"{result.stdout!r} / stderr {result.stderr!r}")
    assert result.stderr == "", result.stderr
    return result.exit_code, data


@pytest.mark.parametrize("path", WITH_JSON, ids=" ".join)
def test_a_usage_error_under_json_is_json(path: tuple[str, ...]) -> None:
    code, data = _error([*path, "--json", "--no-such-option"])
    assert code == 2
    assert data["ok"] is False
    error = data["error"]
    assert isinstance(error, dict)
    assert error["type"] == "NoSuchOption"
    assert "--no-such-option" in str(error["message"])
    assert error["exit_code"] == 2


@pytest.mark.parametrize("args", [
    ["quota", "--json", "--region", "mars-1"],
    ["sessions", "--region", "mars-1", "--json"],
    ["status", "--json", "--region", "mars-1"],
    ["cost", "s1", "--json", "--region", "mars-1"],
    ["cleanup", "--orphans", "--json", "--region", "mars-1"],
], ids=lambda a: a[0])
def test_a_failure_under_json_is_json_naming_the_cause(args: list[str]) -> None:
    code, data = _error(args)
    assert code == 1
    error = data["error"]
    assert isinstance(error, dict)
    assert error["type"] == "ConfigurationError"
    assert "region 'mars-1' is not an AWS region" in str(error["message"])


def test_without_json_errors_stay_text_on_stderr() -> None:
    result = CliRunner().invoke(main, ["quota", "--region", "mars-1"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("Error: region 'mars-1' is not an AWS region")


#: reStructuredText/Sphinx markup that must not reach a terminal.
_RST = re.compile(r"``|:(func|class|mod|data|meth|attr):`|^\s*\.\. ", re.MULTILINE)


@pytest.mark.parametrize("path", [*sorted(LEAVES), ("env",), ("pricing",), ()],
                         ids=lambda p: " ".join(p) or "starburst")
def test_help_is_plain_text(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert not _RST.search(result.output), result.output


def _unreachable_base(*_args: object, **_kwargs: object) -> object:
    """What plan_environment meets offline: the base image's registry cannot be reached."""
    from starburst.envsync.auth import RegistryAuth
    from starburst.envsync.registry import Registry

    with Registry(_CLOSED, auth=RegistryAuth()) as registry:
        registry.manifest_digest("docker/library/python", "3.11-slim")
    raise AssertionError("the closed port answered")


def test_env_show_offline_says_what_it_tried_to_reach_and_the_fix(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from starburst.backends import _environment
    from starburst.envsync import registry

    monkeypatch.setattr(registry, "_ATTEMPTS", 1)  # one try is enough to fail here
    monkeypatch.setattr(_environment, "plan_environment", _unreachable_base)
    result = CliRunner().invoke(main, ["env", "show", "--region", "us-east-1"])
    assert result.exit_code == 1
    message = result.stderr
    assert "could not reach the base image's registry" in message
    assert "127.0.0.1:9" in message
    assert "--base-image" in message  # the fixes: a reachable base image, the network
    assert "HTTPS_PROXY" in message
    code, data = _error(["env", "show", "--region", "us-east-1", "--json"])
    assert code == 1
    error = data["error"]
    assert isinstance(error, dict)
    assert "could not reach the base image's registry" in str(error["message"])


def test_env_show_without_ecr_says_which_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import EndpointConnectionError

    from starburst.backends import _environment
    from starburst.envsync import ecrauth
    from starburst.envsync.errors import RegistryError

    class Plan:
        tag = "env-0123"

    def no_ecr(**_kwargs: object) -> object:
        cause = EndpointConnectionError(endpoint_url="https://api.ecr.us-east-1.amazonaws.com/")
        raise RegistryError("ECR GetAuthorizationToken: could not connect") from cause

    monkeypatch.setattr(_environment, "plan_environment", lambda *_a, **_k: Plan())
    monkeypatch.setattr(ecrauth, "ecr_registry", no_ecr)
    result = CliRunner().invoke(main, ["env", "show", "--region", "us-east-1"])
    assert result.exit_code == 1
    assert "could not reach ECR in us-east-1" in result.stderr
    assert "api.ecr.us-east-1.amazonaws.com" in result.stderr
    assert "--region" in result.stderr


def test_a_missing_region_suggests_the_region_option(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: object) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "STARBURST_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", f"{tmp_path}/aws-config")
    monkeypatch.setenv("STARBURST_CONFIG", f"{tmp_path}/config.toml")
    result = CliRunner().invoke(main, ["quota"])
    assert result.exit_code == 1
    assert "no AWS region is set: on the command line pass --region us-east-1" in result.stderr


def test_estimate_refuses_a_region_that_is_not_an_aws_region():
    result = CliRunner().invoke(main, ["estimate", "--tasks", "10", "--task-seconds", "1",
                                       "--region", "mars-1"])
    assert result.exit_code == 2
    assert "not an AWS region" in result.output
    assert "pricing refresh" not in result.output
