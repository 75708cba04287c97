"""Where the Fargate path finds its AWS settings.

Precedence, highest first:

1. explicit arguments (``Executor(backend="fargate", region=..., image=...)``);
2. ``STARBURST_<FIELD>`` environment variables (lists comma-separated,
   booleans ``true``/``false``);
3. the TOML file ``STARBURST_CONFIG`` names, else ``config.toml`` in
   ``platformdirs.user_config_dir("starburst")``, with the fields as
   top-level keys::

       region = "eu-west-1"
       bucket = "my-team-starburst"
       subnets = ["subnet-0abc", "subnet-0def"]
       assign_public_ip = false

4. defaults (below). Fields left ``None`` are resolved at run time: the
   region by :func:`starburst.aws.clients.resolve_region`, the bucket from
   the account and region, the roles and network by provisioning.

A malformed file is a :class:`~starburst.exceptions.ConfigurationError`
that names the file and the line.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from ..exceptions import ConfigurationError

__all__ = ["FIELDS", "AwsConfig", "config_path", "load_config"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True)
class AwsConfig:
    """AWS settings of the Fargate path.

    Attributes:
        region: AWS region; None = from the environment or AWS profile.
        bucket: S3 bucket for payloads, results and session records; None =
            ``starburst-<account>-<region>``, created by provisioning.
        prefix: key prefix inside the bucket, so a shared bucket stays tidy.
        cluster: ECS cluster name (created when missing).
        subnets: awsvpc subnets; empty = the default VPC's default subnets.
        security_groups: awsvpc security groups; empty = a starburst group
            with no ingress (workers only call out).
        assign_public_ip: give tasks a public IP; needed in public subnets
            without a NAT gateway, or tasks cannot reach ECR, S3 and SQS.
        execution_role_arn: role ECS uses to pull the image and write logs;
            None = ``starburst-execution``, created by provisioning.
        task_role_arn: role the workers' code runs as; None =
            ``starburst-task`` (S3 prefix and session queues only).
        log_group: CloudWatch log group of worker output.
        image: container image workers run (until environment sync builds one).
        ecr_repository: ECR repository for built images.
        sources: where each field came from (argument, environment, file, default).
    """

    region: str | None = None
    bucket: str | None = None
    prefix: str = "starburst"
    cluster: str = "starburst"
    subnets: tuple[str, ...] = ()
    security_groups: tuple[str, ...] = ()
    assign_public_ip: bool = True
    execution_role_arn: str | None = None
    task_role_arn: str | None = None
    log_group: str = "/starburst"
    image: str | None = None
    ecr_repository: str = "starburst"
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)


#: Names accepted as arguments, environment variables (upper-cased) and file keys.
FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(AwsConfig)
                                if f.name != "sources")
_LISTS = frozenset({"subnets", "security_groups"})
_BOOLS = frozenset({"assign_public_ip"})


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """The config file: ``STARBURST_CONFIG``, else the user config directory's."""
    env = os.environ if environ is None else environ
    explicit = env.get("STARBURST_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    return Path(platformdirs.user_config_dir("starburst")) / "config.toml"


def _coerce(name: str, value: Any, where: str) -> Any:
    """Check and normalize one value; ``where`` names its origin for errors."""
    if name in _LISTS:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple) and all(isinstance(v, str) and v for v in value):
            return tuple(value)
        raise ConfigurationError(
            f"{where}: {name} must be a list of strings such as [\"{name[:-1]}-0abc\"], "
            f"got {value!r}")
    if name in _BOOLS:
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        if isinstance(value, bool):
            return value
        raise ConfigurationError(f"{where}: {name} must be true or false, got {value!r}")
    if value is None or (isinstance(value, str) and value.strip()):
        return value.strip() if isinstance(value, str) else None
    raise ConfigurationError(f"{where}: {name} must be a non-empty string, got {value!r}")


def _line_of(text: str, key: str) -> int | None:
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=", re.MULTILINE)
    match = pattern.search(text)
    return text.count("\n", 0, match.start()) + 1 if match else None


def _read_file(path: Path) -> dict[str, Any]:
    """Parse the config file; every error names the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read the starburst config file {path}: {exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"at line (\d+), column (\d+)", str(exc))
        where = f"{path}, line {match.group(1)}" if match else str(path)
        raise ConfigurationError(
            f"{where}: the starburst config file is not valid TOML ({exc}); fix or delete "
            "that line (values need quotes: region = \"eu-west-1\")") from exc
    out: dict[str, Any] = {}
    for key, value in data.items():
        line = _line_of(text, key)
        where = f"{path}, line {line}" if line else str(path)
        if key not in FIELDS:
            raise ConfigurationError(
                f"{where}: unknown key {key!r} in the starburst config file; valid keys: "
                f"{', '.join(FIELDS)}")
        out[key] = _coerce(key, value, where)
    return out


def load_config(overrides: Mapping[str, Any] | None = None, *, path: Path | None = None,
                environ: Mapping[str, str] | None = None) -> AwsConfig:
    """Build the configuration: arguments > ``STARBURST_*`` > config file > defaults.

    Args:
        overrides: explicit values (the Executor's backend options); a
            value of None means "not given".
        path: the config file (default: :func:`config_path`).
        environ: the environment (default: ``os.environ``).

    Raises:
        ConfigurationError: an unknown key, a bad value, or a malformed file.
    """
    env = os.environ if environ is None else environ
    given = dict(overrides or {})
    unknown = sorted(set(given) - set(FIELDS))
    if unknown:
        raise ConfigurationError(
            f"unknown option(s) {', '.join(unknown)} for backend='fargate'; valid: "
            f"{', '.join(FIELDS)}")
    file = path or config_path(env)
    from_file = _read_file(file)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in FIELDS:
        var = f"STARBURST_{name.upper()}"
        if given.get(name) is not None:
            values[name] = _coerce(name, given[name], f"argument {name}=")
            sources[name] = "argument"
        elif env.get(var, "").strip():
            values[name] = _coerce(name, env[var], f"environment variable {var}")
            sources[name] = "environment"
        elif name in from_file:
            values[name] = from_file[name]
            sources[name] = str(file)
        else:
            sources[name] = "default"
    return AwsConfig(**values, sources=sources)
