"""Translate botocore errors into starburst errors at the boundary.

Every AWS call of starburst runs inside :func:`translate_errors`, so the
user never sees a bare ``ClientError``: they see a
:class:`~starburst.exceptions.CloudError` whose message names the cause,
the fix and the resource (as httpx's ``map_httpcore_exceptions`` does for
its layer below). The botocore exception stays attached as ``__cause__``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
    SSOError,
    TokenRetrievalError,
)

from ..exceptions import CloudError, StarburstError

__all__ = [
    "THROTTLING_CODES",
    "error_code",
    "explain",
    "is_throttling",
    "translate_errors",
]

#: Error codes AWS services use for "slow down" (botocore's own list, plus
#: the ECS/EC2 spellings); the only errors starburst itself retries.
THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException",
    "TransactionInProgressException", "RequestLimitExceeded", "BandwidthLimitExceeded",
    "RequestThrottled", "SlowDown", "PriorRequestNotComplete", "EC2ThrottledException",
})
_EXPIRED = frozenset({"ExpiredToken", "ExpiredTokenException", "RequestExpired",
                      "TokenRefreshRequired"})
_BAD_CREDENTIALS = frozenset({"InvalidClientTokenId", "UnrecognizedClientException",
                              "SignatureDoesNotMatch", "InvalidAccessKeyId", "AuthFailure",
                              "IncompleteSignature", "MissingAuthenticationToken"})
_DENIED = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation",
                     "AuthorizationError", "Forbidden", "AllAccessDisabled",
                     "UnauthorizedException"})

_CREDENTIALS_FIX = ("configure credentials with `aws configure`, `aws sso login` or "
                    "AWS_PROFILE (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")
_SETUP_FIX = "run `starburst setup` to create it, or name an existing one in the starburst config"


def error_code(exc: ClientError) -> str:
    """The AWS error code of ``exc`` (``""`` when the response carries none)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def _error_message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", "")) or str(exc)


def is_throttling(exc: BaseException) -> bool:
    """Whether ``exc`` is AWS asking us to slow down (safe to retry later)."""
    return isinstance(exc, ClientError) and error_code(exc) in THROTTLING_CODES


def _client_error(exc: ClientError, action: str) -> str:
    code = error_code(exc)
    detail = _error_message(exc)
    what = f"{action} failed" if action else f"AWS {exc.operation_name} failed"
    if code in _EXPIRED:
        return (f"{what}: your AWS credentials have expired ({code}). Refresh them "
                f"(`aws sso login`, or new keys) and retry; {_CREDENTIALS_FIX}")
    if code in _BAD_CREDENTIALS:
        return (f"{what}: AWS rejected the credentials ({code}: {detail}). Check which "
                f"identity is in use with `aws sts get-caller-identity`; {_CREDENTIALS_FIX}")
    if code in _DENIED:
        return (f"{what}: access denied ({code}: {detail}). The identity in use lacks this "
                "permission: ask your AWS administrator to grant it, or use a profile that "
                "has it (AWS_PROFILE). `starburst setup` prints the policy starburst needs")
    if code == "NoSuchBucket":
        return f"{what}: the S3 bucket does not exist ({detail}); {_SETUP_FIX} (`bucket`)"
    if code == "ClusterNotFoundException":
        return f"{what}: the ECS cluster does not exist ({detail}); {_SETUP_FIX} (`cluster`)"
    if code in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
        return (f"{what}: the session's SQS queue no longer exists ({detail}): the session "
                "ended or its resources were cleaned up; start a new session")
    if code == "NoSuchEntity":
        return (f"{what}: an IAM role or policy does not exist ({detail}); {_SETUP_FIX} "
                "(`execution_role_arn`, `task_role_arn`)")
    if code == "RepositoryNotFoundException":
        return f"{what}: the ECR repository does not exist ({detail}); {_SETUP_FIX}"
    if code == "ResourceNotFoundException":
        return f"{what}: {detail}; {_SETUP_FIX}"
    if code in THROTTLING_CODES:
        return (f"{what}: AWS kept throttling the request ({code}) after retries; wait a "
                "minute or lower the request rate (fewer workers launching at once)")
    return f"{what}: {code or 'error'}: {detail}"


def explain(exc: BaseException, action: str = "") -> str:
    """A message for a botocore exception that says what to do about it."""
    what = f"{action} failed" if action else "an AWS call failed"
    if isinstance(exc, ClientError):
        return _client_error(exc, action)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return f"{what}: no usable AWS credentials were found; {_CREDENTIALS_FIX}"
    if isinstance(exc, CredentialRetrievalError | SSOError | TokenRetrievalError):
        return f"{what}: AWS credentials could not be loaded ({exc}); {_CREDENTIALS_FIX}"
    if isinstance(exc, ProfileNotFound):
        return (f"{what}: {exc}; set AWS_PROFILE to a profile listed by "
                "`aws configure list-profiles`, or unset it")
    if isinstance(exc, NoRegionError):
        return (f"{what}: no AWS region is set; pass region=..., set STARBURST_REGION or "
                "AWS_REGION, or run `aws configure`")
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError |
                  ConnectionClosedError):
        return (f"{what}: cannot reach the AWS endpoint ({exc}); check the network, proxy "
                "settings and AWS_ENDPOINT_URL if you set one")
    return f"{what}: {exc}"


@contextmanager
def translate_errors(action: str = "", *,
                     kind: type[StarburstError] = CloudError) -> Iterator[None]:
    """Turn botocore errors raised inside the block into ``kind`` with a helpful message.

    Usable as a context manager or a decorator::

        with translate_errors(f"S3 PutObject s3://{bucket}/{key}"):
            client.put_object(...)

    Args:
        action: what was being done, with identifiers (operation, bucket,
            key, ARN); it starts the message.
        kind: the starburst exception to raise (``CloudError`` by default;
            the transport uses ``TransportError``).

    Raises:
        StarburstError: ``kind``, from the botocore exception.
    """
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise kind(explain(exc, action)) from exc
