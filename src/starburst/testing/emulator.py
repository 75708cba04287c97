"""``emulated_aws()``: the whole Fargate path on this machine, no AWS account.

::

    with starburst.testing.emulated_aws() as aws:
        with starburst.Executor(backend="fargate", workers=2) as ex:
            print(list(ex.map(abs, range(-5, 5))))

Inside the block:

* a moto server (S3, SQS, ECS, ECR, Logs, IAM, EC2, STS and the rest of
  moto) listens on 127.0.0.1 and a free port, in this process;
* the environment points every AWS client at it: ``AWS_ENDPOINT_URL``,
  fake credentials, ``AWS_REGION``; the developer's profile, config files
  and per-service endpoints are hidden; ``STARBURST_CONFIG`` names a
  config file that sets ``image`` (the emulated runner uses the host
  interpreter whatever the image says);
* moto's ECS tasks are set to manual state progression with a huge step
  count, so only the task runner moves them;
* the shared resources of a run are provisioned (:mod:`starburst.aws.provision`);
* with ``registry=True``, the account's ECR is a distribution registry
  behind a proxy that keeps only the first PATCH of a blob upload, as ECR
  does (:class:`~starburst.testing.ecr_proxy.EcrLikeProxy`);
* an :class:`~starburst.testing.task_runner.EcsTaskRunner` runs every
  RunTask'd task as a local worker process;
* a :class:`~starburst.testing.batch_runner.BatchJobRunner` runs every
  submitted AWS Batch job (GPU workers) the same way, and moto's Batch jobs
  are set to manual state progression so only it moves them;
* AWS rules moto lacks are applied (:class:`~starburst.testing.strict.StrictRules`:
  DescribeTasks/DescribeJobs do not know a task or job for a while after
  launch, GetLogEvents returns empty pages before a stream's events, S3
  lifecycle rules expire objects, time-scaled, and more);
* every request is recorded and a worker's S3, SQS and KMS requests are
  held to its role's policies (:class:`~starburst.testing.audit.Audit`,
  ``aws.audit``);
* the Fargate Spot and EC2 GPU vCPU quotas are injected
  (``STARBURST_SPOT_VCPU_QUOTA``, ``STARBURST_GPU_VCPU_QUOTA``), as
  the Fargate one is (``STARBURST_VCPU_QUOTA``).

On exit, worker processes are killed, moto's state is reset, the server
stops and the environment is restored. ``aws.reset()`` gives a test a
clean slate (moto reset, then provisioning again) without a new server.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from moto.server import ThreadedMotoServer

from ..aws.config import load_config
from ..aws.provision import Shared, ensure_shared
from .audit import Audit
from .batch_runner import BatchJobRunner
from .ecr_proxy import EcrLikeProxy
from .strict import StrictRules
from .task_runner import DEFAULT_STOP_TIMEOUT, EcsTaskRunner

__all__ = ["EmulatedAws", "emulated_aws"]

#: moto's ECS tasks advance one state per this many DescribeTasks calls
#: (manual progression); a million means never, leaving it to the runner.
_NEVER = 1_000_000
#: The image named in the emulator's config file. The runner runs the host
#: interpreter; this names what a real image would have to match.
EMULATED_IMAGE = f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"
_FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


class EmulatedAws:
    """A running emulated AWS: its endpoint, task runner and provisioned resources.

    Attributes:
        endpoint: the moto server URL (``http://127.0.0.1:<port>``).
        region: the emulated region.
        runner: the ECS task runner (``pids()``, ``kill()``, ``wait_stopped()``).
        batch: the Batch job runner (``pids()``, ``kill()``, ``wait_done()``).
        shared: the provisioned shared resources (bucket, cluster, network...).
        config_path: the starburst config file the environment points to.
        rules: the AWS rules applied on top of moto, with their counters.
        ecr: with ``registry=True``, the proxy that answers blob uploads as ECR
            does (``patches_discarded``), in front of the account's registry.
        audit: every request recorded, workers' S3/SQS/KMS ones enforced
            (:class:`~starburst.testing.audit.Audit`).
    """

    def __init__(self, *, endpoint: str, region: str, runner: EcsTaskRunner,
                 config_path: Path, batch: BatchJobRunner | None = None,
                 rules: StrictRules | None = None, ecr: EcrLikeProxy | None = None,
                 audit: Audit | None = None) -> None:
        self.endpoint = endpoint
        self.ecr = ecr
        self.audit = audit or Audit(enforce=False)
        self.rules = rules or StrictRules(describe_missing_s=0, empty_log_pages=0)
        self.region = region
        self.runner = runner
        self.batch = batch
        self.config_path = config_path
        self.shared = self.provision()

    def _post(self, path: str, body: dict[str, object] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        request = urllib.request.Request(f"{self.endpoint}{path}", data=data, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    def configure_tasks(self) -> None:
        """Let only the runners move ECS tasks and Batch jobs between states."""
        for model in ("ecs::task", "batch::job"):
            self._post("/moto-api/state-manager/set-transition", {
                "model_name": model,
                "transition": {"progression": "manual", "times": _NEVER}})

    def provision(self) -> Shared:
        """Create what a run needs (idempotent) and return it."""
        self.configure_tasks()
        self.shared = ensure_shared(load_config())
        return self.shared

    def reset(self) -> None:
        """Kill every task and job, wipe moto's state, provision again."""
        self.runner.kill_all()
        if self.batch is not None:
            self.batch.kill_all()
        self._post("/moto-api/reset")
        self.rules.reset()
        self.provision()
        self.audit.reset()


#: The Fargate On-Demand vCPU quota the emulated account has.
EMULATED_VCPU_QUOTA = 1000
#: The EC2 GPU (G/P, On-Demand and Spot) vCPU quota the emulated account has:
#: 16 g4dn.xlarge instances.
EMULATED_GPU_VCPU_QUOTA = 64


def _swap_environment(updates: dict[str, str | None]) -> dict[str, str | None]:
    """Apply ``updates`` (None removes); return what restores the previous state."""
    previous = {name: os.environ.get(name) for name in updates}
    for name, value in updates.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    return previous


def _start_registries(home: Path, stack: contextlib.ExitStack,
                      proxies: list[EcrLikeProxy]) -> dict[str, str]:
    """Start the emulated ECR and a public registry holding a synthetic base image.

    The ECR stand-in is a distribution registry behind Basic auth with user
    ``AWS`` and the password moto's ``GetAuthorizationToken`` decodes to,
    so starburst's ECR auth works unchanged; the synthetic
    ``python:3.X-slim`` lives in a second, anonymous registry (nothing is
    downloaded). Returns the environment that points starburst at them.
    """
    from ..aws.clients import client
    from ..envsync.registry import Registry
    from .registry import LocalRegistry, push_synthetic_base, registry_binary

    if registry_binary() is None:
        raise RuntimeError("emulated_aws(registry=True) needs the distribution registry: "
                           "apt-get install docker-registry")
    ecr = client("ecr")
    try:
        token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    finally:
        ecr.close()
    user, _, password = base64.b64decode(token).decode().partition(":")
    registry = stack.enter_context(LocalRegistry(home / "ecr-registry", user=user,
                                                 password=password))
    # ECR keeps only the first PATCH of an upload: the proxy answers as it does.
    server = stack.enter_context(EcrLikeProxy(registry.url))
    public = stack.enter_context(LocalRegistry(home / "public-registry"))
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    with Registry(public.url) as source:
        push_synthetic_base(source, python=python)
    proxies.append(server)
    return {"STARBURST_REGISTRY_URL": server.url,
            "STARBURST_BASE_IMAGE": f"{public.host}/library/python:{python}-slim"}


@contextmanager
def emulated_aws(*, region: str = "us-east-1", echo: Callable[[str], None] | None = None,
                 stop_timeout: float = DEFAULT_STOP_TIMEOUT, registry: bool = False,
                 isolate: bool = False,
                 rules: StrictRules | None = None,
                 audit: Audit | None = None) -> Iterator[EmulatedAws]:
    """Run an emulated AWS (moto server + ECS and Batch runners) for the duration of the block.

    Args:
        region: the region the environment names.
        echo: receives every line worker processes print (default: discarded;
            it is in the emulated CloudWatch Logs either way).
        stop_timeout: seconds a stopped task gets between SIGTERM and SIGKILL.
        registry: also run a local distribution registry (``docker-registry``)
            as the account's ECR (``STARBURST_REGISTRY_URL``) and a public one
            with a synthetic ``python:3.X-slim`` (``STARBURST_BASE_IMAGE``), so
            ``env="auto"`` builds and pushes images and tasks run from them.
        isolate: tasks run from an image see only the image and the standard
            library (see :class:`~starburst.testing.task_runner.EcsTaskRunner`).
        rules: the AWS rules to apply on top of moto (default: all of them,
            with their default windows); ``StrictRules(describe_missing_s=0)``
            and the like turn one off.
        audit: the request audit (default: record everything and enforce
            workers' S3, SQS and KMS requests against their role's policies);
            ``Audit(enforce=False)`` only records.

    Yields:
        The :class:`EmulatedAws`, for resets and fault injection.
    """
    home = Path(tempfile.mkdtemp(prefix="starburst-emulated-aws-"))
    werkzeug = logging.getLogger("werkzeug")
    werkzeug_level = werkzeug.level
    werkzeug.setLevel(logging.WARNING)  # no line per request on the console
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    config_path = home / "config.toml"
    config_path.write_text(f'image = "{EMULATED_IMAGE}"\n', encoding="utf-8")
    updates: dict[str, str | None] = {
        name: None for name in os.environ
        if name.startswith("AWS_ENDPOINT_URL_") or name in (
            "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN")}
    updates.update({
        **_FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint, "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region, "STARBURST_REGION": None,
        "AWS_CONFIG_FILE": str(home / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"),
        "STARBURST_CONFIG": str(config_path),
        # moto's Service Quotas knows only `vpc`: the Fargate quota is injected
        # (a generous one; tests of quota cuts set their own value).
        "STARBURST_VCPU_QUOTA": str(EMULATED_VCPU_QUOTA),
        "STARBURST_SPOT_VCPU_QUOTA": str(EMULATED_VCPU_QUOTA),
        "STARBURST_GPU_VCPU_QUOTA": str(EMULATED_GPU_VCPU_QUOTA)})
    previous = _swap_environment(updates)
    runner: EcsTaskRunner | None = None
    batch: BatchJobRunner | None = None
    registries = contextlib.ExitStack()
    strict = rules if rules is not None else StrictRules()
    proxies: list[EcrLikeProxy] = []
    recorder = audit if audit is not None else Audit()
    try:
        strict.install()
        recorder.install()
        registry_url: str | None = None
        if registry:
            extra = _start_registries(home, registries, proxies)
            registry_url = extra["STARBURST_REGISTRY_URL"]
            for name, value in _swap_environment(dict(extra)).items():
                previous.setdefault(name, value)
        runner = EcsTaskRunner(region=region, endpoint_url=endpoint, echo=echo,
                               stop_timeout=stop_timeout, registry_url=registry_url,
                               isolate=isolate)
        runner.start()
        batch = BatchJobRunner(ecs=runner, region=region, echo=echo, stop_timeout=stop_timeout)
        batch.start()
        # The runners' own requests (role assumption, awslogs writes) are ECS's,
        # not the user's or a worker's: the audit leaves them out.
        Audit.exempt(runner._logs, runner._sts, batch._logs)
        emulated = EmulatedAws(endpoint=endpoint, region=region, runner=runner,
                               config_path=config_path, batch=batch, rules=strict,
                               ecr=proxies[0] if proxies else None, audit=recorder)
        recorder.reset()  # provisioning is the emulator's setup, not the code under test
        yield emulated
    finally:
        try:
            if batch is not None:
                batch.close()
            if runner is not None:
                runner.close()
            request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
        finally:
            strict.uninstall()
            recorder.uninstall()
            registries.close()
            server.stop()
            _swap_environment(previous)
            werkzeug.setLevel(werkzeug_level)
            shutil.rmtree(home, ignore_errors=True)
