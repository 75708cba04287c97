"""Every request the emulated AWS receives, recorded, and workers' S3/SQS/KMS ones enforced.

moto answers every request whatever the caller's policies say. The
:class:`Audit` wraps the moto server's WSGI application (it runs in this
process) and, for each request:

* records a :class:`Call` per IAM action it needs: the service (from the
  SigV4 credential scope), the API operation (``X-Amz-Target`` for JSON
  protocols, ``Action=`` for query protocols, method + path + query for
  S3), the IAM action and resource ARN AWS authorizes it against (an S3
  ``DeleteObjects`` needs ``s3:DeleteObject`` on each key, a
  ``HeadObject`` ``s3:GetObject``), the access key id and the principal:
  ``user`` for the emulator's own credentials (``testing``), the role for
  credentials STS issued by AssumeRole (what the task runner gives a
  worker);
* enforces (switch ``enforce``, counters ``checked`` and ``denied``) the
  S3, SQS, KMS and Secrets Manager requests of an assumed role (a worker, or
  the task runner reading a container's secrets as the execution role): the role's policies in
  moto's IAM (inline and attached, as provisioning or setup wrote them)
  and the bucket's policy are evaluated by :mod:`starburst.testing.iam`;
  a request they do not allow is answered ``AccessDenied`` as AWS answers
  it (403 and an XML error for S3, a JSON error for SQS and KMS). A
  ``PutObject``/``GetObject`` on a bucket whose default encryption is
  SSE-KMS also needs ``kms:GenerateDataKey``/``kms:Decrypt`` on that key
  with ``kms:ViaService = s3.<region>.amazonaws.com``.

The user's requests are recorded; the user's identity is an administrator
in the emulator, so only a bucket policy's Deny is enforced on them (moto's
own bucket-policy check, which ignores conditions and so lets a TLS-only
Deny deny everyone, is replaced while enforcing). A test checks the user's
calls against :func:`starburst.aws.policies.user_policy`. Requests that the
emulator's own machinery makes (the task runner's log writes and role
assumption, marked with :meth:`Audit.exempt`) are neither.

The emulator speaks plain HTTP, but stands for AWS over TLS (botocore
uses HTTPS there): ``aws:SecureTransport`` is ``true`` in every request.
"""

from __future__ import annotations

import dataclasses
import io
import json
import threading
import urllib.parse
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree

from moto.backends import get_backend
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.s3.models import FakeBucket

from . import iam
from ._patches import ProcessPatches

__all__ = ["Audit", "Call"]

#: Calls kept (oldest dropped first): a session-long emulator in a test run
#: sees tens of thousands of requests; a hundred thousand small records is a
#: few tens of MiB at most and more than any single test looks back on.
MAX_CALLS = 100_000
#: The emulator's fake access key: the user's identity.
USER_KEY = "testing"
#: The principal ARN of the fake credentials: what moto's GetCallerIdentity
#: answers for them (an STS-style user ARN, a moto quirk), so a bucket policy
#: written from it (`starburst setup`'s writers) names the user as AWS would.
USER_ARN = "arn:aws:sts::123456789012:user/moto"
#: The user's identity policy in the emulator: an administrator.
_ADMIN = {"Statement": [{"Sid": "EmulatedAdministrator", "Effect": "Allow", "Action": "*",
                         "Resource": "*"}]}
#: Header :meth:`Audit.exempt` adds to the emulator machinery's requests.
EXEMPT_HEADER = "X-Starburst-Emulator"
_ENFORCED = frozenset({"s3", "sqs", "kms", "secretsmanager"})
#: SQS batch operations are authorized as their single-message action.
_SQS_BATCH = {"SendMessageBatch": "SendMessage", "DeleteMessageBatch": "DeleteMessage",
              "ChangeMessageVisibilityBatch": "ChangeMessageVisibility"}
#: S3 bucket subresources (query flags): the IAM action for GET, PUT and DELETE.
_S3_BUCKET_SUB: dict[str, tuple[str, str, str]] = {
    "policy": ("GetBucketPolicy", "PutBucketPolicy", "DeleteBucketPolicy"),
    "encryption": ("GetEncryptionConfiguration", "PutEncryptionConfiguration",
                   "PutEncryptionConfiguration"),
    "lifecycle": ("GetLifecycleConfiguration", "PutLifecycleConfiguration",
                  "PutLifecycleConfiguration"),
    "tagging": ("GetBucketTagging", "PutBucketTagging", "PutBucketTagging"),
    "versioning": ("GetBucketVersioning", "PutBucketVersioning", "PutBucketVersioning"),
    "publicAccessBlock": ("GetBucketPublicAccessBlock", "PutBucketPublicAccessBlock",
                          "PutBucketPublicAccessBlock"),
    "logging": ("GetBucketLogging", "PutBucketLogging", "PutBucketLogging"),
    "ownershipControls": ("GetBucketOwnershipControls", "PutBucketOwnershipControls",
                          "PutBucketOwnershipControls"),
    "location": ("GetBucketLocation", "GetBucketLocation", "GetBucketLocation"),
    "acl": ("GetBucketAcl", "PutBucketAcl", "PutBucketAcl"),
    "cors": ("GetBucketCORS", "PutBucketCORS", "PutBucketCORS"),
}
_ACCOUNT = "123456789012"  # moto's default account, the emulated one


@dataclass(frozen=True)
class Call:
    """One IAM action one request needed.

    Attributes:
        service: the signing service (``s3``, ``sqs``, ``ecs``...).
        operation: the API operation (``HeadObject``, ``SendMessageBatch``...).
        action: the IAM action it is authorized as (``s3:GetObject``...).
        resource: the resource ARN (``*`` where the action has none or it
            could not be derived).
        context: condition keys of the request (``s3:prefix``...), and what the
            audit noted for itself under ``emulator:`` (region, SSE-KMS key).
        access_key: the access key id that signed it.
        principal: ``user``, the role ARN of an assumed role, or None.
        decision: the enforcement decision, None where not enforced.
    """

    service: str
    operation: str
    action: str
    resource: str
    context: dict[str, Any]
    access_key: str | None
    principal: str | None
    decision: iam.Decision | None = None


_PATCHES = ProcessPatches("another emulated AWS already audits requests (moto's server "
                          "state is process-wide): close it first")


@dataclass
class Audit:
    """Records every request of the emulated AWS; enforces workers' S3/SQS/KMS ones.

    Attributes:
        enforce: answer AccessDenied to an assumed role's S3, SQS or KMS
            request its policies do not allow; False records only.
        checked: requests evaluated for enforcement.
        denied: requests answered AccessDenied.
    """

    enforce: bool = True
    checked: int = 0
    denied: int = 0
    _calls: deque[Call] = field(default_factory=lambda: deque(maxlen=MAX_CALLS), repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- lifecycle --------------------------------------------------------
    def install(self) -> None:
        """Wrap moto's server application; refuses if another audit is active."""
        audit = self

        def call(app: Any, environ: dict[str, Any], start_response: Any) -> Any:
            return audit._serve(app, environ, start_response)

        replacements: dict[str, tuple[Any, str, Any]] = {
            "app": (DomainDispatcherApplication, "__call__", call)}
        if self.enforce:
            # moto's own bucket-policy check ignores conditions (so a TLS-only or
            # writers-only Deny denies everyone); the audit evaluates them instead.
            replacements["permission"] = (FakeBucket, "get_permission", _neutral)
        _PATCHES.install(self, replacements)

    def uninstall(self) -> None:
        """Give moto's application its own behaviour back."""
        _PATCHES.uninstall(self)

    def reset(self) -> None:
        """Forget the calls recorded so far (counters stay)."""
        with self._lock:
            self._calls.clear()

    @staticmethod
    def exempt(*clients: Any) -> None:
        """Mark every request of these boto3 clients as the emulator's own machinery."""
        for one in clients:
            one.meta.events.register("before-send", _mark_exempt)

    # -- what was recorded -------------------------------------------------
    def calls(self, principal: str | None = None) -> list[Call]:
        """The calls recorded, oldest first; only ``principal``'s if given."""
        with self._lock:
            recorded = list(self._calls)
        return [c for c in recorded if principal is None or c.principal == principal]

    def user_calls(self) -> list[Call]:
        """The calls made with the user's credentials."""
        return self.calls(principal="user")

    def worker_calls(self) -> list[Call]:
        """The calls made with an assumed role's credentials (workers)."""
        return [c for c in self.calls() if c.principal not in (None, "user")]

    # -- serving -----------------------------------------------------------
    def _serve(self, app: Any, environ: dict[str, Any], start_response: Any) -> Any:
        original: Callable[..., Any] = _PATCHES.original("app")
        if environ.get("HTTP_" + EXEMPT_HEADER.upper().replace("-", "_")) or \
                str(environ.get("PATH_INFO", "")).startswith("/moto-api"):
            return original(app, environ, start_response)
        try:
            calls = self._classify(environ)
        except Exception:  # a request the audit cannot parse is moto's to answer
            return original(app, environ, start_response)
        denial = None
        decided = []
        for one in calls:
            decision = None
            if self.enforce and _enforced(one):
                decision = self._decide(one)
                with self._lock:
                    self.checked += 1
                if not decision.allowed and denial is None:
                    denial = (one, decision)
            decided.append(dataclasses.replace(one, decision=decision))
        with self._lock:
            self._calls.extend(decided)
            if denial is not None:
                self.denied += 1
        if denial is not None:
            _drain(environ)
            return _access_denied(*denial, environ, start_response)
        return original(app, environ, start_response)

    def _classify(self, environ: dict[str, Any]) -> list[Call]:
        service, region, key = _scope(environ)
        if service is None:
            return []
        principal = self._principal(key)
        needs = _s3_needs(environ) if service == "s3" else _api_needs(service, region, environ)
        return [Call(service=service, operation=op, action=action, resource=resource,
                     context={"aws:SecureTransport": True, **context}, access_key=key,
                     principal=principal)
                for op, action, resource, context in needs]

    def _principal(self, key: str | None) -> str | None:
        if key is None:
            return None
        if key == USER_KEY:
            return "user"
        for backend in _sts_backends():
            for role in list(getattr(backend, "assumed_roles", [])):
                if role.access_key_id == key:
                    return str(role.role_arn)
        return None

    # -- enforcement -------------------------------------------------------
    def _decide(self, call: Call) -> iam.Decision:
        assert call.principal is not None
        user = call.principal == "user"
        role_arn = USER_ARN if user else call.principal
        identity = {"the emulated administrator": _ADMIN} if user else _role_policies(role_arn)
        resource: dict[str, Any] = {}
        kms_checks: list[tuple[str, str]] = []
        if call.service == "s3":
            bucket = call.resource.split(":::", 1)[-1].split("/", 1)[0]
            model = _bucket(bucket)
            if model is not None and model.policy:
                resource[f"bucket policy of {bucket}"] = model.policy.decode()
            kms_checks = _kms_needs(call, model)
        context: dict[str, iam.ContextValue] = {
            k: v for k, v in call.context.items() if not k.startswith("emulator:")}
        request = iam.Request(call.action, call.resource, role_arn, context)
        try:
            decision = iam.evaluate(request, identity, resource)
        except iam.PolicyError as exc:  # refused, and the answer says why
            return iam.Decision(False, "implicit-deny", None,
                                f"no policy the emulator can read ({exc})")
        if not decision.allowed:
            return decision
        region = _region_of(call)
        for action, key in kms_checks:
            via: dict[str, iam.ContextValue] = {
                "kms:ViaService": f"s3.{region}.amazonaws.com", "aws:SecureTransport": True}
            kms = iam.evaluate(iam.Request(action, _key_arn(key, region), role_arn,
                                           via), identity)
            if not kms.allowed:
                return iam.Decision(False, kms.outcome, kms.sid,
                                    f"{kms.policy or 'no policy'} ({action} on {key} for "
                                    "SSE-KMS)")
        return decision


# -- helpers ---------------------------------------------------------------------
def _enforced(call: Call) -> bool:
    """An assumed role's S3, SQS, KMS and Secrets Manager requests; the user's S3 ones
    (bucket policy)."""
    if call.principal == "user":
        return call.service == "s3"
    return call.principal is not None and call.service in _ENFORCED


#: S3 operations that make S3 use the object's SSE-KMS key, and the KMS actions
#: they need of the caller (AWS: a multipart upload needs Decrypt as well,
#: HeadObject needs neither).
_KMS_BY_OPERATION: dict[str, tuple[str, ...]] = {
    "PutObject": ("kms:GenerateDataKey",),
    "CreateMultipartUpload": ("kms:GenerateDataKey", "kms:Decrypt"),
    "UploadPart": ("kms:GenerateDataKey", "kms:Decrypt"),
    "CompleteMultipartUpload": ("kms:GenerateDataKey", "kms:Decrypt"),
    "GetObject": ("kms:Decrypt",),
}


def _kms_needs(call: Call, bucket: Any) -> list[tuple[str, str]]:
    """(KMS action, key) pairs an S3 call needs: a new object takes the request's key
    or the bucket's default, a read the key its object was written with."""
    operation = call.operation
    if call.operation == "CopyObject":
        operation = "PutObject" if call.action == "s3:PutObject" else "GetObject"
    actions = _KMS_BY_OPERATION.get(operation, ())
    if not actions or bucket is None:
        return []
    if operation == "GetObject":
        key_name = call.resource.split(":::", 1)[-1].partition("/")[2]
        obj = bucket.keys.get(key_name) if hasattr(bucket, "keys") else None
        key = getattr(obj, "kms_key_id", None) if getattr(
            obj, "encryption", None) == "aws:kms" else None
    else:
        key = call.context.get("emulator:kms-key") or _default_kms_key(bucket)
    return [(action, str(key)) for action in actions] if key else []


def _neutral(bucket: Any, action: str, resource: str) -> Any:
    from moto.iam.access_control import PermissionResult

    return PermissionResult.NEUTRAL


def _mark_exempt(request: Any, **_: Any) -> None:
    request.headers[EXEMPT_HEADER] = "1"


def _sts_backends() -> Iterable[Any]:
    backends = get_backend("sts")
    for account in list(backends.keys()):
        yield from list(backends[account].values())


def _role_policies(role_arn: str) -> dict[str, Any]:
    account = role_arn.split(":")[4]
    iam_backend: Any = get_backend("iam")[account]["global"]
    try:
        role = iam_backend.get_role_by_arn(role_arn)
    except Exception:
        return {}
    found: dict[str, Any] = {f"inline {name}": doc for name, doc in role.policies.items()}
    for arn, managed in role.managed_policies.items():
        found[arn] = managed.document
    return {name: json.loads(doc) if isinstance(doc, str) else doc
            for name, doc in found.items()}


def _bucket(name: str) -> Any:
    backends: Any = get_backend("s3")
    try:
        return backends[_ACCOUNT]["global"].get_bucket(name)
    except Exception:
        return None


def _default_kms_key(bucket: Any) -> str | None:
    found: dict[str, str] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for name, value in node.items():
                if isinstance(value, str):
                    found.setdefault(name, value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(getattr(bucket, "encryption", None))
    if found.get("SSEAlgorithm") in ("aws:kms", "aws:kms:dsse"):
        return found.get("KMSMasterKeyID") or "alias/aws/s3"
    return None


def _region_of(call: Call) -> str:
    return str(call.context.get("emulator:region") or "us-east-1")


def _key_arn(key: str, region: str) -> str:
    if key.startswith("arn:"):
        return key
    return f"arn:aws:kms:{region}:{_ACCOUNT}:{key if key.startswith('alias/') else 'key/' + key}"


def _scope(environ: dict[str, Any]) -> tuple[str | None, str, str | None]:
    """(service, region, access key id) from the SigV4 Authorization header or a presigned URL."""
    auth = str(environ.get("HTTP_AUTHORIZATION", ""))
    credential = ""
    if "Credential=" in auth:
        credential = auth.split("Credential=", 1)[1].split(",", 1)[0].strip()
    else:
        query = urllib.parse.parse_qs(str(environ.get("QUERY_STRING", "")))
        credential = (query.get("X-Amz-Credential") or [""])[0]
    parts = credential.split("/")
    if len(parts) < 5:
        return None, "", None
    return parts[3], parts[2], parts[0]


def _body(environ: dict[str, Any]) -> bytes:
    """Read the request body and put it back for moto."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    stream = environ.get("wsgi.input")
    if not length or stream is None:
        return b""
    raw = stream.read(length)
    environ["wsgi.input"] = io.BytesIO(raw)
    return bytes(raw)


def _drain(environ: dict[str, Any]) -> None:
    """Read what is left of a refused request's body, so the connection stays usable."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        stream.read(length)
    elif environ.get("wsgi.input_terminated"):
        stream.read()


Need = tuple[str, str, str, dict[str, Any]]


def _s3_needs(environ: dict[str, Any]) -> list[Need]:
    method = str(environ.get("REQUEST_METHOD", "GET"))
    path = urllib.parse.unquote(str(environ.get("PATH_INFO", "")))
    query = urllib.parse.parse_qs(str(environ.get("QUERY_STRING", "")), keep_blank_values=True)
    host = str(environ.get("HTTP_HOST", "")).split(":")[0]
    bucket, _, key = path.lstrip("/").partition("/")
    labels = host.split(".")
    if len(labels) > 1 and not host.replace(".", "").isdigit() and labels[0] != "s3":
        bucket, key = labels[0], path.lstrip("/")  # virtual-hosted style
    region = _scope(environ)[1]
    base = {"emulator:region": region}
    sse = environ.get("HTTP_X_AMZ_SERVER_SIDE_ENCRYPTION")
    if sse and sse.startswith("aws:kms"):
        base["emulator:kms-key"] = environ.get(
            "HTTP_X_AMZ_SERVER_SIDE_ENCRYPTION_AWS_KMS_KEY_ID") or "alias/aws/s3"
    if not bucket:
        return [("ListBuckets", "s3:ListAllMyBuckets", "*", base)]
    arn = f"arn:aws:s3:::{bucket}"
    if not key:
        return _s3_bucket_needs(method, query, arn, base, environ)
    obj = f"{arn}/{key}"
    if "uploadId" in query:
        if method == "DELETE":
            return [("AbortMultipartUpload", "s3:AbortMultipartUpload", obj, base)]
        if method == "GET":
            return [("ListParts", "s3:ListMultipartUploadParts", obj, base)]
        op = "CompleteMultipartUpload" if method == "POST" else "UploadPart"
        return [(op, "s3:PutObject", obj, base)]
    if "uploads" in query:
        return [("CreateMultipartUpload", "s3:PutObject", obj, base)]
    if "tagging" in query:
        verb = {"GET": "Get", "PUT": "Put", "DELETE": "Delete"}.get(method, "Get")
        return [(f"{verb}ObjectTagging", f"s3:{verb}ObjectTagging", obj, base)]
    if method in ("GET", "HEAD"):
        return [("GetObject" if method == "GET" else "HeadObject", "s3:GetObject", obj, base)]
    if method == "DELETE":
        return [("DeleteObject", "s3:DeleteObject", obj, base)]
    source = environ.get("HTTP_X_AMZ_COPY_SOURCE")
    if source:
        src = urllib.parse.unquote(str(source)).lstrip("/").split("?", 1)[0]
        return [("CopyObject", "s3:PutObject", obj, base),
                ("CopyObject", "s3:GetObject", f"arn:aws:s3:::{src}", base)]
    return [("PutObject", "s3:PutObject", obj, base)]


def _s3_bucket_needs(method: str, query: dict[str, list[str]], arn: str,
                     base: dict[str, Any], environ: dict[str, Any]) -> list[Need]:
    for flag, (get, put, delete) in _S3_BUCKET_SUB.items():
        if flag in query:
            action = {"GET": get, "PUT": put, "DELETE": delete}.get(method, get)
            return [(action, f"s3:{action}", arn, base)]
    if "delete" in query and method == "POST":
        keys = [el.text or "" for el in ElementTree.fromstring(_body(environ)).iter()
                if el.tag.rsplit("}", 1)[-1] == "Key"]
        return [("DeleteObjects", "s3:DeleteObject", f"{arn}/{k}", base) for k in keys]
    if "uploads" in query:
        return [("ListMultipartUploads", "s3:ListBucketMultipartUploads", arn, base)]
    if "versions" in query:
        return [("ListObjectVersions", "s3:ListBucketVersions", arn, base)]
    if method == "PUT":
        return [("CreateBucket", "s3:CreateBucket", arn, base)]
    if method == "DELETE":
        return [("DeleteBucket", "s3:DeleteBucket", arn, base)]
    if method == "HEAD":
        return [("HeadBucket", "s3:ListBucket", arn, base)]
    context = dict(base)
    if "prefix" in query:
        context["s3:prefix"] = query["prefix"][0]
    op = "ListObjectsV2" if query.get("list-type") == ["2"] else "ListObjects"
    return [(op, "s3:ListBucket", arn, context)]


def _api_needs(service: str, region: str, environ: dict[str, Any]) -> list[Need]:
    raw = _body(environ)
    target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
    params: dict[str, Any]
    if target:
        operation = target.rsplit(".", 1)[-1]
        try:
            params = json.loads(raw or b"{}")
        except ValueError:
            params = {}
    else:
        form = urllib.parse.parse_qs(raw.decode(errors="replace"))
        form.update(urllib.parse.parse_qs(str(environ.get("QUERY_STRING", ""))))
        params = {k: v[0] for k, v in form.items()}
        operation = str(params.get("Action", ""))
        if not operation:  # REST protocols (Batch): the last path part names it
            path = str(environ.get("PATH_INFO", "")).rstrip("/").rsplit("/", 1)[-1]
            operation = _camel(path)
    if not operation:
        return []
    if service == "sqs":
        return _sqs_needs(operation, region, params)
    context = _iam_context(operation, params) if service == "iam" else {}
    return [(operation, f"{service}:{operation}", _resource(service, region, operation,
                                                            params), context)]


def _iam_context(operation: str, params: dict[str, Any]) -> dict[str, Any]:
    """``iam:PermissionsBoundary`` as IAM sets it: the boundary a CreateRole asks for,
    else the boundary the named role has (PutRolePolicy and the like)."""
    if operation == "CreateRole":
        return {"iam:PermissionsBoundary": str(params.get("PermissionsBoundary") or "")}
    name = params.get("RoleName")
    if not name:
        return {}
    role = next((r for r in get_backend("iam")[_ACCOUNT]["global"].roles.values()
                 if r.name == name), None)
    boundary = getattr(role, "permissions_boundary_arn", None) if role is not None else None
    return {"iam:PermissionsBoundary": boundary} if boundary else {}


def _camel(path: str) -> str:
    known = {"submitjob": "SubmitJob", "describejobs": "DescribeJobs",
             "terminatejob": "TerminateJob", "canceljob": "CancelJob", "listjobs": "ListJobs",
             "describejobqueues": "DescribeJobQueues",
             "describecomputeenvironments": "DescribeComputeEnvironments",
             "describejobdefinitions": "DescribeJobDefinitions",
             "registerjobdefinition": "RegisterJobDefinition"}
    return known.get(path.lower(), path)


def _sqs_needs(operation: str, region: str, params: dict[str, Any]) -> list[Need]:
    action = f"sqs:{_SQS_BATCH.get(operation, operation)}"
    url = str(params.get("QueueUrl", ""))
    if url:
        parts = urllib.parse.urlparse(url).path.strip("/").split("/")
        account, name = (parts[0], parts[-1]) if len(parts) >= 2 else (_ACCOUNT, parts[-1])
        resource = f"arn:aws:sqs:{region}:{account}:{name}"
    elif params.get("QueueName"):
        account = str(params.get("QueueOwnerAWSAccountId") or _ACCOUNT)
        resource = f"arn:aws:sqs:{region}:{account}:{params['QueueName']}"
    elif operation == "ListQueues":
        resource = f"arn:aws:sqs:{region}:{_ACCOUNT}:{params.get('QueueNamePrefix', '')}*"
    else:
        resource = "*"
    return [(operation, action, resource, {})]


def _resource(service: str, region: str, operation: str, params: dict[str, Any]) -> str:
    """The resource ARN an action is authorized on, where the request names it."""
    account = _ACCOUNT
    if service == "kms":
        key = params.get("KeyId")
        return _key_arn(str(key), region) if key else "*"
    if service == "secretsmanager":
        secret = str(params.get("SecretId") or params.get("Name") or "")
        if not secret:
            return "*"
        return secret if secret.startswith("arn:") else (
            f"arn:aws:secretsmanager:{region}:{account}:secret:{secret}")
    if service == "logs" and params.get("logGroupName"):
        return f"arn:aws:logs:{region}:{account}:log-group:{params['logGroupName']}:*"
    if service == "ecr" and params.get("repositoryName"):
        return f"arn:aws:ecr:{region}:{account}:repository/{params['repositoryName']}"
    if service == "iam" and params.get("RoleName"):  # GetRole, CreateRole, PutRolePolicy...
        return f"arn:aws:iam::{account}:role/{params['RoleName']}"
    if service == "iam" and params.get("PolicyArn"):  # GetPolicy, CreatePolicyVersion...
        return str(params["PolicyArn"])
    if service == "iam" and operation == "CreatePolicy" and params.get("PolicyName"):
        path = str(params.get("Path") or "/")
        return f"arn:aws:iam::{account}:policy{path}{params['PolicyName']}"
    if service == "ecs":
        return _ecs_resource(region, operation, params)
    return "*"


def _ecs_resource(region: str, operation: str, params: dict[str, Any]) -> str:
    ecs = f"arn:aws:ecs:{region}:{_ACCOUNT}"
    cluster = str(params.get("cluster") or "default").rsplit("/", 1)[-1]
    if operation == "RunTask":
        definition = str(params.get("taskDefinition", ""))
        if definition.startswith("arn:"):
            return definition
        return f"{ecs}:task-definition/{definition}" + ("" if ":" in definition else ":*")
    if operation in ("StopTask", "ExecuteCommand") and params.get("task"):
        task = str(params["task"])
        return task if task.startswith("arn:") else f"{ecs}:task/{cluster}/{task}"
    if operation == "DescribeTasks" and params.get("tasks"):
        task = str(params["tasks"][0])
        return task if task.startswith("arn:") else f"{ecs}:task/{cluster}/{task}"
    if operation == "DescribeClusters":
        names = params.get("clusters") or ["default"]
        name = str(names[0])
        return name if name.startswith("arn:") else f"{ecs}:cluster/{name}"
    if operation == "TagResource" and params.get("resourceArn"):
        return str(params["resourceArn"])
    return "*"


def _access_denied(call: Call, decision: iam.Decision, environ: dict[str, Any],
                   start_response: Any) -> list[bytes]:
    """AccessDenied as AWS answers it: S3's XML error, or SQS's and KMS's JSON one."""
    why = {"explicit-deny": "with an explicit deny in " + (decision.policy or "a policy"),
           "implicit-deny": "because no identity-based policy allows the "
                            f"{call.action} action"}.get(decision.outcome, "")
    if decision.outcome == "explicit-deny" and decision.sid:
        why += f" (statement {decision.sid})"
    if "SSE-KMS" in (decision.policy or ""):
        why += f" [{decision.policy}]"
    who = USER_ARN if call.principal == "user" else call.principal
    message = (f"User: {who} is not authorized to perform: {call.action} on "
               f"resource: {call.resource} {why}")
    request_id = uuid.uuid4().hex.upper()[:16]
    if call.service == "s3":
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
                f"<Message>{_xml(message)}</Message><RequestId>{request_id}</RequestId>"
                "</Error>").encode()
        headers = [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)]
        status = "403 Forbidden"
    else:
        kind = "com.amazon.coral.service#AccessDeniedException"
        headers = [("Content-Type", "application/x-amz-json-1.0"),
                   ("x-amzn-RequestId", request_id)]
        if call.service in ("kms", "secretsmanager"):
            kind = "AccessDeniedException"
        else:  # SQS's JSON protocol names the query protocol's code in a header
            headers.append(("x-amzn-query-error", "AccessDenied;Sender"))
        body = json.dumps({"__type": kind, "message": message}).encode()
        status = "400 Bad Request"
        if not environ.get("HTTP_X_AMZ_TARGET"):  # the query protocol: an XML error
            body = (f"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
                    f"<Message>{_xml(message)}</Message></Error><RequestId>{request_id}"
                    "</RequestId></ErrorResponse>").encode()
            headers = [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)]
            status = "403 Forbidden"
    start_response(status, [*headers, ("Content-Length", str(len(body)))])
    return [body]


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
