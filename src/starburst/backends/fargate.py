"""The Fargate backend: workers are ECS Fargate tasks.

It starts, watches and stops tasks; nothing else (the S3/SQS transport
carries the work). Per session::

    open_session: config -> ensure shared resources (bucket, cluster, log
                  group, roles, network, task definition) -> session queues
    launch:  RunTask, <= 10 tasks per call, awsvpc, env in container overrides
    poll:    DescribeTasks (<= 100 per call, at most once a second)
             -> STOPPED tasks as WorkerExit(exit code, stop code, reasons, times)
    stop:    StopTask

Credentials never travel in the overrides: a task takes them from its
task role. Throttling is retried by botocore (adaptive mode); capacity
and quota refusals make ``launch`` return fewer workers, and the
scheduler asks again later. Anything else is an error at once.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ..aws import provision
from ..aws.clients import client as make_client
from ..aws.clients import resolve_region
from ..aws.config import FIELDS, AwsConfig, load_config
from ..aws.errors import error_code, is_throttling, translate_errors
from ..aws.quota import QuotaStatus, read_plan, request_increase, vcpus_in_use
from ..aws.sizes import validate_size
from ..exceptions import BackendError, CloudError, ConfigurationError, TransportError
from ..pricing import hourly_rate, lookup
from ..pricing_cache import table_in_use
from ..quota import QuotaPlan, plan_workers, suggest_quota
from ..scheduler import LaunchPacing
from ..session import WORKER_OPTION, SessionRecord, record_key
from ..transport import open_transport
from ..transport.aws import AwsTransport
from ..transport.s3 import S3Store
from . import _environment
from .base import ComputeBackend, OutputCallback, Session, WorkerExit, WorkerSpec

if TYPE_CHECKING:
    from mypy_boto3_ecs.client import ECSClient
    from mypy_boto3_ecs.type_defs import ContainerTypeDef, KeyValuePairTypeDef, TaskTypeDef

    from ..options import ExecutorOptions

__all__ = ["FargateBackend", "task_exit"]

log = logging.getLogger("starburst")

#: RunTask starts at most 10 tasks per call.
_PER_CALL = 10
#: DescribeTasks takes at most 100 tasks per call.
_DESCRIBE_BATCH = 100
#: Task states change on a scale of seconds; describing them more often
#: than once a second only spends the account's ECS API rate.
_POLL_INTERVAL = 1.0
#: A refused RunTask (capacity) is retried a few times within one launch,
#: then left to the scheduler's next round.
_LAUNCH_RETRIES = 3
#: The default worker count on Fargate (DESIGN.md §1), capped by quota above.
DEFAULT_WORKERS = 10
#: ECS rejects container overrides larger than 8 KiB.
_OVERRIDES_LIMIT = 8192
#: StopTask calls in flight at once: stopping 100 workers takes a second,
#: not ten, and stays well under ECS's API rate.
_STOP_THREADS = 8
#: Backend options beyond the config fields: the CPU architecture.
_EXTRA = ("arch", "auto_quota_request")
_CREDENTIAL_VARS = frozenset({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                              "AWS_SECURITY_TOKEN", "AWS_PROFILE",
                              "AWS_CONTAINER_CREDENTIALS_FULL_URI"})
# Failure reasons of RunTask that mean "not now" rather than "never".
_TRANSIENT_REASONS = ("capacity", "resource:", "throttl", "rate exceeded", "limit",
                      "try again")


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def task_exit(task: TaskTypeDef) -> WorkerExit:
    """How a STOPPED task ended, from its DescribeTasks entry.

    The exit code and reason come from the worker container (exit code
    137 is SIGKILL; only a container reason with ``OutOfMemoryError``
    means out of memory). Billing runs from ``pullStartedAt`` (else
    ``startedAt``) to ``stoppedAt``.
    """
    containers = task.get("containers", [])
    empty: ContainerTypeDef = {}
    container = next((c for c in containers if c.get("name") == provision.CONTAINER_NAME),
                     containers[0] if containers else empty)
    stopped_reason = task.get("stoppedReason") or ""
    container_reason = container.get("reason") or ""
    reason = "; ".join(filter(None, [
        stopped_reason, f"container: {container_reason}" if container_reason else ""]))
    details = {
        "task_arn": task.get("taskArn", ""), "stop_code": task.get("stopCode", ""),
        "stopped_reason": stopped_reason, "container_reason": container_reason,
        "last_status": task.get("lastStatus", ""), "cpu": task.get("cpu", ""),
        "memory": task.get("memory", ""), "availability_zone": task.get("availabilityZone", ""),
        "launch_type": task.get("launchType", ""),
    }
    return WorkerExit(
        worker=task.get("taskArn", ""), exit_code=container.get("exitCode"),
        stop_code=task.get("stopCode") or None, reason=reason or None,
        started_at=_epoch(task.get("pullStartedAt") or task.get("startedAt")),
        stopped_at=_epoch(task.get("stoppedAt") or task.get("executionStoppedAt")),
        details={k: str(v) for k, v in details.items() if v})


class FargateBackend(ComputeBackend):
    """Workers as ECS Fargate tasks of one session."""

    name = "fargate"
    live_output = False
    bills_idle = True

    def __init__(self, *, session: str, shared: provision.Shared, arch: str,
                 task_definition: str, spec: WorkerSpec, ecs: ECSClient | None = None,
                 debug: bool = False) -> None:
        self.session = session
        #: Debug mode: tasks start with ECS Exec enabled (``enableExecuteCommand``).
        self.debug = debug
        self.shared = shared
        self.arch = arch
        self.ecs = ecs or make_client("ecs", region=shared.region)
        self._definitions = {(spec.image, spec.cpu, spec.memory_mib): task_definition}
        self._tasks: dict[str, float] = {}  # task ARN -> launch time; not yet seen STOPPED
        self._stop_sent: set[str] = set()
        self._keep: set[str] = set()
        self._next_poll = 0.0

    # -- session --------------------------------------------------------
    @classmethod
    def open_session(cls, *, session: str, options: ExecutorOptions,
                     on_output: OutputCallback | None = None) -> Session:
        extra = dict(options.extra)
        valid = (*FIELDS, *_EXTRA, *_environment.OPTION_NAMES)
        unknown = sorted(set(extra) - set(valid))
        if unknown:
            raise ConfigurationError(
                f"unknown option(s) {', '.join(unknown)} for backend='fargate'; valid: "
                f"{', '.join(valid)}")
        auto_request = extra.pop("auto_quota_request", None)
        if auto_request not in (None, True, False):
            raise ConfigurationError(
                f"auto_quota_request={auto_request!r} must be True (request an increase "
                "when the quota is short), False (never) or None (ask when interactive)")
        env_mode, env_options = _environment.pop_env_options(
            extra, arch=extra.pop("arch", None))
        arch = env_options.platform
        validate_size(options.cpu, options.memory_mib)
        config = load_config(extra)
        env_options = _environment.settle_mode(env_mode, env_options, config.image)
        shared = provision.ensure_shared(config)
        snapshot = None
        expected_hash: str | None = None
        if env_options.mode == "auto":
            snapshot = _environment.snapshot_of(env_options)
            report = _environment.ensure_environment(
                env_options, snapshot, region=shared.region, repository=config.ecr_repository)
            image = report.image.reference
            expected_hash = report.image.env_hash
        else:
            image = _require_image(config)
        definition = provision.ensure_task_definition(
            image=image, cpu=options.cpu, memory_mib=options.memory_mib, arch=arch,
            region=shared.region, roles=shared.roles, log_group=shared.log_group)
        queues = provision.create_session_queues(
            session, region=shared.region, max_receives=options.settings.max_receives)
        try:
            transport = AwsTransport(bucket=shared.bucket, prefix=shared.prefix, queues=queues,
                                     region=shared.region)
            worker_env = {"STARBURST_TRANSPORT": transport.spec, "STARBURST_SESSION": session}
            if expected_hash is not None:
                worker_env[_environment.EXPECTED_HASH_ENV] = expected_hash
            if env_options.code:
                if snapshot is None:
                    snapshot = _environment.snapshot_of(env_options)
                key = _environment.upload_code(transport, session, snapshot)
                if key is not None:
                    worker_env[_environment.CODE_ENV] = key
            spec = WorkerSpec(env=worker_env,
                              cpu=options.cpu, memory_mib=options.memory_mib, image=image)
            backend = cls(session=session, shared=shared, arch=arch,
                          task_definition=definition, spec=spec, debug=options.debug)
        except BaseException:
            provision.delete_session_queues(session, region=shared.region)
            raise
        price = lookup(shared.region, arch, table=table_in_use())
        rate = hourly_rate(price, options.cpu, options.memory_mib,
                           public_ip=config.assign_public_ip)
        requested = options.workers or DEFAULT_WORKERS
        notes: list[str] = []
        max_workers: int | None = None
        try:
            status = _quota_status(requested, options.cpu, shared.region)
        except CloudError as exc:
            notes.append(f"the Fargate vCPU quota could not be read ({exc}); starting "
                         f"{requested} workers and letting RunTask decide")
        else:
            plan = status.plan
            if plan.quota_vcpu is not None and plan.workers == 0:
                provision.delete_session_queues(session, region=shared.region)
                raise ConfigurationError(plan.message())
            if plan.message():
                notes.append(plan.message())
            if plan.limited and plan.quota_vcpu is not None:
                offer = _offer_increase(plan, shared.region, auto_request)
                if offer:
                    notes.append(offer)
            if status.in_use_note:
                notes.append(status.in_use_note)
            max_workers = plan.workers
        return Session(backend=backend, transport=transport, spec=spec, pacing=LaunchPacing(),
                       workers=DEFAULT_WORKERS, max_workers=max_workers, hourly_rate=rate,
                       price_note=f"{price.region} {price.arch}, {price.source}, recorded "
                                  f"{price.recorded}", notes=notes)

    @classmethod
    def attach_session(cls, *, session: str, options: ExecutorOptions,
                       on_output: OutputCallback | None = None,
                       ) -> tuple[Session, SessionRecord]:
        """Re-open a Fargate session from its record in the configured bucket and prefix.

        The record is looked for where the configuration (arguments,
        ``STARBURST_*``, config file) puts the store; the session's queues
        come from the record's transport spec and its workers' image, size
        and environment from the record, so replacement workers run what the
        first client started. Shared resources are reused (created only if
        they were deleted meanwhile); the session's queues are never created.
        """
        given = dict(options.extra)
        unknown = sorted(set(given) - {*FIELDS, "arch"})
        if unknown:
            raise ConfigurationError(
                f"unknown option(s) {', '.join(unknown)} for attaching to a Fargate session; "
                f"valid: {', '.join((*FIELDS, 'arch'))}")
        arch_given = given.pop("arch", None)
        config = load_config(given)
        region = resolve_region(None, config.region)
        bucket = config.bucket or provision.default_bucket(region)
        where = f"s3://{bucket}/{config.prefix}"
        store = S3Store(bucket, config.prefix, region=region)
        try:
            try:
                raw = store.get(record_key(session))
            except KeyError:
                raise ConfigurationError(
                    f"no Fargate session {session} in bucket {bucket!r} under prefix "
                    f"{config.prefix!r} ({where}/{record_key(session)} is missing): it ended "
                    "(its data is deleted when it ends), or it ran with another bucket, "
                    "prefix or region: pass bucket=, prefix=, region= to attach") from None
            except TransportError as exc:
                raise ConfigurationError(
                    f"cannot read the record of Fargate session {session} in bucket "
                    f"{bucket!r} under prefix {config.prefix!r}: {exc}") from exc
        finally:
            store.client.close()
        record = SessionRecord.from_bytes(raw)
        if record.backend != cls.name:
            raise ConfigurationError(
                f"session {session} ran on backend {record.backend!r}, not 'fargate': "
                f"attach with backend={record.backend!r}")
        worker = record.options.get(WORKER_OPTION)
        if not isinstance(worker, dict):
            raise ConfigurationError(
                f"the record of session {session} ({where}) does not say how its workers "
                "were started (it was written by an older starburst): attach with the "
                "version that started it")
        # What the first client was given, then what this one is given.
        recorded = {k: v for k, v in record.options.items() if k in FIELDS}
        config = load_config({**recorded, **{k: v for k, v in given.items() if v is not None}})
        shared = provision.ensure_shared(config)
        transport = open_transport(record.transport)
        try:
            image = str(worker.get("image") or config.image or "")
            cpu = float(worker.get("cpu") or options.cpu)
            memory_mib = int(worker.get("memory_mib") or options.memory_mib)
            arch = str(arch_given or worker.get("arch") or record.options.get("arch")
                       or "x86_64")
            env_raw = worker.get("env") or {}
            if not isinstance(env_raw, dict):
                raise ConfigurationError(f"the record of session {session} is malformed")
            env = {str(k): str(v) for k, v in env_raw.items()}
            env.update({"STARBURST_TRANSPORT": transport.spec, "STARBURST_SESSION": session})
            if not image:
                raise ConfigurationError(
                    f"the record of session {session} names no container image")
            definition = provision.ensure_task_definition(
                image=image, cpu=cpu, memory_mib=memory_mib, arch=arch,
                region=shared.region, roles=shared.roles, log_group=shared.log_group)
            spec = WorkerSpec(env=env, cpu=cpu, memory_mib=memory_mib, image=image)
            backend = cls(session=session, shared=shared, arch=arch,
                          task_definition=definition, spec=spec, debug=options.debug)
        except BaseException:
            transport.close()
            raise
        price = lookup(shared.region, arch, table=table_in_use())
        rate = hourly_rate(price, cpu, memory_mib, public_ip=config.assign_public_ip)
        return Session(backend=backend, transport=transport, spec=spec, pacing=LaunchPacing(),
                       workers=record.workers, hourly_rate=rate,
                       price_note=f"{price.region} {price.arch}, {price.source}, recorded "
                                  f"{price.recorded}"), record

    def _definition(self, spec: WorkerSpec) -> str:
        key = (spec.image, spec.cpu, spec.memory_mib)
        if key not in self._definitions:
            self._definitions[key] = provision.ensure_task_definition(
                image=spec.image, cpu=spec.cpu, memory_mib=spec.memory_mib, arch=self.arch,
                region=self.shared.region, roles=self.shared.roles,
                log_group=self.shared.log_group)
        return self._definitions[key]

    # -- launch ---------------------------------------------------------
    def launch(self, count: int, spec: WorkerSpec) -> list[str]:
        leaked = sorted(_CREDENTIAL_VARS & set(spec.env))
        if leaked:
            raise BackendError(
                f"refusing to put {', '.join(leaked)} in task overrides: workers take "
                "credentials from their task role, never from the environment starburst sends")
        definition = self._definition(spec)
        env: list[KeyValuePairTypeDef] = [{"name": k, "value": v}
                                          for k, v in sorted(spec.env.items())]
        overrides: Any = {"containerOverrides": [
            {"name": provision.CONTAINER_NAME, "environment": env}]}
        if len(json.dumps(overrides)) > _OVERRIDES_LIMIT:
            raise BackendError(
                f"the worker environment is {len(json.dumps(overrides))} bytes, above ECS's "
                f"{_OVERRIDES_LIMIT}-byte limit on task overrides; pass less through it")
        started: list[str] = []
        while len(started) < count:
            arns = self._run_task(definition, min(_PER_CALL, count - len(started)), overrides)
            started.extend(arns)
            if not arns:
                break
        return started

    def _run_task(self, definition: str, n: int, overrides: Any) -> list[str]:
        """One RunTask call, retried on capacity refusals; return the started ARNs."""
        for attempt in range(_LAUNCH_RETRIES):
            with translate_errors(f"ECS RunTask in cluster {self.shared.cluster}",
                                  kind=BackendError):
                try:
                    response = self.ecs.run_task(
                        cluster=self.shared.cluster, taskDefinition=definition, count=n,
                        launchType="FARGATE", platformVersion="LATEST",
                        networkConfiguration=self.shared.network.awsvpc(),
                        overrides=overrides, startedBy="starburst",
                        tags=[{"key": provision.SESSION_TAG, "value": self.session}],
                        enableExecuteCommand=self.debug)
                except ClientError as exc:
                    if not is_throttling(exc):
                        raise
                    # botocore already retried it: leave it to the next round.
                    log.info("starburst: RunTask throttled; launching fewer for now")
                    return []
            arns = [t["taskArn"] for t in response.get("tasks", [])]
            now = time.time()
            for arn in arns:
                self._tasks[arn] = now
            failures = response.get("failures", [])
            if not failures:
                return arns
            text = "; ".join(f"{f.get('reason', '?')} {f.get('detail', '')}".strip()
                             for f in failures)
            if not all(any(r in f.get("reason", "").lower() for r in _TRANSIENT_REASONS)
                       for f in failures):
                raise BackendError(f"ECS RunTask could not start workers: {text}")
            if arns or attempt == _LAUNCH_RETRIES - 1:
                log.info("starburst: Fargate started %d of %d workers (%s)", len(arns), n, text)
                return arns
            time.sleep(min(2.0, 0.25 * 2 ** attempt) * random.uniform(0.5, 1.0))
        return []  # pragma: no cover - the loop always returns

    # -- watch ----------------------------------------------------------
    def poll(self) -> list[WorkerExit]:
        now = time.monotonic()
        if not self._tasks or now < self._next_poll:
            return []
        self._next_poll = now + _POLL_INTERVAL
        arns = list(self._tasks)
        exits: list[WorkerExit] = []
        for start in range(0, len(arns), _DESCRIBE_BATCH):
            batch = arns[start:start + _DESCRIBE_BATCH]
            with translate_errors(f"ECS DescribeTasks in cluster {self.shared.cluster}",
                                  kind=BackendError):
                try:
                    response = self.ecs.describe_tasks(cluster=self.shared.cluster,
                                                       tasks=batch)
                except ClientError as exc:
                    if is_throttling(exc):
                        return exits  # look again next round
                    raise
            for task in response.get("tasks", []):
                if task.get("lastStatus") == "STOPPED" and task["taskArn"] in self._tasks:
                    del self._tasks[task["taskArn"]]
                    exits.append(task_exit(task))
            for failure in response.get("failures", []):
                arn = failure.get("arn", "")
                if failure.get("reason") == "MISSING" and arn in self._tasks:
                    del self._tasks[arn]
                    exits.append(WorkerExit(arn, reason="ECS no longer knows this task "
                                                        "(it stopped long ago)"))
        return exits

    def keep_for_debugging(self, worker: str) -> str | None:
        if worker not in self._tasks:
            return None
        self._keep.add(worker)
        return (f"aws ecs execute-command --cluster {self.shared.cluster} --task {worker} "
                f'--container {provision.CONTAINER_NAME} --interactive --command "/bin/sh" '
                f"--region {self.shared.region}")

    def running(self) -> list[str]:
        """ARNs of launched tasks not yet seen STOPPED."""
        return list(self._tasks)

    # -- stop -----------------------------------------------------------
    def stop(self, workers: Sequence[str] | None = None) -> None:
        everyone = [arn for arn in self._tasks if arn not in self._keep]
        targets = [arn for arn in (everyone if workers is None else workers)
                   if arn not in self._stop_sent]
        if not targets:
            return
        with ThreadPoolExecutor(max_workers=min(_STOP_THREADS, len(targets)),
                                thread_name_prefix="starburst-stop") as pool:
            for arn in pool.map(self._stop_one, targets):
                self._stop_sent.add(arn)

    def _stop_one(self, arn: str) -> str:
        with translate_errors(f"ECS StopTask {arn}", kind=BackendError):
            try:
                self.ecs.stop_task(cluster=self.shared.cluster, task=arn,
                                   reason=f"stopped by starburst (session {self.session})")
            except ClientError as exc:
                # Already stopped or unknown: nothing to stop.
                if error_code(exc) not in ("InvalidParameterException", "ClientException"):
                    raise
        return arn

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self.ecs.close()


def _offer_increase(plan: QuotaPlan, region: str, auto: bool | None) -> str:
    """Request a quota increase (auto=True), offer one (None, interactive only), or say how.

    Never prompts when not interactive: the run goes on with the workers that fit.
    """
    want = suggest_quota(plan.requested, plan.cpu, plan.in_use_vcpu)
    how = (f"to run all {plan.requested} workers at once, ask for {want} vCPU: "
           f"`starburst quota --region {region} --cpu {plan.cpu:g} --workers {plan.requested} "
           "--request`")
    if auto is False:
        return how
    if auto is None:
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            return how
        answer = input(f"starburst: request a Fargate vCPU quota of {want} in {region} "
                       f"(now {plan.quota_vcpu:g})? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return how
    try:
        request = request_increase(want, region=region)
    except CloudError as exc:
        return f"the quota increase request failed: {exc}"
    return (f"requested a Fargate vCPU quota of {want} (request {request.id}: {request.status}"
            f"); this run uses {plan.workers} workers meanwhile; `starburst quota` shows "
            "the request")


def _quota_status(workers: int, cpu: float, region: str) -> QuotaStatus:
    """The quota plan; ``STARBURST_VCPU_QUOTA`` injects the quota (emulators, or a
    user who knows it and may not read Service Quotas)."""
    injected = os.environ.get("STARBURST_VCPU_QUOTA")
    if not injected:
        return read_plan(workers, cpu, region=region)
    try:
        quota = float(injected)
    except ValueError:
        raise ConfigurationError(
            f"STARBURST_VCPU_QUOTA={injected!r} is not a number of vCPUs") from None
    in_use = vcpus_in_use(region=region)
    return QuotaStatus(region=region, spot=False, quota_vcpu=quota, in_use_vcpu=in_use,
                       plan=plan_workers(workers, cpu, quota, in_use))


def _require_image(config: AwsConfig) -> str:
    if not config.image:
        raise ConfigurationError(
            "backend='fargate' needs a container image: pass image='...' to the Executor, set "
            "STARBURST_IMAGE, or add image = \"...\" to the starburst config (an image with "
            "the same Python and packages as here, and starburst installed)")
    return config.image
