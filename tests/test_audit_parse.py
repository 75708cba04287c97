"""How the request audit names a request: operation, IAM action, resource, context.

Synthetic WSGI environments, no server: what :mod:`starburst.testing.audit`
derives from the method, path, query, headers and body of S3, SQS (JSON
and query protocol), KMS and ECS requests.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from starburst.testing.audit import Audit

_AUTH = ("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261204/us-east-1/{service}/aws4_request, "
         "SignedHeaders=host, Signature=0")


def _environ(service: str, method: str = "GET", path: str = "/", query: str = "",
             body: bytes = b"", **headers: str) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
        "HTTP_HOST": "127.0.0.1:5000", "HTTP_AUTHORIZATION": _AUTH.format(service=service),
        "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}
    environ.update({f"HTTP_{k.upper()}": v for k, v in headers.items()})
    return environ


def _needs(environ: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(c.operation, c.action, c.resource) for c in Audit()._classify(environ)]


B = "arn:aws:s3:::bkt"


@pytest.mark.parametrize(("method", "path", "query", "expected"), [
    ("GET", "/bkt/runs/k", "", ("GetObject", "s3:GetObject", f"{B}/runs/k")),
    ("HEAD", "/bkt/runs/k", "", ("HeadObject", "s3:GetObject", f"{B}/runs/k")),
    ("PUT", "/bkt/runs/k", "", ("PutObject", "s3:PutObject", f"{B}/runs/k")),
    ("DELETE", "/bkt/runs/k", "", ("DeleteObject", "s3:DeleteObject", f"{B}/runs/k")),
    ("POST", "/bkt/runs/k", "uploads", ("CreateMultipartUpload", "s3:PutObject", f"{B}/runs/k")),
    ("PUT", "/bkt/runs/k", "partNumber=1&uploadId=u", ("UploadPart", "s3:PutObject",
                                                       f"{B}/runs/k")),
    ("POST", "/bkt/runs/k", "uploadId=u", ("CompleteMultipartUpload", "s3:PutObject",
                                           f"{B}/runs/k")),
    ("DELETE", "/bkt/runs/k", "uploadId=u", ("AbortMultipartUpload", "s3:AbortMultipartUpload",
                                             f"{B}/runs/k")),
    ("GET", "/bkt", "location", ("GetBucketLocation", "s3:GetBucketLocation", B)),
    ("GET", "/bkt", "list-type=2&prefix=runs%2F", ("ListObjectsV2", "s3:ListBucket", B)),
    ("HEAD", "/bkt", "", ("HeadBucket", "s3:ListBucket", B)),
    ("PUT", "/bkt", "policy", ("PutBucketPolicy", "s3:PutBucketPolicy", B)),
    ("GET", "/", "", ("ListBuckets", "s3:ListAllMyBuckets", "*")),
])
def test_s3_operations(method: str, path: str, query: str,
                       expected: tuple[str, str, str]) -> None:
    assert _needs(_environ("s3", method, path, query)) == [expected]


def test_s3_list_carries_its_prefix_and_a_copy_needs_both_ends() -> None:
    [listed] = Audit()._classify(_environ("s3", "GET", "/bkt", "list-type=2&prefix=runs%2Fa"))
    assert listed.context["s3:prefix"] == "runs/a"
    assert listed.context["aws:SecureTransport"] is True
    copy = _environ("s3", "PUT", "/bkt/runs/new", "", **{"X_AMZ_COPY_SOURCE": "/src/old%20k"})
    assert _needs(copy) == [("CopyObject", "s3:PutObject", f"{B}/runs/new"),
                            ("CopyObject", "s3:GetObject", "arn:aws:s3:::src/old k")]


def test_s3_delete_objects_needs_delete_on_each_key() -> None:
    body = (b'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Object><Key>runs/a'
            b"</Key></Object><Object><Key>other/b</Key></Object></Delete>")
    environ = _environ("s3", "POST", "/bkt", "delete", body)
    assert _needs(environ) == [("DeleteObjects", "s3:DeleteObject", f"{B}/runs/a"),
                               ("DeleteObjects", "s3:DeleteObject", f"{B}/other/b")]
    assert environ["wsgi.input"].read() == body  # left for moto to read


def test_sqs_json_and_query_protocols() -> None:
    url = "http://127.0.0.1:5000/123456789012/starburst-s-tasks"
    arn = "arn:aws:sqs:us-east-1:123456789012:starburst-s-tasks"
    batch = _environ("sqs", "POST", body=json.dumps({"QueueUrl": url}).encode(),
                     X_AMZ_TARGET="AmazonSQS.SendMessageBatch")
    assert _needs(batch) == [("SendMessageBatch", "sqs:SendMessage", arn)]
    create = _environ("sqs", "POST", body=b"Action=CreateQueue&QueueName=starburst-s-tasks")
    assert _needs(create) == [("CreateQueue", "sqs:CreateQueue", arn)]


def test_kms_and_ecs_resources() -> None:
    kms = _environ("kms", "POST", body=json.dumps({"KeyId": "1234"}).encode(),
                   X_AMZ_TARGET="TrentService.Decrypt")
    assert _needs(kms) == [("Decrypt", "kms:Decrypt",
                            "arn:aws:kms:us-east-1:123456789012:key/1234")]
    run = _environ("ecs", "POST", body=json.dumps({"cluster": "starburst",
                                                   "taskDefinition": "starburst-x:3"}).encode(),
                   X_AMZ_TARGET="AmazonEC2ContainerServiceV20141113.RunTask")
    assert _needs(run) == [("RunTask", "ecs:RunTask",
                            "arn:aws:ecs:us-east-1:123456789012:task-definition/starburst-x:3")]


def test_an_unsigned_request_is_not_classified() -> None:
    environ = _environ("s3", "GET", "/bkt/k")
    del environ["HTTP_AUTHORIZATION"]
    assert _needs(environ) == []
