"""The emulated ECS task runner: moto accepts RunTask, this runs the tasks.

moto keeps ECS tasks as records that never run. The runner hooks moto's
in-process ECS backend (the moto server runs in this process) and, for
each task RunTask creates, runs the task definition's command as a local
process with the host interpreter::

    RunTask -> moto task (PROVISIONING) -> runner: PENDING, start process -> RUNNING
    process output --------------------------> CloudWatch Logs (awslogs stream naming)
    process exits / is killed ---------------> STOPPED, exit code, stop code, timestamps
    StopTask --------------------------------> DEACTIVATING, SIGTERM, SIGKILL after a grace
    interrupt() (a Fargate Spot reclaim) ----> SpotInterruption, SIGTERM, SIGKILL after a grace

A process gets what a Fargate container gets: the task definition's
environment and the RunTask overrides; its container ``secrets``, read
from Secrets Manager with the execution role's credentials as the ECS agent
reads them (:meth:`EcsTaskRunner.resolve_secrets`); ``AWS_REGION``; its task ARN from
a metadata endpoint and its task role's credentials from a credentials
endpoint (:mod:`.task_endpoint`), never through the overrides; and the
emulator's ``AWS_ENDPOINT_URL``. It does not inherit the client's
environment. Killing the process therefore looks to starburst exactly
like a Fargate task dying: ``EssentialContainerExited``, exit code 137.
The grace between SIGTERM and SIGKILL is the container's ``stopTimeout``
when the task definition sets one (Spot workers: 120 s), else the
runner's ``stop_timeout``.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import boto3
from botocore.exceptions import ClientError
from moto.backends import get_backend
from moto.core.models import DEFAULT_ACCOUNT_ID

from ..aws.clients import client
from ..aws.errors import translate_errors
from ..exceptions import CloudError
from ..scheduling.events import SPOT_INTERRUPTION
from .task_endpoint import TaskEndpoint, TaskIdentity

if TYPE_CHECKING:
    from ..envsync.registry import Registry

__all__ = ["EcsTaskRunner"]

#: ECS's default stopTimeout: SIGTERM, then SIGKILL this many seconds later.
DEFAULT_STOP_TIMEOUT = 30.0
#: What ECS says of a task Fargate Spot took back.
SPOT_STOP_CODE = SPOT_INTERRUPTION
SPOT_STOPPED_REASON = "Your Spot Task was interrupted."
#: How often the runner re-checks its hooks, stop deadlines and stray tasks.
_SCAN_INTERVAL = 0.1
#: Host variables a container would also have (locale, search path).
_KEEP_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SYSTEMROOT", "TMPDIR")
_PYTHONS = ("python", "python3", f"python3.{sys.version_info.minor}")
_WORKER_MODULE = "starburst.worker"
_ARCHES = {"X86_64": "x86_64", "ARM64": "arm64"}
# Image variables a container gets that would break the host interpreter here.
_HOST_ONLY = frozenset({"PATH", "HOME", "PYTHONPATH", "PYTHONHOME", "LANG"})
#: Runs ``python -m starburst.worker ARGS`` from an unpacked image: started
#: with ``-I -S -u`` (no host site-packages, no user site, no PYTHON* variables),
#: it adds the image's site-packages (``.pth`` files honoured) first on
#: sys.path, then the fallback paths (empty when the runner isolates).
#: argv: image site-packages, fallback paths (os.pathsep-joined), worker args.
_BOOTSTRAP = """\
import os, runpy, site, sys
image_site, fallback = sys.argv[1], sys.argv[2]
before = list(sys.path)
site.addsitedir(image_site)
added = [p for p in sys.path if p not in before]
sys.path[:] = added + [p for p in before if p not in added] + \\
    [p for p in fallback.split(os.pathsep) if p and p not in added]
sys.argv = [sys.argv[0], *sys.argv[3:]]
runpy.run_module("starburst.worker", run_name="__main__", alter_sys=True)
"""


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(eq=False)
class _Run:
    """One emulated task and its process."""

    task: Any  # moto's ecs.models.Task, extended with the fields moto lacks
    proc: subprocess.Popen[bytes] | None = None
    home: str = ""
    stop_reason: str | None = None
    stop_code: str | None = None
    container_reason: str | None = None
    kill_at: float | None = None
    pump: threading.Thread | None = None
    done: threading.Event = field(default_factory=threading.Event)


class EcsTaskRunner:
    """Runs the tasks of moto's in-process ECS backend as local processes.

    A task whose image is in ``registry_url`` (the emulated ECR) runs from
    that image: its layers are unpacked once per manifest digest (only
    ``usr/local/lib``), the image's config ``Env`` is applied, and the
    worker starts with the host interpreter standing in for the image's,
    with the image's site-packages first on ``sys.path``. With
    ``isolate=False`` (the default) the host's import path follows as a
    fallback, for images built from a partial snapshot (tests) that lack
    starburst's own dependencies; with ``isolate=True`` only the standard
    library and the image are importable. Other images run on the host's
    environment, as before.

    Args:
        region: the emulated region.
        endpoint_url: the moto server URL the processes talk to.
        echo: called with each output line of each task (``[task-id] line``).
        stop_timeout: seconds between SIGTERM and SIGKILL on StopTask.
        registry_url: the registry serving as the account's ECR (ECR-token Basic auth).
        isolate: run image tasks without the host's site-packages.
    """

    def __init__(self, *, region: str, endpoint_url: str,
                 echo: Callable[[str], None] | None = None,
                 stop_timeout: float = DEFAULT_STOP_TIMEOUT,
                 account: str = DEFAULT_ACCOUNT_ID, registry_url: str | None = None,
                 isolate: bool = False) -> None:
        self.registry_url = registry_url
        self.isolate = isolate
        self._registry: Registry | None = None
        self._images = Path(tempfile.mkdtemp(prefix="starburst-images-"))
        #: Images unpacked so far (manifest digests), for tests.
        self.pulled: list[str] = []
        self.region = region
        self.endpoint_url = endpoint_url
        self.account = account
        self.echo = echo
        self.stop_timeout = stop_timeout
        self._runs: dict[str, _Run] = {}
        self._pending: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.RLock()
        self._closed = threading.Event()
        self._agent = TaskEndpoint()
        self._logs = client("logs", region=region)
        self._sts = client("sts", region=region)
        self._thread = threading.Thread(target=self._serve, name="starburst-ecs-runner",
                                        daemon=True)

    # -- lifecycle --------------------------------------------------------
    def start(self) -> None:
        """Hook moto and start watching for tasks."""
        self._install_hooks()
        self._thread.start()

    def close(self) -> None:
        """Kill every task process, unhook moto, stop the endpoint."""
        self._closed.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10.0)
        self.kill_all()
        backend = self._backend()
        if getattr(backend, "_starburst_runner", None) is self:
            for name in ("run_task", "stop_task", "_starburst_runner"):
                backend.__dict__.pop(name, None)
        self._agent.close()
        self._logs.close()
        self._sts.close()
        if self._registry is not None:
            self._registry.close()
        shutil.rmtree(self._images, ignore_errors=True)

    def kill_all(self) -> None:
        """SIGKILL every task process and wait until each is reported STOPPED.

        Tasks RunTask created that have not started yet are dropped: after a
        reset they would run against a session that no longer exists.
        """
        with self._lock:
            while True:
                try:
                    self._pending.get_nowait()
                except queue.Empty:
                    break
            runs = list(self._runs.values())
        for run in runs:
            self._signal(run, signal.SIGKILL)
        for run in runs:
            if run.pump is not None:
                run.pump.join(timeout=10.0)
        with self._lock:
            self._runs.clear()

    # -- what tests use -----------------------------------------------------
    def pids(self) -> dict[str, int]:
        """Process id of each task whose process is alive, by task ARN."""
        with self._lock:
            return {arn: run.proc.pid for arn, run in self._runs.items()
                    if run.proc is not None and run.proc.poll() is None}

    def kill(self, task_arn: str, sig: int = signal.SIGKILL, *,
             container_reason: str | None = None) -> None:
        """Send ``sig`` to a task's process, as a crash or the OOM killer would.

        ``container_reason`` becomes the container's reason (e.g.
        ``"OutOfMemoryError: Container killed due to memory usage"``).
        """
        with self._lock:
            run = self._runs[task_arn]
            run.container_reason = container_reason
        self._signal(run, sig)

    def interrupt(self, task_arn: str, *, stop_timeout: float | None = None) -> None:
        """Take a task back the way Fargate Spot does.

        The task stops with stop code ``SpotInterruption`` and the reason
        "Your Spot Task was interrupted."; its process gets SIGTERM at once
        and SIGKILL ``stop_timeout`` seconds later (default: the container's
        ``stopTimeout``, else the runner's ``stop_timeout``), as ECS does
        after the two-minute Spot notice.

        Raises:
            KeyError: the runner never started ``task_arn``.
        """
        with self._lock:
            run = self._runs[task_arn]
            if run.stop_reason is not None or run.done.is_set():
                return
            run.stop_reason, run.stop_code = SPOT_STOPPED_REASON, SPOT_STOP_CODE
            self._begin_stop(run, stop_timeout)

    def wait_stopped(self, task_arn: str, timeout: float = 30.0) -> bool:
        """Wait until a task is STOPPED; return whether it is."""
        with self._lock:
            run = self._runs.get(task_arn)
        return run is not None and run.done.wait(timeout)

    # -- moto hooks -------------------------------------------------------
    def _backend(self) -> Any:
        return get_backend("ecs")[self.account][self.region]

    def _install_hooks(self) -> None:
        """Wrap RunTask and StopTask of the current backend (a reset makes a new one)."""
        backend = self._backend()
        if getattr(backend, "_starburst_runner", None) is self:
            return
        run_task, stop_task = backend.run_task, backend.stop_task

        def hooked_run_task(*args: Any, **kwargs: Any) -> Any:
            tasks = run_task(*args, **kwargs)
            for task in tasks:
                task.last_status = "PROVISIONING"
                task.created_at = _now()
                self._pending.put(task)
            return tasks

        def hooked_stop_task(cluster_str: str, task_str: str, reason: str) -> Any:
            return self._on_stop(stop_task, cluster_str, task_str, reason)

        backend.run_task = hooked_run_task
        backend.stop_task = hooked_stop_task
        backend._starburst_runner = self

    def _on_stop(self, stop_task: Callable[[str, str, str], Any], cluster_str: str,
                 task_str: str, reason: str) -> Any:
        """StopTask: SIGTERM the process, SIGKILL after ``stop_timeout`` (as ECS does)."""
        task_id = task_str.rsplit("/", 1)[-1]
        why = reason or "Task stopped by user"
        with self._lock:
            run = next((r for a, r in self._runs.items() if a.endswith(task_id)), None)
            if run is None:  # not started yet (or unknown: moto raises)
                task = stop_task(cluster_str, task_str, reason)  # moto: STOPPED at once
                stopped = self._runs[task.task_arn] = _Run(task)
                stopped.done.set()
                task.stop_code, task.stopped_reason = "UserInitiated", why
                task.stopping_at = task.execution_stopped_at = task.stopped_at = _now()
                return task
            task = run.task
            if run.stop_reason is None and not run.done.is_set():
                run.stop_reason = why
                self._begin_stop(run, None)
            return task

    def _begin_stop(self, run: _Run, stop_timeout: float | None) -> None:
        """DEACTIVATING, SIGTERM now, SIGKILL after the stop timeout (under the lock)."""
        task = run.task
        task.desired_status = "STOPPED"
        task.stopping_at = _now()
        task.last_status = "DEACTIVATING"
        grace = stop_timeout if stop_timeout is not None else self._stop_timeout_of(task)
        run.kill_at = time.monotonic() + grace
        self._signal(run, signal.SIGTERM)

    def _stop_timeout_of(self, task: Any) -> float:
        """The container's ``stopTimeout`` when its task definition sets one, else the runner's."""
        try:
            definition = self._backend().describe_task_definition(task.task_definition_arn)
            value = definition.container_definitions[0].get("stopTimeout")
        except Exception:  # a reset removed the definition: the runner's default
            value = None
        return float(value) if value else self.stop_timeout

    # -- the watch loop ---------------------------------------------------
    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                task = self._pending.get(timeout=_SCAN_INTERVAL)
            except queue.Empty:
                task = None
            if task is not None:
                self._start(task)
                continue
            self._install_hooks()
            self._adopt_strays()
            self._escalate()

    def _adopt_strays(self) -> None:
        """Start tasks created while no hook was installed (right after a reset)."""
        try:
            tasks = [t for cluster in list(self._backend().tasks.values())
                     for t in list(cluster.values())]
        except RuntimeError:  # a request thread changed the dict: next round
            return
        for task in tasks:
            if task.desired_status == "RUNNING" and task.task_arn not in self._runs:
                self._start(task)

    def _escalate(self) -> None:
        now = time.monotonic()
        with self._lock:
            late = [r for r in self._runs.values() if r.kill_at is not None and r.kill_at <= now]
        for run in late:
            run.kill_at = None
            self._signal(run, signal.SIGKILL)

    # -- one task ---------------------------------------------------------
    def _start(self, task: Any) -> None:
        with self._lock:
            if self._closed.is_set() or task.task_arn in self._runs:
                return
            run = self._runs[task.task_arn] = _Run(task)
            if task.desired_status != "RUNNING":
                run.done.set()
                return
            try:
                command, env = self._prepare(run)
            except CloudError as exc:
                self._finalize(run, None, "TaskFailedToStart",
                               f"ResourceInitializationError: {exc}")
                return
            task.last_status = "PENDING"
            task.pull_started_at = _now()
            try:
                run.proc = subprocess.Popen(
                    command, env=env, cwd=run.home, stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as exc:
                task.pull_stopped_at = _now()
                self._finalize(run, None, "TaskFailedToStart",
                               f"CannotStartContainerError: {exc}")
                return
            task.pull_stopped_at = task.started_at = _now()
            task.containers[0].last_status = "RUNNING"
            task.last_status = "RUNNING"
            run.pump = threading.Thread(target=self._pump, args=(run,), daemon=True,
                                        name=f"starburst-task-{task.id[:8]}")
            run.pump.start()

    def _prepare(self, run: _Run) -> tuple[list[str], dict[str, str]]:
        """The command and environment of a task's worker container."""
        task = run.task
        definition = self._backend().describe_task_definition(task.task_definition_arn)
        container = definition.container_definitions[0]
        name = container["name"]
        env = {e["name"]: e["value"] for e in container.get("environment") or []}
        env.update(self.resolve_secrets(container.get("secrets") or [],
                                        getattr(definition, "execution_role_arn", None),
                                        task.id))
        command = list(container.get("command") or [])
        for override in task.overrides.get("containerOverrides", []):
            if override.get("name") == name:
                env.update({e["name"]: e["value"] for e in override.get("environment") or []})
                command = list(override.get("command") or command)
        if not command:
            raise CloudError(f"task definition {definition.arn} has no command to run")
        image = str(container.get("image") or "")
        platform = getattr(definition, "runtime_platform", None) or {}
        arch = _ARCHES.get(str(platform.get("cpuArchitecture") or "X86_64"), "x86_64")
        pulled = self._pull(image, arch) if self._from_registry(image) else None
        image_env: dict[str, str] = {}
        if pulled is not None and command[0] in _PYTHONS and command[1:3] == ["-m",
                                                                           _WORKER_MODULE]:
            site_dir, image_env = pulled
            fallback = "" if self.isolate else os.pathsep.join(self._host_path())
            command = [sys.executable, "-I", "-S", "-u", "-c", _BOOTSTRAP, str(site_dir), fallback,
                       *command[3:]]
        elif command[0] in _PYTHONS:
            command[0] = sys.executable  # the host interpreter stands in for the image
        run.home = tempfile.mkdtemp(prefix=f"starburst-task-{task.id[:8]}-")
        role = task.overrides.get("taskRoleArn") or getattr(definition, "task_role_arn", None)
        identity = TaskIdentity(
            task_arn=task.task_arn, cluster=task.cluster_arn, family=definition.family,
            revision=str(definition.revision), container=name, token=secrets.token_hex(16),
            credentials=self._credentials(role, task.id) if role else None)
        agent = self._agent.register(task.id, identity)
        self._open_log_stream(run, container)
        base = {k: os.environ[k] for k in _KEEP_ENV if k in os.environ}
        path_env = {} if pulled is not None else {
            "PYTHONPATH": os.pathsep.join(self._host_path())}
        return command, {
            **base, **image_env, "HOME": run.home, **path_env, **env,
            "AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region,
            "AWS_EXECUTION_ENV": "AWS_ECS_FARGATE", "AWS_ENDPOINT_URL": self.endpoint_url,
            **agent}

    @staticmethod
    def _host_path() -> list[str]:
        return [os.path.abspath(p or os.getcwd()) for p in sys.path if os.path.exists(p or ".")]

    def _from_registry(self, image: str) -> bool:
        """Whether ``image`` names the emulated ECR (by its ECR host name or its URL)."""
        if self.registry_url is None:
            return False
        registry = self._ecr()
        hosts = {registry.name, registry.url.split("://", 1)[-1]}
        return any(image.startswith(f"{host}/") for host in hosts)

    def _ecr(self) -> Registry:
        if self._registry is None:
            from ..envsync.ecrauth import ecr_registry

            self._registry = ecr_registry(client("ecr", region=self.region),
                                          registry_url=self.registry_url)
        return self._registry

    def _pull(self, image: str, arch: str) -> tuple[Path, dict[str, str]]:
        """Unpack ``image`` once (per manifest digest): its site-packages and config Env.

        Raises:
            CloudError: the image cannot be pulled (``CannotPullContainerError``).
        """
        from ..envsync.errors import EnvironmentBuildError
        from ..envsync.pull import extract_image, image_config, split_reference

        registry = self._ecr()
        try:
            repo, reference = split_reference(registry, image)
            digest = registry.manifest_digest(repo, reference)
            if digest is None:
                raise CloudError(f"CannotPullContainerError: {image}: not found")
            root = self._images / f"{digest.replace(':', '-')}-{arch}"
            done = root / ".starburst-image.json"
            if not done.is_file():
                shutil.rmtree(root, ignore_errors=True)
                config = image_config(registry, image, platform=arch)
                site_dir = extract_image(registry, image, root / "fs", platform=arch,
                                         only="usr/local/lib")
                inner = config.get("config") or {}
                env = dict(e.split("=", 1) for e in inner.get("Env") or [] if "=" in e)
                done.write_text(json.dumps({"site": str(site_dir), "env": env}),
                                encoding="utf-8")
                self.pulled.append(digest)
            record = json.loads(done.read_text(encoding="utf-8"))
        except EnvironmentBuildError as exc:
            raise CloudError(f"CannotPullContainerError: {image}: {exc}") from exc
        env = {k: str(v) for k, v in record["env"].items() if k not in _HOST_ONLY}
        return Path(record["site"]), env

    def resolve_secrets(self, wanted: list[dict[str, str]], execution_role: str | None,
                        task_id: str) -> dict[str, str]:
        """The container ``secrets`` as environment variables, read as the ECS agent reads
        them: with the *execution* role's credentials (so its policy decides, in the
        audit, as in AWS). Their values never appear in the task's description.

        Raises:
            CloudError: a secret cannot be read (ECS: ``ResourceInitializationError:
                unable to pull secrets or registry auth``).
        """
        if not wanted:
            return {}
        if not execution_role:
            raise CloudError("unable to pull secrets or registry auth: the task definition "
                             "has secrets but no execution role")
        creds = self._credentials(execution_role, task_id)
        sm = boto3.client(
            "secretsmanager", region_name=self.region, endpoint_url=self.endpoint_url,
            aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds[
                "SecretAccessKey"], aws_session_token=creds["Token"])
        out: dict[str, str] = {}
        try:
            for entry in wanted:
                try:
                    value = sm.get_secret_value(SecretId=entry["valueFrom"])
                except ClientError as exc:
                    raise CloudError(
                        f"unable to pull secrets or registry auth: {entry['valueFrom']}: "
                        f"{exc}") from exc
                out[entry["name"]] = str(value.get("SecretString", ""))
        finally:
            sm.close()
        return out

    def _credentials(self, role: str, task_id: str) -> dict[str, str]:
        """Assume the task role (in the emulator) as ECS does for a task."""
        with translate_errors(f"STS AssumeRole {role}"):
            creds = self._sts.assume_role(RoleArn=role, RoleSessionName=task_id[:64])[
                "Credentials"]
        expires = creds.get("Expiration") or _now() + timedelta(hours=1)
        return {"AccessKeyId": creds["AccessKeyId"], "SecretAccessKey": creds["SecretAccessKey"],
                "Token": creds["SessionToken"], "RoleArn": role,
                "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}

    def _open_log_stream(self, run: _Run, container: dict[str, Any]) -> None:
        config = container.get("logConfiguration") or {}
        options = config.get("options") or {}
        if config.get("logDriver") != "awslogs":
            return
        group = options["awslogs-group"]
        stream = f"{options.get('awslogs-stream-prefix', 'ecs')}/{container['name']}/{run.task.id}"
        with translate_errors(f"awslogs: log group {group} (failed to validate logger args)"):
            self._logs.create_log_stream(logGroupName=group, logStreamName=stream)
        run.task.log_group, run.task.log_stream = group, stream

    def _pump(self, run: _Run) -> None:
        proc = run.proc
        assert proc is not None
        assert proc.stdout is not None
        stream: IO[bytes] = proc.stdout
        group = getattr(run.task, "log_group", None)
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            if self.echo is not None:
                self.echo(f"[{run.task.id[:8]}] {line}")
            if group is not None:
                try:
                    with translate_errors("awslogs: PutLogEvents"):
                        self._logs.put_log_events(
                            logGroupName=group, logStreamName=run.task.log_stream,
                            logEvents=[{"timestamp": int(time.time() * 1000),
                                        "message": line or " "}])
                except CloudError:
                    group = None  # the emulator was reset under this task: stop logging
        stream.close()
        code = proc.wait()
        self._finalize(run, code if code >= 0 else 128 - code, None, None)

    def _finalize(self, run: _Run, exit_code: int | None, stop_code: str | None,
                  reason: str | None) -> None:
        """Record how the task ended on moto's task, STOPPED last."""
        with self._lock:
            task = run.task
            now = _now()
            if stop_code is None:
                if run.stop_reason is not None:
                    stop_code, reason = run.stop_code or "UserInitiated", run.stop_reason
                else:
                    stop_code, reason = "EssentialContainerExited", \
                        "Essential container in task exited"
            container = task.containers[0]
            container.exitCode = exit_code
            container.reason = run.container_reason
            container.last_status = "STOPPED"
            task.stop_code, task.stopped_reason = stop_code, reason
            task.stopping_at = getattr(task, "stopping_at", None) or now
            task.execution_stopped_at = task.stopped_at = now
            task.desired_status = "STOPPED"
            task.last_status = "STOPPED"
            run.kill_at = None
            self._agent.unregister(task.id)
            if run.home:
                shutil.rmtree(run.home, ignore_errors=True)
            run.done.set()

    @staticmethod
    def _signal(run: _Run, sig: int) -> None:
        if run.proc is None or run.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.proc.pid, sig)
