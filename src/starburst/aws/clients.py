"""The one factory for boto3 clients.

Every AWS client starburst uses comes from :func:`client`, so they all
share one behaviour:

* credentials from the standard chain (environment, ``AWS_PROFILE`` and
  ``~/.aws``, SSO, the ECS task role on a worker); starburst never passes
  credentials anywhere itself;
* a region from :func:`resolve_region`: argument > ``STARBURST_REGION`` >
  ``AWS_REGION`` > ``AWS_DEFAULT_REGION`` > starburst config file > the
  AWS profile, or an error that says how to set one;
* botocore's ``adaptive`` retry mode (client-side rate limiting on top of
  capped exponential backoff with jitter), so throttling is retried once,
  here, and nowhere else;
* ``AWS_ENDPOINT_URL`` and ``AWS_ENDPOINT_URL_<SERVICE>`` honoured by
  botocore itself, which is how :func:`starburst.testing.emulated_aws`
  points everything at a local emulator without a code change.

Errors are translated at the boundary with :func:`translate_errors`.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any, Literal, overload

import boto3
import boto3.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError

from .._version import __version__
from ..exceptions import ConfigurationError
from .errors import translate_errors

if TYPE_CHECKING:
    from mypy_boto3_batch.client import BatchClient
    from mypy_boto3_ec2.client import EC2Client
    from mypy_boto3_ecr.client import ECRClient
    from mypy_boto3_ecs.client import ECSClient
    from mypy_boto3_iam.client import IAMClient
    from mypy_boto3_kms.client import KMSClient
    from mypy_boto3_logs.client import CloudWatchLogsClient
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_secretsmanager.client import SecretsManagerClient
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sts.client import STSClient

__all__ = ["account_id", "client", "has_credentials", "partition", "resolve_region",
           "translate_errors"]

# Ten attempts in adaptive mode ride out a burst of throttling (1,000
# workers launching at once) with backoff capped by botocore at 20 s.
_MAX_ATTEMPTS = 10
# The S3 transfer manager runs 10 threads per transfer; the queue, the
# heartbeat and the backend share the pool too. botocore's default of 10
# would make them wait on each other.
_POOL_CONNECTIONS = 32
# SQS long polls last up to 20 s: the read timeout must be longer.
_READ_TIMEOUT = 70
_CONNECT_TIMEOUT = 10

_REGION_VARS = ("STARBURST_REGION", "AWS_REGION", "AWS_DEFAULT_REGION")

_lock = threading.Lock()
_sessions: dict[tuple[tuple[str, str], ...], boto3.session.Session] = {}
_accounts: dict[tuple[tuple[tuple[str, str], ...], str], str] = {}


def _fingerprint() -> tuple[tuple[str, str], ...]:
    """The AWS part of the environment: a new one means a new boto3 session.

    boto3 sessions read credentials, profile and endpoints from the
    environment when they are created; tests (and ``emulated_aws()``)
    change that environment, so sessions are cached per fingerprint.
    """
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))


def _session() -> boto3.session.Session:
    key = _fingerprint()
    with _lock:
        session = _sessions.get(key)
        if session is None:
            session = _sessions[key] = boto3.session.Session()
        return session


def has_credentials() -> bool:
    """Whether the standard credential chain finds AWS credentials (no AWS call is made)."""
    try:
        return _session().get_credentials() is not None
    except BotoCoreError:
        return False


def resolve_region(explicit: str | None = None, configured: str | None = None) -> str:
    """Return the AWS region to use.

    Order: ``explicit`` > ``STARBURST_REGION`` > ``AWS_REGION`` >
    ``AWS_DEFAULT_REGION`` > ``configured`` (the starburst config file) >
    the region of the AWS profile in use.

    The region found is checked by :func:`starburst.aws.config.check_region`.

    Raises:
        ConfigurationError: no region is set anywhere, or the one set is not an
            AWS region; the message says how to set one.
    """
    from .config import check_region

    if explicit:
        return check_region(explicit)
    for name in _REGION_VARS:
        value = os.environ.get(name, "").strip()
        if value:
            return check_region(value, name)
    if configured:
        return check_region(configured, "the starburst config file")
    profile_region = _session().region_name
    if profile_region:
        return check_region(profile_region, "the AWS profile")
    raise ConfigurationError(
        "no AWS region is set: on the command line pass --region us-east-1 (for example); "
        "in Python pass region='us-east-1' to the Executor; or set STARBURST_REGION or "
        "AWS_REGION, add region = \"...\" to the starburst config file, or run "
        "`aws configure`")


def _config() -> Config:
    return Config(
        retries={"mode": "adaptive", "max_attempts": _MAX_ATTEMPTS},
        max_pool_connections=_POOL_CONNECTIONS,
        connect_timeout=_CONNECT_TIMEOUT,
        read_timeout=_READ_TIMEOUT,
        tcp_keepalive=True,
        user_agent_extra=f"starburst/{__version__}",
    )


@overload
def client(service: Literal["s3"], *, region: str | None = ...) -> S3Client: ...
@overload
def client(service: Literal["sqs"], *, region: str | None = ...) -> SQSClient: ...
@overload
def client(service: Literal["ecs"], *, region: str | None = ...) -> ECSClient: ...
@overload
def client(service: Literal["ecr"], *, region: str | None = ...) -> ECRClient: ...
@overload
def client(service: Literal["logs"], *, region: str | None = ...) -> CloudWatchLogsClient: ...
@overload
def client(service: Literal["iam"], *, region: str | None = ...) -> IAMClient: ...
@overload
def client(service: Literal["ec2"], *, region: str | None = ...) -> EC2Client: ...
@overload
def client(service: Literal["sts"], *, region: str | None = ...) -> STSClient: ...
@overload
def client(service: Literal["batch"], *, region: str | None = ...) -> BatchClient: ...
@overload
def client(service: Literal["kms"], *, region: str | None = ...) -> KMSClient: ...
@overload
def client(service: Literal["secretsmanager"], *,
           region: str | None = ...) -> SecretsManagerClient: ...
def client(service: str, *, region: str | None = None) -> Any:
    """Create a boto3 client for ``service`` in ``region`` (resolved when None).

    Clients are thread-safe; keep one per object rather than calling this
    per request. Creation is serialized because boto3 sessions are not.
    """
    name = resolve_region(region)
    session = _session()
    with _lock, translate_errors(f"creating the AWS {service} client"):
        return session.client(service, region_name=name, config=_config())  # type: ignore[call-overload]


def account_id(region: str | None = None) -> str:
    """The AWS account id of the credentials in use (cached per environment)."""
    key = (_fingerprint(), resolve_region(region))
    with _lock:
        known = _accounts.get(key)
    if known is not None:
        return known
    sts = client("sts", region=region)
    with translate_errors("STS GetCallerIdentity (who am I?)"):
        account = str(sts.get_caller_identity()["Account"])
    with _lock:
        _accounts[key] = account
    return account


def partition(region: str) -> str:
    """The ARN partition of ``region`` (``aws``, ``aws-cn``, ``aws-us-gov``...)."""
    session = _session()
    with _lock:
        return session.get_partition_for_region(region)
