"""Where the Fargate path finds its AWS settings.

Precedence, highest first (the same for every starburst setting; see
:mod:`starburst.config_files`, which reads and checks both files):

1. explicit arguments (``Executor(backend="fargate", region=..., image=...)``);
2. ``STARBURST_<FIELD>`` environment variables (lists comma-separated,
   booleans ``true``/``false``);
3. ``[tool.starburst]`` in the project's ``pyproject.toml``
   (``STARBURST_PYPROJECT``, else the nearest one above the working
   directory, within the repository);
4. the TOML file ``STARBURST_CONFIG`` names, else ``config.toml`` in
   ``platformdirs.user_config_dir("starburst")``, with the fields as
   top-level keys::

       region = "eu-west-1"
       bucket = "my-team-starburst"
       subnets = ["subnet-0abc", "subnet-0def"]
       assign_public_ip = false

5. defaults (below). Fields left ``None`` are resolved at run time: the
   region by :func:`starburst.aws.clients.resolve_region`, the bucket from
   the account and region, the roles and network by provisioning.

A malformed file is a :class:`~starburst.exceptions.ConfigurationError`
that names the file and the line.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config_files import KEYS, coerce, config_path, load_layers
from ..exceptions import ConfigurationError

__all__ = ["FIELDS", "AwsConfig", "config_path", "load_config"]


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
        sources: where each field came from: ``"argument"``,
            ``"environment"``, the path of the file (the project's
            pyproject.toml or the user config file) or ``"default"``.
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

    @property
    def region_given(self) -> str | None:
        """The region when an argument or ``STARBURST_REGION`` set it, else None.

        Such a region beats ``AWS_REGION`` and the AWS profile; a region from
        a config file comes after them (see
        :func:`starburst.aws.clients.resolve_region`): pass this as its
        ``explicit`` and :attr:`region` as its ``configured``.
        """
        return self.region if self.sources.get("region") in ("argument", "environment") else None

    def resolved_region(self, explicit: str | None = None) -> str:
        """The region to use: ``explicit``, else :attr:`region_given`, else the AWS
        environment, else a config file's :attr:`region`, else the AWS profile's.

        Raises:
            ConfigurationError: no region is set anywhere (the message says how).
        """
        from .clients import resolve_region

        return resolve_region(explicit or self.region_given, self.region)

    def described_sources(self) -> str:
        """The fields not at their default and where each came from, for ``starburst doctor``."""
        set_here = [f"{name} from {source}" for name, source in self.sources.items()
                    if source != "default"]
        return "; ".join(set_here) if set_here else "every field at its default"


#: Names accepted as arguments, environment variables (upper-cased) and file keys.
FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(AwsConfig)
                                if f.name != "sources")


def load_config(overrides: Mapping[str, Any] | None = None, *, path: Path | None = None,
                environ: Mapping[str, str] | None = None,
                cwd: Path | None = None) -> AwsConfig:
    """Build the configuration: arguments > ``STARBURST_*`` > ``[tool.starburst]`` >
    user config file > defaults.

    Args:
        overrides: explicit values (the Executor's backend options); a
            value of None means "not given".
        path: the user config file (default: :func:`config_path`).
        environ: the environment (default: ``os.environ``).
        cwd: where the search for the project's pyproject.toml starts
            (default: the working directory).

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
    layers = load_layers(environ=env, cwd=cwd, config=path)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in FIELDS:
        found = layers.lookup(name, given.get(name))
        if found is None:
            sources[name] = "default"
            continue
        values[name] = (coerce(KEYS[name], found.value, found.where, "argument")
                        if found.source == "argument" else found.value)
        sources[name] = found.source
    return AwsConfig(**values, sources=sources)
