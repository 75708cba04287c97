"""The emulated AWS Batch job runner: moto accepts SubmitJob, this runs the jobs.

moto runs each Batch job on a thread that starts a Docker container, and
marks the job FAILED when there is no Docker. While the runner is active,
that thread runs the job's worker command as a local process instead, the
way :class:`~starburst.testing.task_runner.EcsTaskRunner` runs ECS tasks
(and with its machinery: image unpacking, the host interpreter standing in
for the image's, task-role credentials and metadata from its endpoint)::

    SubmitJob -> moto job (SUBMITTED) -> RUNNABLE -> STARTING (pull, credentials)
              -> RUNNING (process started; startedAt) -> SUCCEEDED (exit 0) / FAILED
    process output ------------> CloudWatch Logs (the job definition's awslogs
                                 group and stream prefix, else /aws/batch/job)
    TerminateJob (running) -----> SIGTERM, SIGKILL after the stop timeout -> FAILED
    TerminateJob/CancelJob (not yet running) -> FAILED at once, with the reason

The job's status, exit code (``container.exitCode``), ``statusReason``,
container reason and ``startedAt``/``stoppedAt`` are written onto moto's
job object, so DescribeJobs shows what real Batch would. A process gets
the job definition's environment and the overrides, ``AWS_BATCH_JOB_ID``
and friends, ``AWS_REGION``, its job role's credentials from the endpoint
and the emulator's ``AWS_ENDPOINT_URL``; never the client's environment.
moto's state manager must leave ``batch::job`` alone (manual progression,
see :meth:`~starburst.testing.EmulatedAws.configure_tasks`), so only the
runner moves jobs.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from moto.batch import models as batch_models
from moto.core.models import DEFAULT_ACCOUNT_ID

from ..aws.clients import client
from ..aws.errors import translate_errors
from ..exceptions import CloudError, ConfigurationError
from .task_endpoint import TaskIdentity
from .task_runner import (
    _BOOTSTRAP,
    _KEEP_ENV,
    _PYTHONS,
    _WORKER_MODULE,
    DEFAULT_STOP_TIMEOUT,
    EcsTaskRunner,
)

__all__ = ["HOST_TERMINATED", "BatchJobRunner"]

#: The statusReason of a job whose EC2 host went away (a Spot interruption).
HOST_TERMINATED = "Host EC2 (instance i-0emulated) terminated."
#: Where Batch sends a job's output when its definition names no log configuration.
_DEFAULT_LOG_GROUP = "/aws/batch/job"
_EXITED = "Essential container in task exited"


@dataclass(eq=False)
class _Job:
    """One emulated job and its process."""

    job: Any  # moto's batch.models.Job
    proc: subprocess.Popen[bytes] | None = None
    home: str = ""
    stop_reason: str | None = None
    container_reason: str | None = None
    log_group: str | None = None
    log_stream: str = ""
    killer: threading.Timer | None = None
    done: threading.Event = field(default_factory=threading.Event)


class BatchJobRunner:
    """Runs the jobs of moto's in-process Batch backend as local worker processes.

    Args:
        ecs: the emulator's ECS task runner, whose image cache, credentials
            endpoint and interpreter rules the jobs share.
        region: the emulated region (jobs of other regions keep moto's behaviour).
        echo: called with each output line of each job (``[job-id] line``).
        stop_timeout: seconds between SIGTERM and SIGKILL on TerminateJob.
        account: the emulated account.
    """

    def __init__(self, *, ecs: EcsTaskRunner, region: str,
                 echo: Callable[[str], None] | None = None,
                 stop_timeout: float = DEFAULT_STOP_TIMEOUT,
                 account: str = DEFAULT_ACCOUNT_ID) -> None:
        self.ecs = ecs
        self.region = region
        self.echo = echo
        self.stop_timeout = stop_timeout
        self.account = account
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.RLock()
        self._closed = False
        self._originals: dict[str, Any] = {}
        self._logs = client("logs", region=region)

    # -- lifecycle --------------------------------------------------------
    def start(self) -> None:
        """Hook moto's Batch jobs: run, terminate and describe go through the runner."""
        job_class: Any = batch_models.Job
        if self._originals:
            return
        if getattr(job_class, "_starburst_runner", None) is not None:
            raise RuntimeError("another BatchJobRunner already hooks moto's Batch jobs: "
                               "close it first (moto's state is process-wide)")
        self._originals = {name: job_class.__dict__[name]
                           for name in ("run", "terminate", "describe")}
        runner = self
        original_run = self._originals["run"]
        original_terminate = self._originals["terminate"]
        original_describe = self._originals["describe"]

        def run(job: Any) -> None:
            if runner._owns(job):
                runner._run(job)
            else:
                original_run(job)

        def terminate(job: Any, reason: str) -> None:
            if runner._owns(job):
                runner._terminate(job, reason)
            else:
                original_terminate(job, reason)

        def describe(job: Any) -> dict[str, Any]:
            result: dict[str, Any] = original_describe(job)
            extra = getattr(job, "_starburst_container", None)
            if extra:
                result.setdefault("container", {}).update(extra)
            return result

        job_class.run, job_class.terminate, job_class.describe = run, terminate, describe
        job_class._starburst_runner = self

    def close(self) -> None:
        """Kill every job process and restore moto's own job behaviour."""
        self._closed = True
        self.kill_all()
        job_class: Any = batch_models.Job
        if getattr(job_class, "_starburst_runner", None) is self:
            for name, fn in self._originals.items():
                setattr(job_class, name, fn)
            del job_class._starburst_runner
        self._originals = {}
        self._logs.close()

    def kill_all(self) -> None:
        """SIGKILL every job process and wait until each job is finished."""
        with self._lock:
            jobs = list(self._jobs.values())
        for run in jobs:
            run.stop_reason = run.stop_reason or "emulator reset"
            self._signal(run, signal.SIGKILL)
        for run in jobs:
            run.done.wait(10.0)
        with self._lock:
            self._jobs.clear()

    # -- what tests use -----------------------------------------------------
    def pids(self) -> dict[str, int]:
        """Process id of each job whose process is alive, by job id."""
        with self._lock:
            return {job_id: run.proc.pid for job_id, run in self._jobs.items()
                    if run.proc is not None and run.proc.poll() is None}

    def kill(self, job_id: str, sig: int = signal.SIGKILL, *, status_reason: str | None = None,
             container_reason: str | None = None) -> None:
        """Send ``sig`` to a job's process, as a crash, the OOM killer or a lost host would.

        ``status_reason`` becomes the job's statusReason (e.g. :data:`HOST_TERMINATED`
        for a Spot interruption); ``container_reason`` the container's reason.
        """
        with self._lock:
            run = self._jobs[job_id]
            run.stop_reason = status_reason or run.stop_reason
            run.container_reason = container_reason
        self._signal(run, sig)

    def wait_done(self, job_id: str, timeout: float = 30.0) -> bool:
        """Wait until a job is SUCCEEDED or FAILED; return whether it is."""
        with self._lock:
            run = self._jobs.get(job_id)
        return run is not None and run.done.wait(timeout)

    # -- moto hooks -------------------------------------------------------
    def _owns(self, job: Any) -> bool:
        backend = job.backend
        return (not self._closed and backend.region_name == self.region
                and backend.account_id == self.account)

    def _run(self, job: Any) -> None:
        """moto's job thread: prepare, start and watch the worker process."""
        run = _Job(job)
        with self._lock:
            self._jobs[job.job_id] = run
            if job.stop:  # cancelled before its thread got here
                self._finish(run, None, job.job_stopped_reason or "cancelled")
                return
            job.status = "RUNNABLE"
        try:
            with self._lock:
                job.status = "STARTING"
            command, env = self._prepare(run)
        except (CloudError, ConfigurationError) as exc:
            self._finish(run, None, f"CannotStartContainerError: {exc}")
            return
        with self._lock:
            if run.stop_reason is not None or job.stop:
                self._finish(run, None, run.stop_reason or job.job_stopped_reason)
                return
            try:
                run.proc = subprocess.Popen(
                    command, env=env, cwd=run.home, stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as exc:
                self._finish(run, None, f"CannotStartContainerError: {exc}")
                return
            job.job_started_at = datetime.now()
            job.status = "RUNNING"
            job._start_attempt()
        self._pump(run)

    def _terminate(self, job: Any, reason: str) -> None:
        """TerminateJob/CancelJob: a running job gets SIGTERM (SIGKILL after the stop
        timeout); one not running yet fails at once with ``reason``."""
        with self._lock:
            job.stop = True
            job.job_stopped_reason = job.job_stopped_reason or reason
            run = self._jobs.get(job.job_id)
            if run is None:
                return  # its thread has not started: _run sees job.stop
            if run.done.is_set() or run.stop_reason is not None:
                return
            run.stop_reason = reason
            if run.proc is None:
                return  # still preparing: _run sees stop_reason
            run.killer = threading.Timer(self.stop_timeout, self._signal,
                                         args=(run, signal.SIGKILL))
            run.killer.daemon = True
            run.killer.start()
        self._signal(run, signal.SIGTERM)

    # -- one job ------------------------------------------------------------
    def _prepare(self, run: _Job) -> tuple[list[str], dict[str, str]]:
        """The command and environment of the job's container."""
        job = run.job
        props: dict[str, Any] = job.job_definition.container_properties or {}
        overrides: dict[str, Any] = job.container_overrides or {}
        env = {e["name"]: e["value"] for e in props.get("environment") or []}
        env.update({e["name"]: e["value"] for e in overrides.get("environment") or []})
        env.update(self.ecs.resolve_secrets(props.get("secrets") or [],
                                            props.get("executionRoleArn"), job.job_id))
        command = list(overrides.get("command") or props.get("command") or [])
        if not command:
            raise CloudError(f"job definition {job.job_definition.arn} has no command to run")
        image = str(props.get("image") or "")
        pulled = self.ecs._pull(image, self._arch(job)) if self.ecs._from_registry(image) \
            else None
        image_env: dict[str, str] = {}
        if pulled is not None and command[0] in _PYTHONS and command[1:3] == ["-m",
                                                                           _WORKER_MODULE]:
            site_dir, image_env = pulled
            fallback = "" if self.ecs.isolate else os.pathsep.join(self.ecs._host_path())
            command = [sys.executable, "-I", "-S", "-u", "-c", _BOOTSTRAP, str(site_dir),
                       fallback, *command[3:]]
        elif command[0] in _PYTHONS:
            command[0] = sys.executable  # the host interpreter stands in for the image
        run.home = tempfile.mkdtemp(prefix=f"starburst-job-{job.job_id[:8]}-")
        role = props.get("jobRoleArn")
        identity = TaskIdentity(
            task_arn=job.arn, cluster=job.job_queue.arn, family=job.job_definition.name,
            revision=str(job.job_definition.revision), container="default",
            token=secrets.token_hex(16),
            credentials=self.ecs._credentials(role, job.job_id) if role else None)
        agent = self.ecs._agent.register(job.job_id, identity)
        self._open_log_stream(run, props)
        base = {k: os.environ[k] for k in _KEEP_ENV if k in os.environ}
        path_env = {} if pulled is not None else {
            "PYTHONPATH": os.pathsep.join(self.ecs._host_path())}
        queue = job.job_queue
        environments = getattr(queue, "environments", []) or []
        return command, {
            **base, **image_env, "HOME": run.home, **path_env, **env,
            "AWS_BATCH_JOB_ID": job.job_id, "AWS_BATCH_JQ_NAME": queue.name,
            "AWS_BATCH_CE_NAME": environments[0].name if environments else "",
            "AWS_BATCH_JOB_ATTEMPT": "1",
            "AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region,
            "AWS_EXECUTION_ENV": "AWS_ECS_EC2", "AWS_ENDPOINT_URL": self.ecs.endpoint_url,
            **agent}

    @staticmethod
    def _arch(job: Any) -> str:
        """The architecture of the job queue's instances (``arm64`` for g5g), else x86_64."""
        from ..gpu import gpu_instance

        for env in getattr(job.job_queue, "environments", []) or []:
            for itype in (env.compute_resources or {}).get("instanceTypes", []):
                with contextlib.suppress(ConfigurationError):
                    return gpu_instance(itype).arch
        return "x86_64"

    def _open_log_stream(self, run: _Job, props: dict[str, Any]) -> None:
        """Create the job's log stream where Batch would put it."""
        job = run.job
        config = props.get("logConfiguration") or {}
        if config.get("logDriver", "awslogs") != "awslogs":
            return
        options = config.get("options") or {}
        group = options.get("awslogs-group") or _DEFAULT_LOG_GROUP
        prefix = options.get("awslogs-stream-prefix") or job.job_definition.name
        stream = f"{prefix}/default/{job.job_id}"
        with translate_errors(f"awslogs: log group {group} (failed to validate logger args)"):
            if group == _DEFAULT_LOG_GROUP:
                with contextlib.suppress(self._logs.exceptions.ResourceAlreadyExistsException):
                    self._logs.create_log_group(logGroupName=group)
            self._logs.create_log_stream(logGroupName=group, logStreamName=stream)
        run.log_group, run.log_stream = group, stream
        job.log_stream_name = stream

    def _pump(self, run: _Job) -> None:
        proc = run.proc
        assert proc is not None
        assert proc.stdout is not None
        group = run.log_group
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            if self.echo is not None:
                self.echo(f"[{run.job.job_id[:8]}] {line}")
            if group is not None:
                try:
                    with translate_errors("awslogs: PutLogEvents"):
                        self._logs.put_log_events(
                            logGroupName=group, logStreamName=run.log_stream,
                            logEvents=[{"timestamp": int(time.time() * 1000),
                                        "message": line or " "}])
                except CloudError:
                    group = None  # the emulator was reset under this job: stop logging
        proc.stdout.close()
        code = proc.wait()
        self._finish(run, code if code >= 0 else 128 - code, None)

    def _finish(self, run: _Job, exit_code: int | None, reason: str | None) -> None:
        """Record how the job ended on moto's job: FAILED unless it exited 0 unasked."""
        with self._lock:
            job = run.job
            if run.killer is not None:
                run.killer.cancel()
            stopped = run.stop_reason or reason
            job.exit_code = exit_code
            job.job_stopped_reason = stopped or _EXITED
            container: dict[str, Any] = {"exitCode": exit_code} if exit_code is not None \
                else {}
            if run.container_reason:
                container["reason"] = run.container_reason
            job._starburst_container = container
            if job.job_started_at == datetime(1970, 1, 1):
                job.job_started_at = datetime.now()
            # A job that was terminated, lost or never started failed, whatever its code.
            job._mark_stopped(success=exit_code == 0 and stopped is None)
            self.ecs._agent.unregister(job.job_id)
            if run.home:
                shutil.rmtree(run.home, ignore_errors=True)
            run.done.set()

    @staticmethod
    def _signal(run: _Job, sig: int) -> None:
        if run.proc is None or run.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.proc.pid, sig)
