"""The Fargate backend: workers are ECS Fargate tasks.

It starts, watches and stops tasks; nothing else (the S3/SQS transport
carries the work). Per session::

    open_session: config -> ensure shared resources (bucket, cluster, log
                  group, roles, network, task definition) -> session queues
    launch:  RunTask, <= 10 tasks per call, awsvpc, env in container overrides;
             spot=True/"prefer"/"require": capacity provider FARGATE_SPOT
    poll:    DescribeTasks (<= 100 per call, at most once a second)
             -> STOPPED tasks as WorkerExit(exit code, stop code, reasons, times)
    stop:    StopTask

Credentials never travel in the overrides: a task takes them from its
task role. Throttling is retried by botocore (adaptive mode); capacity
and quota refusals make ``launch`` return fewer workers, and the
scheduler asks again later. Anything else is an error at once.

Fargate Spot (``spot=``): workers run on the ``FARGATE_SPOT`` capacity
provider, their container's ``stopTimeout`` at Fargate's maximum (120 s)
so the two-minute interruption notice lies between SIGTERM and SIGKILL.
When Spot capacity is short, ``"prefer"`` (or True) starts the missing
workers On-Demand (within the On-Demand quota) and says so once; each
later launch tries Spot first again, since Spot shortages are usually
brief and Spot costs about 70% less. ``"require"`` starts fewer and the
scheduler asks again later. The quota planned against is the Spot vCPU
quota; the rate is the cached Spot rate, else On-Demand less the
advertised discount (the price note says which). Each worker is priced by
the capacity provider it was launched on (:meth:`FargateBackend.rate_of`):
the live spend, the ``max_cost`` budget and the cost after the run count
a fallback at the On-Demand rate, and ``max_hourly_cost`` is checked
against the live tasks' own rates before each launch. Fargate Spot
runs only X86_64 tasks: ``platform="arm64"`` with ``spot="require"`` is
refused before anything starts, with True/"prefer" it runs On-Demand
Graviton and says why.
"""

from __future__ import annotations

import json
import logging
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ..aws import inventory, provision, session_key
from ..aws.clients import client as make_client
from ..aws.config import FIELDS, AwsConfig, load_config
from ..aws.errors import error_code, is_throttling, translate_errors
from ..aws.propagation import retry_while_propagating
from ..aws.quota import QuotaStatus, read_plan, request_increase
from ..aws.sizes import validate_size
from ..cost import check_caps, format_money
from ..exceptions import BackendError, CloudError, ConfigurationError, TransportError
from ..pricing import FargatePrice, hourly_rate, lookup
from ..pricing_cache import spot_price_in_use, table_in_use
from ..quota import QuotaPlan, suggest_quota
from ..scheduling.events import SPOT_INTERRUPTION, WorkerExit
from ..scheduling.pacing import LaunchPacing
from ..session import WORKER_OPTION, SessionRecord, key_ref_of
from ..transport import open_transport
from ..transport.aws import AwsTransport
from ..transport.s3 import S3Store
from ..wire.keys import record_key
from . import _environment
from ._aws_session import (
    KeyedSession,
    close_session_access,
    in_parallel,
    open_worker_session,
    reject_unknown,
    session_access,
)
from .base import ComputeBackend, OutputCallback, Session, WorkerSpec

if TYPE_CHECKING:
    from mypy_boto3_ecs.client import ECSClient
    from mypy_boto3_ecs.type_defs import (
        ContainerTypeDef,
        FailureTypeDef,
        KeyValuePairTypeDef,
        TaskTypeDef,
    )

    from ..options import ExecutorOptions

__all__ = ["ARM64_SPOT_RULE", "ON_DEMAND", "SPOT", "SPOT_INTERRUPTION", "FargateBackend",
           "spot_mode", "task_exit"]

log = logging.getLogger("starburst")

#: RunTask starts at most 10 tasks per call.
_PER_CALL = 10
#: DescribeTasks takes at most 100 tasks per call.
_DESCRIBE_BATCH = 100
#: Task states change on a scale of seconds; describing them more often
#: than once a second only spends the account's ECS API rate.
_POLL_INTERVAL = 1.0
#: ECS is eventually consistent: DescribeTasks may answer MISSING for a task
#: RunTask returned seconds ago. AWS gives no bound; a minute is far above
#: what is seen in practice and far below the idle timeout after which a
#: task that really vanished would be noticed anyway.
_MISSING_GRACE = 60.0
#: A refused RunTask (capacity) is retried a few times within one launch,
#: then left to the scheduler's next round.
_LAUNCH_RETRIES = 3
#: The default worker count on Fargate (DESIGN.md §1), capped by quota above.
DEFAULT_WORKERS = 10
#: ECS rejects container overrides larger than 8 KiB.
_OVERRIDES_LIMIT = 8192
#: Backend options beyond the config fields: CPU architecture, quota, Fargate Spot.
_EXTRA = ("arch", "auto_quota_request", "spot", "spot_discount")
#: The capacity providers of Fargate On-Demand and Fargate Spot.
ON_DEMAND, SPOT = "FARGATE", "FARGATE_SPOT"
#: ``spot=`` values: what the user may pass -> the mode (None: On-Demand).
SPOT_MODES: dict[object, str | None] = {False: None, True: "prefer", "prefer": "prefer",
                                        "require": "require"}
#: What starburst says when a region still refuses ARM64 tasks on Fargate Spot
#: (AWS supports it since 2024, on platform version 1.4.0).
ARM64_SPOT_RULE = ("AWS runs Linux ARM64 tasks on Fargate Spot since 2024 (platform version "
                   "1.4.0), but this region refused them")
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
        "capacity_provider": task.get("capacityProviderName", ""),
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
                 debug: bool = False, spot: str | None = None,
                 rates: dict[str, float] | None = None, on_demand_limit: int | None = None,
                 max_hourly_cost: float | None = None,
                 on_output: OutputCallback | None = None,
                 access: KeyedSession | None = None) -> None:
        """Args (beyond the session's resources):
            spot: None (On-Demand), ``"prefer"`` or ``"require"`` (see the module).
            rates: dollars per worker-hour by capacity provider (``FARGATE``,
                ``FARGATE_SPOT``); each stopped task's exit carries its own
                (``details["hourly_rate"]``) so the computed cost is per task.
            on_demand_limit: the most On-Demand workers the On-Demand vCPU
                quota leaves for a Spot fallback (None: unknown, RunTask decides).
            max_hourly_cost: the session's cap on dollars per hour; the worker
                count was fitted to it at the Spot rate, so a Spot fallback starts
                only the On-Demand workers the cap still pays for.
            on_output: where notices for the user go (the client prints them).
            access: the session's key secret and task role
                (:func:`._aws_session.open_worker_session`): tasks run from this
                session's own copies of the task definitions, which inject the key
                and name the role; closing deletes them, the secret and the role.
                None only for tasks that are not starburst workers (the tests'
                probes).
        """
        if spot not in (None, "prefer", "require"):
            raise ConfigurationError(f"spot mode {spot!r} must be None, 'prefer' or 'require'")
        self.spot = spot
        self.rates = dict(rates or {})
        self.on_demand_limit = on_demand_limit
        self.max_hourly_cost = max_hourly_cost
        self._on_output = on_output
        self._providers: dict[str, str] = {}  # task ARN -> capacity provider, until STOPPED
        self._said: set[str] = set()
        #: Workers started On-Demand because Spot capacity was short (``"prefer"``).
        self.fallbacks = 0
        self.session = session
        #: Debug mode: tasks start with ECS Exec enabled (``enableExecuteCommand``).
        self.debug = debug
        self.shared = shared
        self.arch = arch
        self.ecs = ecs or make_client("ecs", region=shared.region)
        #: How the session's workers start (the client adds its settings to the env).
        self.spec = spec
        self._definitions = {(spec.image, spec.cpu, spec.memory_mib): task_definition}
        self.access = access
        self._keep_access = False
        #: Shared task definition ARN -> this session's keyed copy of it.
        self._keyed: dict[str, str] = {}
        self._tasks: dict[str, float] = {}  # task ARN -> launch time; not yet seen STOPPED
        #: Reported gone on a MISSING answer, never seen STOPPED: stopped at close
        #: all the same, in case ECS only lost sight of them for a while.
        self._unconfirmed: set[str] = set()
        self._alive_at_attach: list[str] = []
        self._exits_at_attach: list[WorkerExit] = []
        self._stop_sent: set[str] = set()
        self._keep: set[str] = set()
        self._next_poll = 0.0
        #: The region refused ARM64 tasks on Fargate Spot ("prefer" runs On-Demand).
        self._spot_refuses_arm64 = False

    # -- session --------------------------------------------------------
    @classmethod
    def open_session(cls, *, session: str, options: ExecutorOptions,
                     on_output: OutputCallback | None = None) -> Session:
        extra = dict(options.extra)
        reject_unknown(extra, (*FIELDS, *_EXTRA, *_environment.OPTION_NAMES),
                       "backend='fargate'")
        auto_request = extra.pop("auto_quota_request", None)
        if auto_request not in (None, True, False):
            raise ConfigurationError(
                f"auto_quota_request={auto_request!r} must be True (request an increase "
                "when the quota is short), False (never) or None (ask when interactive)")
        spot = spot_mode(extra.pop("spot", False))
        discount = _spot_discount(extra.pop("spot_discount", None))
        env_mode, env_options = _environment.pop_env_options(
            extra, arch=extra.pop("arch", None))
        arch = env_options.platform
        notes: list[str] = []
        validate_size(options.cpu, options.memory_mib)
        config = load_config(extra)
        env_options = _environment.settle_mode(env_mode, env_options, config.image)
        shared = _for_debugging(provision.ensure_shared(config), options.debug, notes)
        if spot is not None:
            provision.ensure_spot_provider(shared.cluster, region=shared.region)
        # Priced before anything per-session exists: a cap in an unpriced region fails here.
        rates, price_note = _rates(shared.region, arch, options.cpu, options.memory_mib,
                                   public_ip=config.assign_public_ip, spot=spot,
                                   discount=discount, caps={
                                       "max_cost": options.max_cost,
                                       "max_hourly_cost": options.max_hourly_cost})
        if math.isnan(rates[ON_DEMAND]):
            notes.append(price_note)
        check_caps(max_cost=options.max_cost, max_hourly_cost=options.max_hourly_cost,
                   hourly_rate=rates[SPOT if spot is not None else ON_DEMAND],
                   max_hourly_rate=_dearest(spot, rates), price_note=price_note)
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
        stop_timeout = provision.SPOT_STOP_TIMEOUT if spot is not None else None
        definition = provision.ensure_task_definition(
            image=image, cpu=options.cpu, memory_mib=options.memory_mib, arch=arch,
            region=shared.region, roles=shared.roles, log_group=shared.log_group,
            stop_timeout=stop_timeout)
        requested = options.workers or DEFAULT_WORKERS
        max_workers: int | None = None
        on_demand_limit: int | None = None
        try:
            status = _quota_status(requested, options.cpu, shared.region, spot=spot is not None)
            if spot == "prefer":
                on_demand_limit = _quota_status(requested, options.cpu, shared.region,
                                                spot=False).plan.workers
        except CloudError as exc:
            notes.append(f"the Fargate {_quota_name(spot)} vCPU quota could not be read "
                         f"({exc}); starting {requested} workers and letting RunTask decide")
        else:
            plan = status.plan
            if plan.quota_vcpu is not None and plan.workers == 0:
                raise ConfigurationError(
                    plan.message() if spot is None else
                    f"Fargate Spot: {plan.message()} (or pass spot=False to run On-Demand, "
                    "whose vCPU quota is separate)")
            if plan.message():
                notes.append(plan.message() if spot is None
                             else f"Fargate Spot: {plan.message()}")
            if plan.limited and plan.quota_vcpu is not None:
                offer = _offer_increase(plan, shared.region, auto_request, spot=spot is not None)
                if offer:
                    notes.append(offer)
            if status.in_use_note:
                notes.append(status.in_use_note)
            max_workers = plan.workers
        if spot is not None:
            notes.append(_spot_note(spot, rates, shared.region))

        def build(transport: AwsTransport, worker_env: dict[str, str],
                  keyed: KeyedSession) -> FargateBackend:
            spec = WorkerSpec(env=worker_env,
                              cpu=options.cpu, memory_mib=options.memory_mib, image=image)
            return cls(session=session, shared=shared, arch=arch,
                       task_definition=definition, spec=spec, debug=options.debug,
                       spot=spot, rates=rates, on_demand_limit=on_demand_limit,
                       max_hourly_cost=options.max_hourly_cost, on_output=on_output,
                       access=keyed)

        transport, keyed, backend = open_worker_session(
            session, shared=shared, max_receives=options.settings.max_receives,
            env_options=env_options, snapshot=snapshot, expected_hash=expected_hash,
            build=build, notes=notes, debug=options.debug)
        return Session(backend=backend, transport=transport, spec=backend.spec,
                       pacing=LaunchPacing(), workers=DEFAULT_WORKERS, max_workers=max_workers,
                       hourly_rate=rates[SPOT if spot is not None else ON_DEMAND],
                       max_hourly_rate=_dearest(spot, rates), price_note=price_note,
                       notes=notes, key=keyed.key, key_ref=keyed.secret_arn)

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
        reject_unknown(given, (*FIELDS, "arch", "spot", "spot_discount"),
                       "attaching to a Fargate session")
        arch_given = given.pop("arch", None)
        spot_given = given.pop("spot", None)
        discount_given = given.pop("spot_discount", None)
        config = load_config(given)
        region = config.resolved_region()
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
        if record.options.get("gpu") is not None:
            # Opened as backend="fargate" with gpu=: its workers are Batch jobs.
            from .batch import BatchBackend

            return BatchBackend.attach_session(session=session, options=options,
                                               on_output=on_output)
        worker = record.options.get(WORKER_OPTION)
        if not isinstance(worker, dict):
            raise ConfigurationError(
                f"the record of session {session} ({where}) does not say how its workers "
                "were started (it was written by an older starburst): attach with the "
                "version that started it")
        # What the first client was given, then what this one is given.
        recorded = {k: v for k, v in record.options.items() if k in FIELDS}
        config = load_config({**recorded, **{k: v for k, v in given.items() if v is not None}})
        notes: list[str] = []
        shared = _for_debugging(provision.ensure_shared(config), options.debug, notes)
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
            # Replacement workers run on the capacity the first client chose.
            spot = spot_mode(
                spot_given if spot_given is not None else record.options.get("spot", False))
            discount = _spot_discount(discount_given if discount_given is not None
                                      else record.options.get("spot_discount"))
            if spot is not None:
                provision.ensure_spot_provider(shared.cluster, region=shared.region)
            rates, price_note = _rates(shared.region, arch, cpu, memory_mib,
                                       public_ip=config.assign_public_ip, spot=spot,
                                       discount=discount)
            definition = provision.ensure_task_definition(
                image=image, cpu=cpu, memory_mib=memory_mib, arch=arch,
                region=shared.region, roles=shared.roles, log_group=shared.log_group,
                stop_timeout=provision.SPOT_STOP_TIMEOUT if spot is not None else None)
            secret = session_key.attach_secret(key_ref_of(record), session,
                                               region=shared.region)
            key = session_key.read_key_secret(secret, region=shared.region)
            access = session_access(session, shared=shared, debug=options.debug, key=key,
                                    secret_arn=secret)
            spec = WorkerSpec(env=env, cpu=cpu, memory_mib=memory_mib, image=image)
            backend = cls(session=session, shared=shared, arch=arch,
                          task_definition=definition, spec=spec, debug=options.debug,
                          spot=spot, rates=rates, max_hourly_cost=options.max_hourly_cost,
                          on_output=on_output, access=access)
            backend._adopt(inventory.session_tasks(inventory.Place.from_config(config=config),
                                                   session))
        except BaseException:
            transport.close()
            raise
        return Session(backend=backend, transport=transport, spec=spec, pacing=LaunchPacing(),
                       workers=record.workers,
                       hourly_rate=rates[SPOT if spot is not None else ON_DEMAND],
                       max_hourly_rate=_dearest(spot, rates), price_note=price_note,
                       notes=notes, key=key, key_ref=secret), record

    def _adopt(self, tasks: list[TaskTypeDef]) -> None:
        """Watch the session's tasks that still run; keep the exits of those stopped."""
        now = time.time()
        for task in tasks:
            arn = task["taskArn"]
            if task.get("lastStatus") == "STOPPED":
                self._exits_at_attach.append(task_exit(task))
                continue
            self._tasks[arn] = now  # watched until it stops, like a launched one
            self._providers[arn] = task.get("capacityProviderName") or ON_DEMAND
            if inventory.task_active(task):
                self._alive_at_attach.append(arn)
            else:
                self._stop_sent.add(arn)  # told to stop already: on its way out

    def adopted(self) -> tuple[list[str], list[WorkerExit]]:
        return list(self._alive_at_attach), list(self._exits_at_attach)

    def _definition(self, spec: WorkerSpec) -> str:
        key = (spec.image, spec.cpu, spec.memory_mib)
        if key not in self._definitions:
            self._definitions[key] = provision.ensure_task_definition(
                image=spec.image, cpu=spec.cpu, memory_mib=spec.memory_mib, arch=self.arch,
                region=self.shared.region, roles=self.shared.roles,
                log_group=self.shared.log_group,
                stop_timeout=provision.SPOT_STOP_TIMEOUT if self.spot is not None else None)
        base = self._definitions[key]
        if self.access is None:
            return base
        if base not in self._keyed:
            self._keyed[base] = session_key.keyed_task_definition(
                base, session=self.session, secret_arn=self.access.secret_arn,
                task_role=self.access.task_role, region=self.shared.region, ecs=self.ecs)
        return self._keyed[base]

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
        # The client fitted the worker count to max_hourly_cost at the session's rate;
        # live On-Demand fallbacks of a Spot session cost more, so the cap is checked
        # again at the real rate of each live task and of what is being launched.
        first = SPOT if self.spot is not None else ON_DEMAND
        room = self._hourly_room(first)
        if room is not None and room < count:
            self._say_once("hourly", (
                f"max_hourly_cost={format_money(self.max_hourly_cost or 0.0, 3)}: the workers "
                "running now "
                f"(On-Demand ones cost {format_money(self.rates.get(ON_DEMAND, 0.0), 3)}/h) "
                "leave room for "
                f"{room} of {count} more; later launches start the rest as room frees up"))
            count = room
        if count <= 0:
            return []
        if self.spot is not None and not self._spot_refuses_arm64:
            try:
                return self._launch_spot(definition, count, overrides)
            except _Arm64SpotRefused as exc:
                if self.spot == "require":
                    raise BackendError(_arm64_spot_refusal(str(exc))) from exc
                # "prefer": this region still refuses ARM64 on Spot; run On-Demand.
                self._spot_refuses_arm64 = True
                self._say_once("arm64-spot", (
                    f"AWS refused arm64 workers on Fargate Spot in {self.shared.region} "
                    f"({exc}); they run On-Demand on Graviton at "
                    f"{format_money(self.rates.get(ON_DEMAND, 0.0), 3)}/h instead; pass "
                    "platform='x86_64' to use Fargate Spot"))
        started: list[str] = []
        while len(started) < count:
            arns = self._run_task(definition, min(_PER_CALL, count - len(started)), overrides)
            started.extend(arns)
            if not arns:
                break
        return started

    def _launch_spot(self, definition: str, count: int, overrides: Any) -> list[str]:
        """Launch on FARGATE_SPOT; when Spot capacity is short, fall back or wait.

        ``"prefer"``: the workers Spot could not start, and the rest of this
        launch, start On-Demand within the On-Demand quota; the next launch
        tries Spot first again. ``"require"``: start fewer; the scheduler
        asks again later.
        """
        started: list[str] = []
        while len(started) < count:
            n = min(_PER_CALL, count - len(started))
            arns, failures = self._call_run_task(definition, n, overrides, provider=SPOT)
            started.extend(arns)
            if len(arns) == n:
                continue
            if not any(_is_capacity(f) for f in failures):
                break  # throttled, or refused for now for another reason: next round
            short = count - len(started)
            if self.spot == "require":
                self._say_once("require", (
                    f"Fargate Spot capacity unavailable in {self.shared.region}: started "
                    f"{len(started)} of {count} workers; spot='require' waits for Spot "
                    "capacity (later launches try again)"))
                break
            room, why = self._fallback_room(short)
            fallback: list[str] = []
            while len(fallback) < room:
                more = self._run_task(definition, min(_PER_CALL, room - len(fallback)),
                                      overrides)
                fallback.extend(more)
                if not more:
                    break
            started.extend(fallback)
            self.fallbacks += len(fallback)
            text = (f"Fargate Spot capacity unavailable in {self.shared.region}: launched "
                    f"{len(fallback)} workers On-Demand at "
                    f"{format_money(self.rates.get(ON_DEMAND, 0.0), 3)}/h instead (Spot: "
                    f"{format_money(self.rates.get(SPOT, 0.0), 3)}/h); later launches "
                    "try Spot first again")
            if room < short:
                text += f"; {short - room} not started: {why}"
            self._say_once("prefer", text)
            break
        return started

    def _fallback_room(self, short: int) -> tuple[int, str]:
        """How many of ``short`` workers may start On-Demand, and why not more."""
        room, why = short, ""
        if self.on_demand_limit is not None:
            quota_room = max(0, self.on_demand_limit - self._live(ON_DEMAND))
            if quota_room < room:
                room, why = quota_room, "the On-Demand vCPU quota has no room for them"
        affordable = self._hourly_room(ON_DEMAND)
        if affordable is not None and affordable < room:
            cap = format_money(self.max_hourly_cost or 0.0, 3)
            room, why = affordable, f"max_hourly_cost={cap} does not pay for them On-Demand"
        return room, why

    def _hourly_room(self, provider: str) -> int | None:
        """How many more workers on ``provider`` ``max_hourly_cost`` still pays for, each
        live task counted at its own provider's rate; None: no cap (or no rate)."""
        rate = self.rates.get(provider, 0.0)
        if self.max_hourly_cost is None or rate <= 0:
            return None
        now = sum(self.rates.get(self._providers.get(arn, ON_DEMAND), rate)
                  for arn in self._tasks)
        return max(0, int((self.max_hourly_cost - now) / rate + 1e-9))

    def _live(self, provider: str) -> int:
        """Launched tasks of ``provider`` not yet seen STOPPED."""
        return sum(1 for arn in self._tasks if self._providers.get(arn) == provider)

    def _say_once(self, key: str, text: str) -> None:
        """Tell the user ``text`` the first time ``key`` comes up; log it at info after."""
        if key in self._said:
            log.info("starburst: %s", text)
            return
        self._said.add(key)
        if self._on_output is not None:
            self._on_output("", "stderr", f"starburst: {text}")
        else:
            log.warning("starburst: %s", text)

    def _call_run_task(self, definition: str, n: int, overrides: Any, *,
                       provider: str) -> tuple[list[str], list[FailureTypeDef]]:
        """One RunTask call on ``provider``; return the started ARNs and the failures.

        Throttling (already retried by botocore) starts nothing and is no
        error; failures that mean "not now" (:data:`_TRANSIENT_REASONS`) are
        returned; any other failure raises.

        Raises:
            BackendError: RunTask failed for good; an AWS refusal of ARM64 on
                Fargate Spot says which rule and what to pass instead.
        """
        placement: dict[str, Any] = (
            {"launchType": "FARGATE"} if provider == ON_DEMAND else
            {"capacityProviderStrategy": [{"capacityProvider": provider, "weight": 1}]})
        with translate_errors(f"ECS RunTask in cluster {self.shared.cluster}",
                              kind=BackendError):
            try:
                response = retry_while_propagating(lambda: self.ecs.run_task(
                    cluster=self.shared.cluster, taskDefinition=definition, count=n,
                    platformVersion="LATEST", **placement,
                    networkConfiguration=self.shared.network.awsvpc(),
                    overrides=overrides, startedBy="starburst",
                    tags=[{"key": provision.SESSION_TAG, "value": self.session}],
                    enableExecuteCommand=self.debug),
                    what="starting workers (ECS RunTask)", region=self.shared.region)
            except ClientError as exc:
                if provider == SPOT and _rejects_arm64(str(exc)):
                    raise _Arm64SpotRefused(str(exc)) from exc
                if not is_throttling(exc):
                    raise
                # botocore already retried it: leave it to the next round.
                log.info("starburst: RunTask throttled; launching fewer for now")
                return [], []
        arns = [t["taskArn"] for t in response.get("tasks", [])]
        now = time.time()
        for arn in arns:
            self._tasks[arn] = now
            self._providers[arn] = provider
        failures = list(response.get("failures", []))
        if failures:
            text = "; ".join(f"{f.get('reason', '?')} {f.get('detail', '')}".strip()
                             for f in failures)
            if provider == SPOT and _rejects_arm64(text):
                raise _Arm64SpotRefused(text)
            if not all(any(r in f.get("reason", "").lower() for r in _TRANSIENT_REASONS)
                       for f in failures):
                raise BackendError(f"ECS RunTask could not start workers: {text}")
            log.info("starburst: Fargate %s started %d of %d workers (%s)", provider,
                     len(arns), n, text)
        return arns, failures

    def _run_task(self, definition: str, n: int, overrides: Any) -> list[str]:
        """One On-Demand RunTask, retried on capacity refusals; return the started ARNs."""
        for attempt in range(_LAUNCH_RETRIES):
            arns, failures = self._call_run_task(definition, n, overrides, provider=ON_DEMAND)
            if not failures or arns or attempt == _LAUNCH_RETRIES - 1:
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
                    exits.append(self._priced(task_exit(task)))
            for failure in response.get("failures", []):
                arn = failure.get("arn", "")
                if failure.get("reason") != "MISSING" or arn not in self._tasks:
                    continue
                if time.time() - self._tasks[arn] < _MISSING_GRACE:
                    continue  # just launched: DescribeTasks does not know it yet
                del self._tasks[arn]
                self._unconfirmed.add(arn)
                exits.append(self._priced(WorkerExit(
                    arn, reason="ECS no longer knows this task (it stopped long ago)")))
        return exits

    def _priced(self, ex: WorkerExit) -> WorkerExit:
        """``ex`` with the capacity provider it ran on and that provider's hourly rate.

        The provider is what DescribeTasks says (``capacityProviderName``),
        else what this backend launched it on; the computed cost
        (:func:`starburst.cost.computed_cost`) prices each task at its own rate.
        """
        provider = (ex.details.get("capacity_provider")
                    or self._providers.pop(ex.worker, ON_DEMAND))
        self._providers.pop(ex.worker, None)
        details = {**ex.details, "capacity_provider": provider}
        if provider in self.rates:
            details["hourly_rate"] = repr(self.rates[provider])
        return replace(ex, details=details)

    def rate_of(self, worker: str) -> float | None:
        """The hourly rate of the capacity provider ``worker`` was launched on (Spot, or
        On-Demand for a ``"prefer"`` fallback); None once it is seen STOPPED."""
        provider = self._providers.get(worker)
        return None if provider is None else self.rates.get(provider)

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
        everyone = [arn for arn in [*self._tasks, *sorted(self._unconfirmed)]
                    if arn not in self._keep]
        targets = [arn for arn in (everyone if workers is None else workers)
                   if arn not in self._stop_sent]
        self._stop_sent.update(in_parallel(self._stop_one, targets, name="stop"))

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

    def detach(self) -> None:
        """The session outlives this client (detached, or an attach that failed): its
        key secret, own role and definitions stay for the client that attaches next,
        or for `starburst cleanup`."""
        self._keep_access = True

    def close(self) -> None:
        try:
            self.stop()
        finally:
            try:
                if self.access is not None and not self._keep_access:
                    try:
                        session_key.deregister_definitions(list(self._keyed.values()),
                                                   region=self.shared.region, ecs=self.ecs)
                    finally:
                        close_session_access(self.session, self.access, region=self.shared.region)
            finally:
                self.ecs.close()


def _offer_increase(plan: QuotaPlan, region: str, auto: bool | None, *,
                    spot: bool = False) -> str:
    """Request a quota increase (auto=True), offer one (None, interactive only), or say how.

    Never prompts when not interactive: the run goes on with the workers that fit.
    ``spot`` names the Fargate Spot vCPU quota instead of the On-Demand one.
    """
    want = suggest_quota(plan.requested, plan.cpu, plan.in_use_vcpu)
    kind = "Fargate Spot" if spot else "Fargate"
    how = (f"to run all {plan.requested} workers at once, ask for {want} vCPU: "
           f"`starburst quota --region {region} --cpu {plan.cpu:g} --workers {plan.requested} "
           f"{'--spot ' if spot else ''}--request`")
    if auto is False:
        return how
    if auto is None:
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            return how
        answer = input(f"starburst: request a {kind} vCPU quota of {want} in {region} "
                       f"(now {plan.quota_vcpu:g})? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return how
    try:
        request = (request_increase(want, region=region, spot=True) if spot
                   else request_increase(want, region=region))
    except CloudError as exc:
        return f"the quota increase request failed: {exc}"
    return (f"requested a {kind} vCPU quota of {want} (request {request.id}: {request.status}"
            f"); this run uses {plan.workers} workers meanwhile; `starburst quota` shows "
            "the request")


def _quota_status(workers: int, cpu: float, region: str, *, spot: bool = False) -> QuotaStatus:
    """The quota plan, On-Demand or Spot, from the one quota reader
    (:func:`starburst.aws.quota.read_plan`: ``STARBURST_VCPU_QUOTA`` /
    ``STARBURST_SPOT_VCPU_QUOTA`` first, else Service Quotas)."""
    return read_plan(workers, cpu, region=region, spot=spot)


def spot_mode(value: object) -> str | None:
    """The Spot mode of a ``spot=`` option: None (On-Demand), ``"prefer"`` or ``"require"``.

    Raises:
        ConfigurationError: ``value`` is not one of True, False, "prefer", "require".
    """
    if value is None or value is False:
        return None
    if value is True or (isinstance(value, str) and value in SPOT_MODES):
        return SPOT_MODES[value]
    raise ConfigurationError(
        f"spot={value!r} is not a choice: pass spot=False (On-Demand, the default), "
        "spot=True or spot='prefer' (Fargate Spot, On-Demand when Spot capacity is short) "
        "or spot='require' (Fargate Spot only; waits for Spot capacity)")


def _spot_discount(value: object) -> float | None:
    """A ``spot_discount=`` option: None, or a fraction in [0, 1)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigurationError(
            f"spot_discount={value!r} must be a fraction in [0, 1), e.g. 0.65 for Spot at "
            "65% below On-Demand (your figure for the region, used to price Spot workers)")
    return float(value)


def _rates(region: str, arch: str, cpu: float, memory_mib: int, *, public_ip: bool,
           spot: str | None, discount: float | None,
           caps: dict[str, float | None] | None = None) -> tuple[dict[str, float], str]:
    """Hourly rate per worker by capacity provider, and the note on the session's rate.

    On-Demand comes from the price table in use; Spot (when ``spot``) from
    :func:`~starburst.pricing_cache.spot_price_in_use`, whose source says
    whether it is the cached Spot rate, the user's discount or AWS's
    advertised one. A region the table lacks runs with its cost unknown:
    every rate is NaN and the note says why and how to price it.

    Raises:
        ConfigurationError: the region has no price and one of ``caps``
            (``max_cost``, ``max_hourly_cost``) is set: a cap needs a price.
    """
    table = table_in_use()
    try:
        on_demand = lookup(region, arch, table=table)
    except ConfigurationError as exc:
        for name, value in (caps or {}).items():
            if value is not None:
                raise ConfigurationError(
                    f"{name}= needs a Fargate price, and {exc} Or drop {name}= to run with "
                    "the cost shown as unknown.") from None
        unknown = {ON_DEMAND: math.nan, **({SPOT: math.nan} if spot is not None else {})}
        return unknown, f"cost unknown: {exc}"
    rates = {ON_DEMAND: hourly_rate(on_demand, cpu, memory_mib, public_ip=public_ip)}
    price: FargatePrice = on_demand
    if spot is not None:
        price = spot_price_in_use(region, arch, discount=discount)
        rates[SPOT] = hourly_rate(price, cpu, memory_mib, public_ip=public_ip)
    label = f"{price.region} {price.arch}" + (", Fargate Spot" if spot is not None else "")
    return rates, f"{label}, {price.source}, recorded {price.recorded}"


def _for_debugging(shared: provision.Shared, debug: bool, notes: list[str]) -> provision.Shared:
    """``shared`` with the debug task role when ``debug`` (ECS Exec needs it; see
    :func:`~starburst.aws.provision.ensure_debug_role`), adding its note to ``notes``.
    The task definition's family digest covers the role, so debug sessions get
    task definitions of their own."""
    if not debug:
        return shared
    roles, note = provision.ensure_debug_role(shared.roles, region=shared.region,
                                              bucket=shared.bucket, prefix=shared.prefix)
    if note:
        notes.append(note)
    return replace(shared, roles=roles)


def _dearest(spot: str | None, rates: dict[str, float]) -> float | None:
    """The most one worker may cost per hour when some may cost more than the session's
    rate: a ``"prefer"`` session's On-Demand fallback. None otherwise."""
    return rates[ON_DEMAND] if spot == "prefer" else None


def _quota_name(spot: str | None) -> str:
    return "Spot" if spot is not None else "On-Demand"


def _spot_note(spot: str, rates: dict[str, float], region: str) -> str:
    """What a Spot session tells the user before the run."""
    priced = ("cost unknown" if math.isnan(rates[SPOT]) else
              f"{format_money(rates[SPOT], 3)}/h each, against "
              f"{format_money(rates[ON_DEMAND], 3)}/h On-Demand")
    text = (f"workers run on Fargate Spot in {region} ({priced}); an interrupted worker "
            "hands its chunk back and the chunk runs elsewhere without counting as a failed "
            "attempt")
    if spot == "prefer":
        return text + "; when Spot capacity is short, workers start On-Demand"
    return text + "; spot='require': when Spot capacity is short, starburst waits for it"


def _is_capacity(failure: FailureTypeDef) -> bool:
    """Whether a RunTask failure says that capacity is short (Spot or otherwise)."""
    return "capacity" in failure.get("reason", "").lower()


def _rejects_arm64(text: str) -> bool:
    """Whether an AWS answer refuses an ARM64 task on Fargate Spot."""
    lower = text.lower()
    return "arm64" in lower and ("spot" in lower or "capacity provider" in lower)


class _Arm64SpotRefused(Exception):
    """RunTask on FARGATE_SPOT refused an ARM64 task (a region without ARM64 Spot)."""


def _arm64_spot_refusal(said: str) -> str:
    return (f"AWS refused to run arm64 workers on Fargate Spot ({said}): \"{ARM64_SPOT_RULE}\" "
            "Pass platform='x86_64' to use Fargate Spot, or spot=False to run On-Demand "
            "Graviton (arm64)")


def _require_image(config: AwsConfig) -> str:
    if not config.image:
        raise ConfigurationError(
            "backend='fargate' needs a container image: pass image='...' to the Executor, set "
            "STARBURST_IMAGE, or add image = \"...\" to the starburst config (an image with "
            "the same Python and packages as here, and starburst installed)")
    return config.image
