"""GPU workers: each worker is one AWS Batch job on an EC2 GPU instance.

Fargate has no GPUs, so ``Executor(backend="fargate", gpu="nvidia-t4")``
(or ``backend="batch"``) runs the same worker, transport and scheduler on
AWS Batch. Per session::

    open_session: config -> shared resources (bucket, log group, roles, network)
                  -> environment image (CUDA wheels swapped in) -> Batch compute
                  environment + job queue + job definition (aws/batch.py, created on
                  first use like Fargate's shared resources) -> session queues
    launch:  SubmitJob, one job per worker, env in containerOverrides, worker id = job name
    poll:    DescribeJobs (<= 100 per call, at most once a second)
             -> SUCCEEDED/FAILED jobs as WorkerExit(exit code, reason, times)
    stop:    TerminateJob (a job not yet running is cancelled by it too)
    attach:  record from the bucket -> instance, capacity and rate from the recorded
             options -> queue and job definition ensured again -> worker spec from
             the record; new workers numbered after the session's existing jobs

One worker per GPU (see :func:`starburst.aws.batch.worker_share`). The
compute environment keeps ``minvCpus`` 0: instances start for queued jobs
(a cold start of a few minutes) and stop when idle. The hourly rate is the
instance price (:func:`starburst.gpu.instance_price`, with source and date,
from the shipped table or the prices ``starburst pricing refresh`` cached)
divided among the workers an instance holds.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ..aws import batch as aws_batch
from ..aws import inventory, provision, session_key
from ..aws.clients import client as make_client
from ..aws.config import FIELDS, load_config
from ..aws.errors import error_code, is_throttling, translate_errors
from ..aws.gpu_quota import read_gpu_plan
from ..cost import check_caps
from ..exceptions import BackendError, ConfigurationError, ProtocolError
from ..gpu import GpuInstance, InstancePrice, given_price, instance_price, resolve_gpu
from ..pricing_cache import gpu_table_in_use
from ..scheduling.events import FAILED_TO_START, SPOT_INTERRUPTION, WorkerExit
from ..scheduling.pacing import LaunchPacing
from ..session import WORKER_OPTION, SessionRecord, key_ref_of
from ..transport import open_transport
from ..transport.aws import AwsTransport
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
    from mypy_boto3_batch.client import BatchClient
    from mypy_boto3_batch.type_defs import JobDetailTypeDef, KeyValuePairTypeDef

    from ..envsync.snapshot import Snapshot
    from ..options import ExecutorOptions

__all__ = ["DEFAULT_WORKERS", "BatchBackend", "job_exit", "queue_instance", "worker_price"]

log = logging.getLogger("starburst")

#: DescribeJobs takes at most 100 jobs per call.
_DESCRIBE_BATCH = 100
#: Job states change on a scale of seconds (instances take minutes to start).
_POLL_INTERVAL = 1.0
#: DescribeJobs may leave out a job SubmitJob accepted seconds ago (Batch is
#: eventually consistent, like ECS); a job missing for longer than this is
#: taken for gone (a minute: far above what is seen in practice).
_MISSING_GRACE = 60.0
#: The default worker count of a GPU session (GPU quotas start small).
DEFAULT_WORKERS = 2
#: Backend options beyond the config fields and the environment options.
_EXTRA = ("gpu", "instance_type", "spot", "arch", "instance_rate")
#: Batch job states after which nothing changes.
_DONE = ("SUCCEEDED", "FAILED")
#: One job per SubmitJob call; Batch takes about 20 calls a second before throttling.
_PACING = LaunchPacing(tasks_per_call=1, calls_per_second=20.0, launches_per_second=20.0,
                       launch_burst=100.0)
_CREDENTIAL_VARS = frozenset({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                              "AWS_SECURITY_TOKEN", "AWS_PROFILE",
                              "AWS_CONTAINER_CREDENTIALS_FULL_URI"})


def _seconds(ms: int | None) -> float | None:
    """Epoch seconds of a Batch millisecond timestamp (None when unset)."""
    return ms / 1000.0 if ms is not None and ms > 0 else None


#: How a Batch job's reasons begin when its container never started (ECS agent
#: errors: CannotPullContainerError, CannotStartContainerError..., and a secret
#: the execution role may not read).
_START_FAILURES = ("Cannot", "ResourceInitializationError")


def job_exit(job: JobDetailTypeDef, worker: str, *, spot: bool) -> WorkerExit:
    """How a finished Batch job ended, from its DescribeJobs entry.

    The exit code and container reason come from the job's container; a
    job whose host went away (``Host EC2 (instance i-...) terminated``)
    gets the stop code ``SpotInterruption`` on a Spot compute environment
    (the scheduler redoes its chunk without counting an attempt, as for
    Fargate Spot), ``HostTerminated`` otherwise. Billing runs from ``startedAt`` to
    ``stoppedAt`` (the instance's own start-up is not included).
    """
    container: Any = job.get("container") or {}
    status_reason = str(job.get("statusReason") or "")
    container_reason = str(container.get("reason") or "")
    stop_code: str | None = None
    if "Host EC2" in status_reason and "terminated" in status_reason:
        stop_code = SPOT_INTERRUPTION if spot else "HostTerminated"
    elif any(r.startswith(_START_FAILURES) for r in (status_reason, container_reason)):
        stop_code = FAILED_TO_START
    reason = "; ".join(filter(None, [
        status_reason, f"container: {container_reason}" if container_reason else ""]))
    details = {"job_id": job.get("jobId", ""), "job_arn": job.get("jobArn", ""),
               "status": job.get("status", ""), "status_reason": status_reason,
               "container_reason": container_reason,
               "log_stream": container.get("logStreamName", "")}
    return WorkerExit(
        worker=worker, exit_code=container.get("exitCode"), stop_code=stop_code,
        reason=reason or None, started_at=_seconds(job.get("startedAt")),
        stopped_at=_seconds(job.get("stoppedAt")),
        details={k: str(v) for k, v in details.items() if v})


def queue_instance(queue: str) -> tuple[GpuInstance, bool]:
    """The instance type and capacity (Spot or not) a starburst GPU job queue runs on.

    ``queue`` is a job queue name or ARN as :func:`starburst.aws.batch.resource_name`
    makes them: ``starburst-gpu-<family>-<size>[-spot]``.

    Raises:
        ConfigurationError: not a starburst GPU job queue, or an instance type
            not in the GPU catalog.
    """
    name = queue.rsplit("/", 1)[-1]
    rest = name.removeprefix(aws_batch.GPU_PREFIX)
    spot = rest.endswith("-spot")
    rest = rest.removesuffix("-spot")
    family, _, size = rest.partition("-")
    if rest == name or not size:
        raise ConfigurationError(
            f"{name!r} is not a starburst GPU job queue (starburst-gpu-<type>[-spot]): "
            "its jobs were not started by starburst")
    from ..gpu import gpu_instance

    return gpu_instance(f"{family}.{size}"), spot


def worker_price(queue: str, region: str, *, rate: Any = None) -> tuple[float, str]:
    """The hourly rate of one GPU worker of job queue ``queue``, and where it comes from.

    The instance price (``rate``: the ``instance_rate=`` a session recorded,
    else the recorded price) divided among the workers one instance holds,
    as :meth:`BatchBackend.open_session` prices a session.

    Raises:
        ConfigurationError: the queue is not starburst's, or no price is
            known for its instance type in ``region`` and no ``rate`` is given.
    """
    instance, spot = queue_instance(queue)
    price = _price_of(instance, region, spot=spot, rate=rate)
    return price.hourly / instance.gpus, _price_note(instance, price, spot=spot)


def _price_note(instance: GpuInstance, price: InstancePrice, *, spot: bool) -> str:
    """What a GPU worker's rate is made of: instance, capacity, price, its source and date."""
    per_worker = "" if instance.gpus == 1 else f", shared by {instance.gpus} workers"
    return (f"{instance.instance_type} {'Spot' if spot else 'On-Demand'} in {price.region} at "
            f"${price.hourly:.4g}/h per instance{per_worker}, {price.source}, recorded "
            f"{price.recorded}")


class BatchBackend(ComputeBackend):
    """Workers as AWS Batch jobs of one session, on GPU instances."""

    name = "batch"
    live_output = False
    bills_idle = True

    def __init__(self, *, session: str, region: str, queue: aws_batch.GpuQueue,
                 instance: GpuInstance, job_definition: str, roles: provision.Roles,
                 log_group: str, spec: WorkerSpec, batch: BatchClient | None = None,
                 access: KeyedSession | None = None) -> None:
        """``access``: the session's key secret and task role; jobs run from this
        session's own copies of the job definitions, which inject the key and name the
        role (see the Fargate backend)."""
        self.session = session
        self.region = region
        self.queue = queue
        self.instance = instance
        self.roles = roles
        self.log_group = log_group
        self.batch = batch or make_client("batch", region=region)
        #: What every worker of the session is started with.
        self.spec = spec
        self._definitions = {spec.image: job_definition}
        self.access = access
        self._keep_access = False
        #: Shared job definition ARN -> this session's keyed copy of it.
        self._keyed: dict[str, str] = {}
        self._jobs: dict[str, str] = {}  # worker id (job name) -> job id; not yet finished
        self._submitted: dict[str, float] = {}  # worker id -> time.monotonic() at SubmitJob
        #: Taken for gone because DescribeJobs left them out, never seen finished:
        #: terminated at close all the same (worker id -> job id).
        self._unconfirmed: dict[str, str] = {}
        self._alive_at_attach: list[str] = []
        self._exits_at_attach: list[WorkerExit] = []
        self._stop_sent: set[str] = set()
        self._launched = 0
        self._next_poll = 0.0

    # -- session --------------------------------------------------------
    @classmethod
    def open_session(cls, *, session: str, options: ExecutorOptions,
                     on_output: OutputCallback | None = None) -> Session:
        extra = dict(options.extra)
        reject_unknown(extra, (*FIELDS, *_EXTRA, *_environment.OPTION_NAMES),
                       "GPU workers (AWS Batch)")
        instance, spot = _instance_of(extra)
        rate = extra.pop("instance_rate", None)
        arch = extra.pop("arch", None)
        if arch is not None and arch != instance.arch:
            raise ConfigurationError(
                f"arch={arch!r} does not match {instance.instance_type}, which is "
                f"{instance.arch}: drop arch= (the instance type decides it), or pick an "
                f"instance type of that architecture")
        _check_size(instance, options.cpu, options.memory_mib)
        env_mode, env_options = _environment.pop_env_options(extra, arch=instance.arch)
        config = load_config(extra)
        env_options = _environment.settle_mode(env_mode, env_options, config.image)
        shared = provision.ensure_shared(config)
        # The price first: a cap in a region without a recorded price, or one that
        # cannot pay a worker, fails before any queue or Batch resource exists;
        # without a cap the session runs with its cost unknown.
        notes: list[str] = []
        price, unknown = _price_or_unknown(instance, shared.region, spot=spot, rate=rate, caps={
            "max_cost": options.max_cost, "max_hourly_cost": options.max_hourly_cost})
        if price is None:
            notes.append(unknown)
        else:
            check_caps(max_cost=options.max_cost, max_hourly_cost=options.max_hourly_cost,
                       hourly_rate=price.hourly / instance.gpus,
                       price_note=_price_note(instance, price, spot=spot))
        requested = options.workers or DEFAULT_WORKERS
        quota = read_gpu_plan(instance, math.ceil(requested / instance.gpus),
                              region=shared.region, spot=spot)
        if quota.plan.quota_vcpu is not None and quota.plan.workers == 0:
            raise ConfigurationError(quota.message())
        for note in (quota.message(), quota.in_use_note):
            if note:
                notes.append(note)
        # The quota counts instances; each holds one worker per GPU.
        max_workers = quota.plan.workers * instance.gpus
        expected_hash: str | None = None
        snapshot: Snapshot | None = None
        if env_options.mode == "auto":
            snapshot, swapped = _gpu_snapshot(_environment.snapshot_of(env_options))
            if swapped:
                notes.append(swapped)
            report = _environment.ensure_environment(
                env_options, snapshot, region=shared.region, repository=config.ecr_repository)
            image = report.image.reference
            expected_hash = report.image.env_hash
        else:
            image = _require_image(config.image)
        queue = aws_batch.ensure_gpu_queue(instance=instance, spot=spot, network=shared.network,
                                           region=shared.region,
                                           repository=config.ecr_repository,
                                           log_group=shared.log_group,
                                           quota_vcpu=quota.plan.quota_vcpu)
        definition = aws_batch.ensure_job_definition(
            image=image, instance=instance, region=shared.region, roles=shared.roles,
            log_group=shared.log_group)
        vcpus, memory_mib = aws_batch.worker_share(instance)

        def build(transport: AwsTransport, worker_env: dict[str, str],
                  keyed: KeyedSession) -> BatchBackend:
            spec = WorkerSpec(env=worker_env, cpu=float(vcpus), memory_mib=memory_mib,
                              image=image)
            return cls(session=session, region=shared.region, queue=queue, instance=instance,
                       job_definition=definition, roles=shared.roles,
                       log_group=shared.log_group, spec=spec, access=keyed)

        transport, keyed, backend = open_worker_session(
            session, shared=shared, max_receives=options.settings.max_receives,
            env_options=env_options, snapshot=snapshot, expected_hash=expected_hash,
            build=build, notes=notes, debug=options.debug)
        spec = backend.spec
        notes.append(
            f"GPU workers run as AWS Batch jobs on {instance.instance_type} "
            f"({'Spot' if spot else 'On-Demand'}, one {instance.gpu} per worker, {vcpus} vCPU "
            f"and {memory_mib} MiB each) from job queue {queue.name}; instances start when "
            "jobs are queued (minutes) and stop when idle, so the cost shown counts job "
            "runtimes, not instance start-up")
        return Session(
            backend=backend, transport=transport, spec=spec,
            pacing=_PACING,
            workers=DEFAULT_WORKERS, max_workers=max_workers,
            hourly_rate=math.nan if price is None else price.hourly / instance.gpus,
            price_note=unknown if price is None else _price_note(instance, price, spot=spot),
            notes=notes, key=keyed.key, key_ref=keyed.secret_arn)

    @classmethod
    def attach_session(cls, *, session: str, options: ExecutorOptions,
                       on_output: OutputCallback | None = None,
                       ) -> tuple[Session, SessionRecord]:
        """Re-open a GPU session from its record in the configured bucket and prefix.

        As on Fargate: the record is looked for where the configuration
        (arguments, ``STARBURST_*``, config file) puts the store; the
        session's queues come from the record's transport spec, its workers'
        image and environment from the record, and the instance type,
        capacity and rate from the options the session started with
        (``gpu=``, ``instance_type=``, ``spot=``, ``instance_rate=``; those
        given here win). The compute environment, job queue and job
        definition are ensured again (reused; created only if ``starburst
        teardown`` removed them meanwhile); the session's queues are never
        created. Replacement workers are numbered after the session's jobs
        that Batch still knows, so no two workers share an id.
        """
        given = {k: v for k, v in options.extra.items() if v is not None}
        reject_unknown(given, (*FIELDS, *_EXTRA), "attaching to a GPU session")
        place = inventory.Place.from_config(config=load_config(
            {k: v for k, v in given.items() if k in FIELDS}))
        where = f"s3://{place.bucket}/{place.key(record_key(session))}"
        body = inventory.read_object(place, record_key(session),
                                     action=f"reading the record of session {session}")
        try:
            record = None if body is None else SessionRecord.from_bytes(body)
        except ProtocolError as exc:
            raise ConfigurationError(f"cannot read the record of GPU session {session} "
                                     f"({where}): {exc}") from exc
        if record is None:
            raise ConfigurationError(
                f"no GPU session {session} in bucket {place.bucket!r} under prefix "
                f"{place.prefix!r} ({where} is missing): it ended (its data is deleted when "
                "it ends), or it ran with another bucket, prefix or region: pass bucket=, "
                "prefix=, region= to attach")
        if record.backend not in (cls.name, "fargate") or record.options.get("gpu") is None:
            raise ConfigurationError(
                f"session {session} ran on backend {record.backend!r} without GPU workers, "
                f"not on AWS Batch: attach with backend={record.backend!r}")
        worker = record.options.get(WORKER_OPTION)
        if not isinstance(worker, dict) or not isinstance(worker.get("env") or {}, dict):
            raise ConfigurationError(
                f"the record of session {session} ({where}) does not say how its workers "
                "were started (it was written by an older starburst): attach with the "
                "version that started it")
        # What the first client was given, then what this one is given.
        config = load_config({**{k: v for k, v in record.options.items() if k in FIELDS},
                              **{k: v for k, v in given.items() if k in FIELDS}})
        extra = {**{k: record.options[k] for k in _EXTRA if k in record.options},
                 **{k: v for k, v in given.items() if k in _EXTRA}}
        instance, spot = _instance_of(extra)
        shared = provision.ensure_shared(config)
        price, unknown = _price_or_unknown(instance, shared.region, spot=spot,
                                           rate=extra.get("instance_rate"))
        quota = read_gpu_plan(instance, math.ceil(record.workers / instance.gpus),
                              region=shared.region, spot=spot)
        if quota.plan.quota_vcpu is not None and quota.plan.workers == 0:
            raise ConfigurationError(quota.message())
        image = str(worker.get("image") or config.image or "")
        if not image:
            raise ConfigurationError(
                f"the record of session {session} ({where}) names no container image: pass "
                "image='...' (the image its workers ran) to attach")
        env = {str(k): str(v) for k, v in (worker.get("env") or {}).items()}
        transport = open_transport(record.transport)
        try:
            env.update({"STARBURST_TRANSPORT": transport.spec, "STARBURST_SESSION": session})
            queue = aws_batch.ensure_gpu_queue(
                instance=instance, spot=spot, network=shared.network, region=shared.region,
                repository=config.ecr_repository, log_group=shared.log_group,
                quota_vcpu=quota.plan.quota_vcpu)
            definition = aws_batch.ensure_job_definition(
                image=image, instance=instance, region=shared.region, roles=shared.roles,
                log_group=shared.log_group)
            vcpus, memory_mib = aws_batch.worker_share(instance)
            secret = session_key.attach_secret(key_ref_of(record), session,
                                               region=shared.region)
            key = session_key.read_key_secret(secret, region=shared.region)
            access = session_access(session, shared=shared, debug=options.debug, key=key,
                                    secret_arn=secret)
            spec = WorkerSpec(env=env, cpu=float(vcpus), memory_mib=memory_mib, image=image)
            backend = cls(session=session, region=shared.region, queue=queue,
                          instance=instance, job_definition=definition, roles=shared.roles,
                          log_group=shared.log_group, spec=spec, access=access)
            backend._adopt(inventory.session_jobs(inventory.Place.from_config(config=config),
                                                  session))
        except BaseException:
            transport.close()
            raise
        return Session(
            backend=backend, transport=transport, spec=spec, pacing=_PACING,
            workers=record.workers, max_workers=quota.plan.workers * instance.gpus,
            hourly_rate=math.nan if price is None else price.hourly / instance.gpus,
            price_note=unknown if price is None else _price_note(instance, price, spot=spot),
            key=key, key_ref=secret), record

    def _adopt(self, jobs: list[JobDetailTypeDef]) -> None:
        """Watch the session's jobs that Batch still runs; keep the exits of the rest.

        Replacement workers are numbered after every job Batch still knows,
        so no two workers share an id.
        """
        self._launched = max((inventory.job_number(j) for j in jobs), default=0)
        for job in jobs:
            name = job.get("jobName", "")
            if inventory.job_active(job):
                self._jobs[name] = job["jobId"]
                self._alive_at_attach.append(name)
            else:
                self._exits_at_attach.append(job_exit(job, name, spot=self.queue.spot))

    def adopted(self) -> tuple[list[str], list[WorkerExit]]:
        return list(self._alive_at_attach), list(self._exits_at_attach)

    def _definition(self, spec: WorkerSpec) -> str:
        if spec.image not in self._definitions:
            self._definitions[spec.image] = aws_batch.ensure_job_definition(
                image=spec.image, instance=self.instance, region=self.region,
                roles=self.roles, log_group=self.log_group)
        base = self._definitions[spec.image]
        if self.access is None:
            return base
        if base not in self._keyed:
            self._keyed[base] = session_key.keyed_job_definition(
                base, session=self.session, secret_arn=self.access.secret_arn,
                task_role=self.access.task_role, region=self.region, batch=self.batch)
        return self._keyed[base]

    # -- launch ---------------------------------------------------------
    def launch(self, count: int, spec: WorkerSpec) -> list[str]:
        leaked = sorted(_CREDENTIAL_VARS & set(spec.env))
        if leaked:
            raise BackendError(
                f"refusing to put {', '.join(leaked)} in job overrides: workers take "
                "credentials from their job role, never from the environment starburst sends")
        if count <= 0:
            return []
        definition = self._definition(spec)
        names = []
        for _ in range(count):
            self._launched += 1
            names.append(f"{self.session}-w{self._launched}")
        results = in_parallel(lambda n: self._submit(n, definition, spec), names, name="submit")
        started = [name for name, job_id in zip(names, results, strict=True) if job_id]
        if len(started) < count:
            log.info("starburst: AWS Batch accepted %d of %d workers (throttled); the rest "
                     "later", len(started), count)
        return started

    def _submit(self, name: str, definition: str, spec: WorkerSpec) -> str | None:
        """One SubmitJob; the job id, or None when throttled (botocore already retried)."""
        # The job name is the worker id: it is known before the job exists, so the
        # worker can carry it in its notices, and the scheduler matches both.
        env: list[KeyValuePairTypeDef] = [
            {"name": k, "value": v}
            for k, v in sorted({**spec.env, "STARBURST_WORKER_ID": name}.items())]
        with translate_errors(f"AWS Batch SubmitJob to {self.queue.name}", kind=BackendError):
            try:
                response = self.batch.submit_job(
                    jobName=name, jobQueue=self.queue.queue_arn, jobDefinition=definition,
                    containerOverrides={"environment": env}, propagateTags=True,
                    tags={provision.SESSION_TAG: self.session})
            except ClientError as exc:
                if is_throttling(exc):
                    return None
                raise
        job_id = response["jobId"]
        self._jobs[name] = job_id
        self._submitted[name] = time.monotonic()
        return job_id

    # -- watch ----------------------------------------------------------
    def poll(self) -> list[WorkerExit]:
        now = time.monotonic()
        if not self._jobs or now < self._next_poll:
            return []
        self._next_poll = now + _POLL_INTERVAL
        by_id = {job_id: name for name, job_id in self._jobs.items()}
        ids = list(by_id)
        exits: list[WorkerExit] = []
        for start in range(0, len(ids), _DESCRIBE_BATCH):
            with translate_errors(f"AWS Batch DescribeJobs in {self.queue.name}",
                                  kind=BackendError):
                try:
                    response = self.batch.describe_jobs(jobs=ids[start:start + _DESCRIBE_BATCH])
                except ClientError as exc:
                    if is_throttling(exc):
                        return exits  # look again next round
                    raise
            seen = set()
            for job in response.get("jobs", []):
                name = by_id.get(job.get("jobId", ""))
                if name is None:
                    continue
                seen.add(name)
                if job.get("status") in _DONE:
                    del self._jobs[name]
                    exits.append(job_exit(job, name, spot=self.queue.spot))
            for job_id in ids[start:start + _DESCRIBE_BATCH]:
                name = by_id[job_id]
                if name not in seen and name in self._jobs:
                    if now - self._submitted.get(name, -_MISSING_GRACE) < _MISSING_GRACE:
                        continue  # just submitted: DescribeJobs does not know it yet
                    del self._jobs[name]
                    self._unconfirmed[name] = job_id
                    exits.append(WorkerExit(name, reason="AWS Batch no longer knows this job "
                                                         "(it ended long ago)",
                                            details={"job_id": job_id}))
        return exits

    def running(self) -> list[str]:
        """Worker ids (job names) of submitted jobs not yet seen finished."""
        return list(self._jobs)

    # -- stop -----------------------------------------------------------
    def stop(self, workers: Sequence[str] | None = None) -> None:
        everyone = [*self._jobs, *sorted(self._unconfirmed)]
        targets = [w for w in (everyone if workers is None else workers)
                   if (w in self._jobs or w in self._unconfirmed) and w not in self._stop_sent]
        self._stop_sent.update(in_parallel(self._stop_one, targets, name="stop"))

    def _stop_one(self, name: str) -> str:
        """TerminateJob: SIGTERM (then SIGKILL) a running job, cancels a queued one."""
        job_id = self._jobs.get(name) or self._unconfirmed.get(name)
        if job_id is None:
            return name
        with translate_errors(f"AWS Batch TerminateJob {job_id}", kind=BackendError):
            try:
                self.batch.terminate_job(
                    jobId=job_id, reason=f"stopped by starburst (session {self.session})")
            except ClientError as exc:
                if error_code(exc) != "ClientException":  # already finished or unknown
                    raise
        return name

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
                        session_key.deregister_job_definitions(list(self._keyed.values()),
                                                   region=self.region, batch=self.batch)
                    finally:
                        close_session_access(self.session, self.access, region=self.region)
            finally:
                self.batch.close()


def _instance_of(extra: dict[str, Any]) -> tuple[GpuInstance, bool]:
    """Take ``gpu=``, ``instance_type=`` and ``spot=`` out of ``extra``; validate them."""
    gpu = extra.pop("gpu", None)
    instance_type = extra.pop("instance_type", None)
    spot = extra.pop("spot", False)
    if gpu is None:
        from ..gpu import known_gpus

        raise ConfigurationError(
            "backend='batch' runs GPU workers: pass gpu=, one of "
            f"{', '.join(known_gpus())} (e.g. gpu='nvidia-t4'); for CPU workers use "
            "backend='fargate'")
    if not isinstance(gpu, str):
        raise ConfigurationError(f"gpu={gpu!r} must be a GPU name such as 'nvidia-t4'")
    if instance_type is not None and not isinstance(instance_type, str):
        raise ConfigurationError(
            f"instance_type={instance_type!r} must be an EC2 type name such as 'g4dn.2xlarge'")
    if not isinstance(spot, bool):
        raise ConfigurationError(
            f"spot={spot!r} must be True (an EC2 Spot compute environment: cheaper, may be "
            "interrupted) or False (On-Demand)")
    return resolve_gpu(gpu, instance_type), spot


def _price_or_unknown(instance: GpuInstance, region: str, *, spot: bool, rate: Any,
                      caps: dict[str, float | None] | None = None,
                      ) -> tuple[InstancePrice | None, str]:
    """The instance price, or None and the "cost unknown" note when none is recorded.

    A session in a region without a recorded price runs with its cost
    unknown; a cap (``caps``: ``max_cost``, ``max_hourly_cost``) needs a
    price, so then it is refused.

    Raises:
        ConfigurationError: a bad ``instance_rate=``, or a cap set where no
            price is known (the message names ``instance_rate=``).
    """
    try:
        return _price_of(instance, region, spot=spot, rate=rate), ""
    except ConfigurationError as exc:
        if rate is not None:
            raise  # a bad instance_rate=
        for name, cap in (caps or {}).items():
            if cap is not None:
                raise ConfigurationError(f"{name}= needs a price: {exc}") from None
        return None, f"cost unknown: {exc}"


def _price_of(instance: GpuInstance, region: str, *, spot: bool,
              rate: Any) -> InstancePrice:
    """The instance price: ``instance_rate=`` when given, else the recorded one.

    Raises:
        ConfigurationError: no price is recorded for the type in ``region``
            and no ``instance_rate=`` was given (the message says how to
            pass one), or the rate is not a positive number.
    """
    if rate is None:
        try:
            return instance_price(instance.instance_type, region, spot=spot,
                                  table=gpu_table_in_use())
        except ConfigurationError as exc:
            raise ConfigurationError(
                f"{exc} For GPU workers, pass instance_rate=DOLLARS_PER_HOUR (the "
                f"{'Spot' if spot else 'On-Demand'} price of one {instance.instance_type}) to "
                "the Executor.") from None
    if (isinstance(rate, bool) or not isinstance(rate, (int, float))
            or not math.isfinite(rate) or rate <= 0):
        raise ConfigurationError(
            f"instance_rate={rate!r} must be the price of one {instance.instance_type} in "
            "dollars per hour, e.g. instance_rate=0.526")
    return given_price(instance.instance_type, region, float(rate), spot=spot)


def _check_size(instance: GpuInstance, cpu: float, memory_mib: int) -> None:
    """cpu= and memory= must fit one worker's share of the instance; else name one that fits.

    A GPU worker gets its GPU's share of the instance (the defaults, 1 vCPU
    and 2 GiB, always fit); asking for more than that would never be placed.
    """
    vcpus, memory = aws_batch.worker_share(instance)
    if cpu <= vcpus and memory_mib <= memory:
        return
    from ..gpu import gpu_instances

    shares = {i.instance_type: aws_batch.worker_share(i) for i in gpu_instances(instance.gpu)}
    bigger = [t for t, (c, m) in shares.items() if c >= cpu and m >= memory_mib]
    fix = (f"pass instance_type={bigger[0]!r} (the smallest {instance.gpu} instance that "
           "fits)" if bigger else f"no {instance.gpu} instance is that large: ask for less")
    raise ConfigurationError(
        f"cpu={cpu:g} and memory={memory_mib} MiB do not fit a GPU worker on "
        f"{instance.instance_type}, which gives each worker {vcpus} vCPU and {memory} MiB "
        f"(one {instance.gpu}): {fix}")


def _gpu_snapshot(snapshot: Snapshot) -> tuple[Snapshot, str]:
    """The snapshot with CUDA builds in place of CPU-only pins, and a note on what changed."""
    from ..envsync.cuda import cuda_swaps, gpu_pins, swap_report

    report = swap_report(cuda_swaps(snapshot))
    return gpu_pins(snapshot), (f"pins changed: {report}" if report else "")


def _require_image(image: str | None) -> str:
    if not image:
        raise ConfigurationError(
            "GPU workers need a container image: pass image='...' to the Executor, set "
            "STARBURST_IMAGE, or add image = \"...\" to the starburst config (an image with "
            "the same Python and packages as here, CUDA builds of them, and starburst "
            "installed); or use env='auto' to build one")
    return image

