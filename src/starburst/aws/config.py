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

A region is checked by :func:`check_region` against the regions botocore's
bundled endpoint data knows (every partition; no network), so a typo fails
at once with "did you mean" instead of as an HTTP error seconds later.
``STARBURST_EXTRA_REGIONS`` (comma-separated) admits regions newer than the
installed botocore.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config_files import KEYS, coerce, config_path, load_layers
from ..exceptions import ConfigurationError

__all__ = ["EXTRA_REGIONS_ENV", "FIELDS", "AwsConfig", "check_region", "config_path",
           "known_regions", "load_config"]

#: Comma-separated regions to accept beyond those the installed botocore knows
#: (a region AWS opened after that botocore was released).
EXTRA_REGIONS_ENV = "STARBURST_EXTRA_REGIONS"
#: Services whose regions make up "known": starburst needs ECS (Fargate) or
#: Batch (GPU) in a region, and both ship their endpoint lists with botocore.
_REGION_SERVICES = ("ecs", "batch")
#: How close a name must be to a known region to be offered as "did you mean"
#: (difflib ratio; 0.8 catches one or two wrong characters, not another region).
_SUGGEST_CUTOFF = 0.8


@functools.cache
def known_regions() -> frozenset[str]:
    """Every region of every partition where botocore knows ECS or Batch endpoints.

    Read from botocore's bundled endpoint data (no network), once per process.
    """
    import boto3.session

    session = boto3.session.Session()
    return frozenset(
        region for partition in session.get_available_partitions()
        for service in _REGION_SERVICES
        for region in session.get_available_regions(service, partition_name=partition))


def check_region(name: str, source: str = "region") -> str:
    """Return ``name`` when it is a known AWS region, else raise with the fix.

    Args:
        name: the region.
        source: where it was set, named in the message (``"region"``, an
            environment variable, the config file...).

    Raises:
        ConfigurationError: ``name`` is not in botocore's endpoint data nor in
            ``STARBURST_EXTRA_REGIONS``; the message offers the closest region
            and says how to admit a region newer than botocore.
    """
    extra = {r.strip() for r in os.environ.get(EXTRA_REGIONS_ENV, "").split(",") if r.strip()}
    known = known_regions()
    if name in known or name in extra:
        return name
    scored = sorted((-difflib.SequenceMatcher(None, name, region).ratio(), region)
                    for region in known)
    close = [region for score, region in scored[:2] if -score >= _SUGGEST_CUTOFF]
    hint = f"did you mean {' or '.join(repr(r) for r in close)}? " if close else ""
    raise ConfigurationError(
        f"region {name!r} is not an AWS region (set by {source}): {hint}pass a region such "
        "as 'us-east-1' or 'eu-west-1' (`aws ec2 describe-regions` lists yours). A region "
        f"newer than the installed botocore: upgrade botocore, or set "
        f"{EXTRA_REGIONS_ENV}={name} to accept it")


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
