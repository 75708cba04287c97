"""botocore errors become starburst errors whose messages say what to do."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from starburst.aws.clients import client
from starburst.aws.errors import is_throttling, translate_errors
from starburst.exceptions import CloudError, TransportError


def _client_error(code: str, message: str = "details", operation: str = "Op") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


@pytest.mark.parametrize(("code", "expected"), [
    ("NoSuchBucket", "run `starburst setup`"),
    ("ClusterNotFoundException", "run `starburst setup`"),
    ("ExpiredToken", "credentials have expired"),
    ("ExpiredTokenException", "aws sso login"),
    ("AccessDenied", "lacks this permission"),
    ("AccessDeniedException", "AWS_PROFILE"),
    ("UnrecognizedClientException", "aws sts get-caller-identity"),
    ("AWS.SimpleQueueService.NonExistentQueue", "session ended"),
    ("ThrottlingException", "throttling"),
    ("NoSuchEntity", "task_role_arn"),
])
def test_client_errors_say_what_to_do(code, expected):
    with pytest.raises(CloudError) as info, translate_errors("S3 PutObject s3://b/k"):
        raise _client_error(code)
    message = str(info.value)
    assert message.startswith("S3 PutObject s3://b/k failed")
    assert expected in message
    assert isinstance(info.value.__cause__, ClientError)


def test_unknown_codes_keep_code_and_message():
    with pytest.raises(CloudError, match=r"ECS RunTask failed: WeirdError: it broke"), \
            translate_errors("ECS RunTask"):
        raise _client_error("WeirdError", "it broke")


def test_missing_credentials_name_the_ways_to_configure_them():
    with pytest.raises(CloudError) as info, translate_errors("listing queues"):
        raise NoCredentialsError
    assert "aws configure" in str(info.value)
    assert "AWS_PROFILE" in str(info.value)


def test_unreachable_endpoint_mentions_aws_endpoint_url():
    with pytest.raises(CloudError, match=r"AWS_ENDPOINT_URL"), translate_errors():
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")


def test_kind_selects_the_exception_and_other_errors_pass_through():
    with pytest.raises(TransportError), translate_errors(kind=TransportError):
        raise _client_error("InternalError")
    with pytest.raises(KeyError), translate_errors():
        raise KeyError("not botocore's")


def test_works_as_a_decorator():
    @translate_errors("decorated call")
    def call() -> None:
        raise _client_error("AccessDenied")

    with pytest.raises(CloudError, match=r"decorated call failed: access denied"):
        call()


def test_is_throttling():
    assert is_throttling(_client_error("ThrottlingException"))
    assert is_throttling(_client_error("RequestLimitExceeded"))
    assert not is_throttling(_client_error("AccessDenied"))
    assert not is_throttling(ValueError())


def test_a_real_call_without_credentials(aws, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never look for an instance role
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    sqs = client("sqs")
    with pytest.raises(CloudError, match=r"no usable AWS credentials.*aws configure"), \
            translate_errors("SQS ListQueues"):
        sqs.list_queues()


def test_a_real_call_on_a_missing_cluster(aws):
    ecs = client("ecs")
    with pytest.raises(CloudError, match=r"ECS cluster does not exist.*starburst setup"), \
            translate_errors("ECS RunTask in cluster nope"):
        ecs.describe_services(cluster="nope", services=["x"])
