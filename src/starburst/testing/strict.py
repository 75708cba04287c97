"""Rules of real AWS that moto does not apply, taught to ``emulated_aws()``.

moto answers at once and consistently where AWS is eventually consistent
or paginates oddly, so code that is wrong on AWS passes against plain
moto. :class:`StrictRules` patches moto's in-process models (the server
of ``emulated_aws()`` runs in this process) so that they behave as AWS
documents. Each rule is on by default, has a switch and a window, and
counts how often it was served, so a test can prove the behaviour really
happened (a window shorter than the poller's interval proves nothing):

* ECS DescribeTasks answers ``MISSING`` (a failure, not a task) for a task
  launched less than ``describe_missing_s`` ago: ECS is eventually
  consistent, and a task just returned by RunTask may be unknown to
  DescribeTasks for a few seconds (counter ``missing_served``);
* AWS Batch DescribeJobs leaves out a job submitted less than
  ``describe_missing_s`` ago, as it does for a job it does not know yet
  (counter ``missing_served``);
* IAM propagates: ECS RegisterTaskDefinition refuses a task or execution
  role created less than ``iam_propagation_s`` ago ("Role is not valid"),
  and RunTask refuses a task definition naming one ("ECS was unable to
  assume the role") (counter ``propagation_refusals``);
* AWS Batch: a compute environment created with an instance profile
  younger than ``iam_propagation_s`` is INVALID for good ("CLIENT_ERROR -
  ... instance profile ... is not valid") (counter ``propagation_refusals``);
* a fresh account has no ECS service-linked role: RunTask refuses ("Unable
  to assume the service linked role") until ``AWSServiceRoleForECS``
  exists and has propagated (switch ``service_linked_role``, counter
  ``service_linked_refusals``);
* CloudWatch Logs GetLogEvents returns ``empty_log_pages`` empty pages at
  the start of every read of a stream, each with a new ``nextForwardToken``:
  AWS may return empty pages before the end of a stream, whose end is the
  page whose token repeats (counter ``empty_pages_served``);
* SQS ChangeMessageVisibility is refused (``InvalidParameterValue``: "Total
  VisibilityTimeout for the message is beyond the limit") when it would keep
  a message invisible for more than ``max_visibility_s`` since its latest
  receive: 12 hours on AWS, which moto counts from the send instead (counter
  ``visibility_refusals``);
* S3 lifecycle rules expire objects, time-scaled: ``lifecycle_day_s``
  seconds stand for a day, and an object that an enabled rule's
  ``Expiration: {Days: n}`` covers (its ``Prefix``, or ``Filter`` with a
  ``Prefix``, a ``Tag`` or an ``And`` of them) is gone once it is ``n *
  lifecycle_day_s`` seconds old; an upload left incomplete past
  ``AbortIncompleteMultipartUpload`` is aborted. AWS expires an object at
  the first midnight UTC after its ``Days`` and removes it asynchronously;
  the emulator removes it at the earliest moment AWS may, on the next
  request to its bucket (counters ``objects_expired``, ``uploads_aborted``).
  A versioned bucket's expired object gets a delete marker; ``Date``
  expirations, noncurrent versions and transitions are not applied.
  :meth:`StrictRules.advance_lifecycle` lets days pass at once, for a test
  of a real session, whose own steps take seconds.

Only one set of rules is active in a process (moto's state is process-wide).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from moto.backends import get_backend
from moto.batch import models as batch_models
from moto.ecs import models as ecs_models
from moto.ecs import responses as ecs_responses
from moto.ecs.exceptions import EcsClientException
from moto.logs import models as logs_models
from moto.s3 import models as s3_models
from moto.sqs import models as sqs_models
from moto.sqs.exceptions import InvalidParameterValue

from ._patches import ProcessPatches

__all__ = ["StrictRules"]

#: Seconds a just-launched task or job stays unknown to Describe*: AWS gives
#: no figure (a few seconds in practice); two is above starburst's one-second
#: poll interval, so every launch is met by at least one MISSING answer,
#: and short enough to cost the suite nothing noticeable.
DEFAULT_DESCRIBE_MISSING_S = 2.0
#: Empty pages GetLogEvents returns per stream before its events: two, so a
#: reader that stops at the first empty page, or at the second, is caught.
DEFAULT_EMPTY_LOG_PAGES = 2
#: Seconds a new IAM role is refused by ECS: AWS gives no figure (seconds in
#: practice); half a second makes every test's first launch meet it (roles
#: are created anew after each reset) for about half a second of retrying.
DEFAULT_IAM_PROPAGATION_S = 0.5
#: SQS's limit on a message's total invisibility since its receive: AWS's 12
#: hours by default (no test runs that long, so nothing is refused unless a
#: test scales it down to seconds, as the lease tests do).
DEFAULT_MAX_VISIBILITY_S = 43_200.0
#: Seconds that stand for a day in S3 lifecycle rules: a real day, 86,400 s by
#: default (no test runs that long and the buckets are made anew at each reset,
#: so nothing expires unless a test scales it down or passes days with
#: ``advance_lifecycle``, as tests/aws/test_lifecycle_expiry.py does).
DEFAULT_LIFECYCLE_DAY_S = 86_400.0
#: Where IAM keeps ECS's service-linked role.
_ECS_LINKED_PATH = "/aws-service-role/ecs.amazonaws.com/"

_PATCHES = ProcessPatches("another emulated AWS already applies its StrictRules (moto's "
                          "state is process-wide): close it first")


@dataclass
class StrictRules:
    """The AWS rules ``emulated_aws()`` applies on top of moto (see the module).

    Attributes:
        describe_missing_s: seconds after launch that DescribeTasks answers
            MISSING and DescribeJobs leaves the job out; 0 turns it off.
        iam_propagation_s: seconds a new role is refused by ECS; 0 turns it off.
        service_linked_role: RunTask needs ECS's service-linked role.
        empty_log_pages: empty GetLogEvents pages per stream before its
            events; 0 turns it off.
        max_visibility_s: seconds since its latest receive past which a
            message's visibility cannot be extended (SQS: 12 hours); 0
            turns the rule off (moto's own check, from the send, remains).
        lifecycle_day_s: seconds that stand for one day of an S3 lifecycle
            rule (default a real day: 86,400); 0 turns expiry off.
        missing_served: MISSING answers (ECS) and left-out jobs (Batch) served.
        empty_pages_served: empty log pages served.
        propagation_refusals: ECS calls refused for a role not propagated yet.
        service_linked_refusals: RunTask calls refused for the missing
            service-linked role.
        visibility_refusals: ChangeMessageVisibility calls refused past
            ``max_visibility_s``.
        objects_expired: S3 objects removed (or given a delete marker) by a
            lifecycle rule's ``Expiration``.
        uploads_aborted: multipart uploads aborted by a lifecycle rule's
            ``AbortIncompleteMultipartUpload``.
    """

    describe_missing_s: float = DEFAULT_DESCRIBE_MISSING_S
    empty_log_pages: int = DEFAULT_EMPTY_LOG_PAGES
    iam_propagation_s: float = DEFAULT_IAM_PROPAGATION_S
    service_linked_role: bool = True
    max_visibility_s: float = DEFAULT_MAX_VISIBILITY_S
    lifecycle_day_s: float = DEFAULT_LIFECYCLE_DAY_S
    missing_served: int = 0
    empty_pages_served: int = 0
    propagation_refusals: int = 0
    service_linked_refusals: int = 0
    visibility_refusals: int = 0
    objects_expired: int = 0
    uploads_aborted: int = 0
    _tokens: dict[str, tuple[str | None, int]] = field(default_factory=dict, repr=False)
    _issued: int = field(default=0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _expiry_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _lifecycle_ahead_s: float = field(default=0.0, repr=False)

    # -- lifecycle --------------------------------------------------------
    def install(self) -> None:
        """Patch moto's models; refuses if another set of rules is active."""
        rules = self
        original = _PATCHES.original

        def mark_received(message: Any, *args: Any, **kwargs: Any) -> None:
            message._starburst_received_at = time.time()
            original("received")(message, *args, **kwargs)

        def change_message_visibility(backend: Any, queue_name: str, receipt_handle: str,
                                      visibility_timeout: int) -> None:
            rules._check_visibility(backend, queue_name, receipt_handle, visibility_timeout)
            original("visibility")(backend, queue_name, receipt_handle, visibility_timeout)

        def register_task_definition(backend: Any, *args: Any, **kwargs: Any) -> Any:
            rules._check_roles(backend, [kwargs.get("task_role_arn"),
                                         kwargs.get("execution_role_arn")],
                               "Role is not valid")
            return original("register")(backend, *args, **kwargs)

        def run_task(backend: Any, *args: Any, **kwargs: Any) -> Any:
            rules._check_run(backend, args, kwargs)
            return original("run")(backend, *args, **kwargs)

        def create_compute_environment(backend: Any, *args: Any, **kwargs: Any) -> Any:
            env = original("create_ce")(backend, *args, **kwargs)
            rules._check_instance_profile(backend, env)
            return env

        def describe_compute_environments(backend: Any, *args: Any,
                                          **kwargs: Any) -> list[dict[str, Any]]:
            described: list[dict[str, Any]] = original("describe_ce")(backend, *args, **kwargs)
            return [rules._invalid(backend, env) for env in described]

        def describe_tasks(response: Any) -> Any:
            return rules._describe_tasks(response)

        def describe_jobs(backend: Any, jobs: list[str] | None) -> list[dict[str, Any]]:
            return rules._describe_jobs(backend, jobs)

        def get_log_events(stream: Any, *args: Any) -> Any:
            return rules._get_log_events(stream, *args)

        def get_bucket(backend: Any, bucket_name: str) -> Any:
            # Every request on a bucket's objects finds its bucket here first.
            bucket = original("bucket")(backend, bucket_name)
            rules._expire(backend, bucket)
            return bucket

        def create_multipart_upload(backend: Any, *args: Any, **kwargs: Any) -> Any:
            upload = original("upload")(backend, *args, **kwargs)
            upload._starburst_initiated_at = time.time()  # moto keeps no initiation time
            return upload

        ecs = ecs_models.EC2ContainerServiceBackend
        batch = batch_models.BatchBackend
        s3 = s3_models.S3Backend
        _PATCHES.install(self, {
            "ecs": (ecs_responses.EC2ContainerServiceResponse, "describe_tasks",
                    describe_tasks),
            "batch": (batch, "describe_jobs", describe_jobs),
            "logs": (logs_models.LogStream, "get_log_events", get_log_events),
            "register": (ecs, "register_task_definition", register_task_definition),
            "run": (ecs, "run_task", run_task),
            "create_ce": (batch, "create_compute_environment", create_compute_environment),
            "describe_ce": (batch, "describe_compute_environments",
                            describe_compute_environments),
            "received": (sqs_models.Message, "mark_received", mark_received),
            "visibility": (sqs_models.SQSBackend, "change_message_visibility",
                           change_message_visibility),
            "bucket": (s3, "get_bucket", get_bucket),
            "upload": (s3, "create_multipart_upload", create_multipart_upload)})

    def uninstall(self) -> None:
        """Give moto its own behaviour back."""
        _PATCHES.uninstall(self)

    def reset(self) -> None:
        """Forget the tokens handed out and the lifecycle days passed (moto's state was wiped)."""
        with self._lock:
            self._tokens.clear()
            self._lifecycle_ahead_s = 0.0

    def advance_lifecycle(self, days: float) -> None:
        """Let ``days`` pass for S3 lifecycle rules: every object counts as that much older.

        A real session's steps take seconds, so at a scale small enough to wait
        weeks out, the session itself would last days; this lets a test pass the
        weeks at once instead (``reset()`` sets the calendar back).
        """
        with self._lock:
            self._lifecycle_ahead_s += days * self.lifecycle_day_s

    # -- the rules --------------------------------------------------------
    def _young(self, created: datetime | None) -> bool:
        if self.describe_missing_s <= 0 or created is None:
            return False
        now = datetime.now(created.tzinfo) if created.tzinfo else datetime.now()
        return (now - created).total_seconds() < self.describe_missing_s

    def _iam(self, backend: Any) -> Any:
        return get_backend("iam")[backend.account_id]["global"]

    def _propagating(self, created: datetime | None) -> bool:
        if self.iam_propagation_s <= 0 or created is None:
            return False
        # moto's IAM stamps CreateDate in naive UTC (moto.core.utils.utcnow), not local time.
        since = created if created.tzinfo else created.replace(tzinfo=UTC)
        return (datetime.now(UTC) - since).total_seconds() < self.iam_propagation_s

    def _check_roles(self, backend: Any, arns: list[str | None], message: str) -> None:
        iam = self._iam(backend)
        for arn in filter(None, arns):
            role = next((r for r in list(iam.roles.values()) if r.arn == arn), None)
            if role is not None and self._propagating(getattr(role, "create_date", None)):
                with self._lock:
                    self.propagation_refusals += 1
                raise EcsClientException(message.format(arn=arn))

    def _check_run(self, backend: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self.service_linked_role:
            linked = [r for r in list(self._iam(backend).roles.values())
                      if getattr(r, "path", "") == _ECS_LINKED_PATH]
            if not linked or all(self._propagating(getattr(r, "create_date", None))
                                 for r in linked):
                with self._lock:
                    self.service_linked_refusals += 1
                raise EcsClientException(
                    "Unable to assume the service linked role. Please verify that the ECS "
                    "service linked role exists.")
        definition_name = args[1] if len(args) > 1 else kwargs.get("task_definition_str")
        try:
            definition = backend.describe_task_definition(definition_name)
        except Exception:  # moto's own error follows from the real call
            return
        self._check_roles(backend, [getattr(definition, "task_role_arn", None),
                                    getattr(definition, "execution_role_arn", None)],
                          "ECS was unable to assume the role '{arn}' that was provided for "
                          "this task. Please verify that the role being passed has the proper "
                          "trust relationship and permissions and that your IAM user has "
                          "permissions to pass this role.")

    def _check_instance_profile(self, backend: Any, env: Any) -> None:
        resources = getattr(env, "compute_resources", None) or {}
        arn = resources.get("instanceRole", "")
        iam = self._iam(backend)
        profile = next((p for p in list(iam.instance_profiles.values())
                        if arn in (p.arn, p.name)), None)
        if profile is not None and self._propagating(getattr(profile, "create_date", None)):
            with self._lock:
                self.propagation_refusals += 1
            env._starburst_invalid = (f"CLIENT_ERROR - The instance profile {arn} is not "
                                      "valid")

    def _invalid(self, backend: Any, described: dict[str, Any]) -> dict[str, Any]:
        env = backend._compute_environments.get(described.get("computeEnvironmentArn", ""))
        reason = getattr(env, "_starburst_invalid", None)
        if reason is None:
            return described
        return {**described, "status": "INVALID", "statusReason": reason}

    def _describe_tasks(self, response: Any) -> Any:
        from moto.core.responses import ActionResult

        result = _PATCHES.original("ecs")(response)
        body = getattr(result, "result", None)
        if not isinstance(body, dict):
            return result
        tasks = body.get("tasks", [])
        young = [t for t in tasks if self._young(getattr(t, "created_at", None))]
        if not young:
            return result
        with self._lock:
            self.missing_served += len(young)
        failures = [*body.get("failures", []),
                    *({"arn": t.task_arn, "reason": "MISSING"} for t in young)]
        return ActionResult({**body, "tasks": [t for t in tasks if t not in young],
                             "failures": failures})

    def _describe_jobs(self, backend: Any, jobs: list[str] | None) -> list[dict[str, Any]]:
        described: list[dict[str, Any]] = _PATCHES.original("batch")(backend, jobs)
        known = getattr(backend, "_jobs", {})
        kept = []
        for job in described:
            model = known.get(job.get("jobId", ""))
            if model is not None and self._young(getattr(model, "job_created_at", None)):
                with self._lock:
                    self.missing_served += 1
                continue
            kept.append(job)
        return kept

    def _check_visibility(self, backend: Any, queue_name: str, receipt_handle: str,
                          visibility_timeout: int) -> None:
        if self.max_visibility_s <= 0:
            return
        try:
            queue = backend.get_queue(queue_name)
        except Exception:  # moto's own error follows from the real call
            return
        message = next((m for m in list(queue._messages)
                        if m.had_receipt_handle(receipt_handle)), None)
        received = getattr(message, "_starburst_received_at", None)
        if received is None:
            return
        if time.time() + int(visibility_timeout) - received > self.max_visibility_s:
            with self._lock:
                self.visibility_refusals += 1
            raise InvalidParameterValue(
                f"Value {visibility_timeout} for parameter VisibilityTimeout is invalid. "
                "Reason: Total VisibilityTimeout for the message is beyond the limit "
                f"[{self.max_visibility_s:g} seconds]")

    def _expire(self, backend: Any, bucket: Any) -> None:
        day = self.lifecycle_day_s
        rules = [r for r in list(getattr(bucket, "rules", []))
                 if r.status == "Enabled" and (r.expiration_days or r.aimu_days)]
        if day <= 0 or not rules:
            return
        now = datetime.now(UTC) + timedelta(seconds=self._lifecycle_ahead_s)
        shortest = min(float(days) for r in rules
                       for days in (r.expiration_days, r.aimu_days) if days) * day
        if (now - bucket.creation_date).total_seconds() < shortest:
            return  # nothing in it can be that old (and this check costs next to nothing)
        with self._expiry_lock:  # one sweep at a time: moto's models have no lock
            for rule in rules:
                prefix, tags = _rule_filter(rule)
                if rule.expiration_days:
                    self._expire_objects(backend, bucket, prefix, tags,
                                         now - timedelta(seconds=float(rule.expiration_days)
                                                         * day))
                if rule.aimu_days:
                    self._abort_uploads(bucket, prefix,
                                        now.timestamp() - float(rule.aimu_days) * day)

    def _expire_objects(self, backend: Any, bucket: Any, prefix: str, tags: dict[str, str],
                        written_before: datetime) -> None:
        before = written_before.replace(tzinfo=None)  # moto keeps naive UTC times
        for name in [n for n in list(bucket.keys) if n.startswith(prefix)]:
            key = bucket.keys.get(name)
            if not isinstance(key, s3_models.FakeKey) or key.last_modified > before:
                continue  # a delete marker, or not old enough
            if tags and not tags.items() <= backend.tagger.get_tag_dict_for_resource(
                    key.arn).items():
                continue
            if bucket.is_versioned:  # AWS keeps the object as a noncurrent version
                bucket.keys[name] = s3_models.FakeDeleteMarker(key=key)
            else:
                bucket.keys.pop(name)
            with self._lock:
                self.objects_expired += 1

    def _abort_uploads(self, bucket: Any, prefix: str, started_before: float) -> None:
        for upload_id, upload in list(bucket.multiparts.items()):
            started = getattr(upload, "_starburst_initiated_at", None)
            if started is not None and started <= started_before and (
                    upload.key_name.startswith(prefix)):
                bucket.multiparts.pop(upload_id, None)
                with self._lock:
                    self.uploads_aborted += 1

    def _get_log_events(self, stream: Any, *args: Any) -> Any:
        # LogStream.get_log_events(start_time, end_time, limit, next_token, start_from_head).
        # Every read from the start of a stream (no token) first meets
        # ``empty_log_pages`` empty pages, each with a new opaque token that stands
        # for the position the read started from.
        rest = list(args)
        token: str | None = rest[3] if len(rest) > 3 else None
        with self._lock:
            if token in self._tokens:
                origin, served = self._tokens.pop(token)
            elif token is None:
                origin, served = None, 0
            else:
                origin, served = token, self.empty_log_pages  # moto's own token
            if served < self.empty_log_pages:
                self._issued += 1
                fresh = f"starburst-empty-page-{self._issued}"
                self._tokens[fresh] = (origin, served + 1)
                self.empty_pages_served += 1
                return [], fresh, fresh
        if len(rest) > 3:
            rest[3] = origin
        return _PATCHES.original("logs")(stream, *rest)


def _rule_filter(rule: Any) -> tuple[str, dict[str, str]]:
    """The key prefix and the tags a moto lifecycle rule covers ("" and {}: every object)."""
    found = rule.filter
    if found is None:
        return rule.prefix or "", {}
    if found.and_filter is not None:
        return found.and_filter.prefix or "", dict(found.and_filter.tags)
    if found.tag_key:
        return "", {found.tag_key: found.tag_value or ""}
    return found.prefix or "", {}
