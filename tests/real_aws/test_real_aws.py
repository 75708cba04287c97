"""End to end on one AWS account: yours with ``STARBURST_TEST_REAL_AWS=1``, else emulated.

On a real account (after ``starburst setup``; the smallest sizes, each
session capped with ``max_cost``) they check what the emulator cannot:
real images, real capacity providers, real stop codes, real billing
timestamps, IAM's own policy evaluation, and that nothing is left running.
By default they run on :func:`starburst.testing.emulated_aws` instead (see
``conftest.py``), which keeps them correct. Both ways they confirm what
AWS does and moto alone does not (issue #19); on the emulator each test
also asserts that the emulator served that behaviour (a counter moved):

* DescribeTasks answers MISSING for a task just launched, DescribeJobs
  leaves out a job just submitted: no worker is taken for gone or
  replaced, and every one is stopped at the end;
* an IAM Identity Center (SSO) user writes the run prefix under the bucket
  policy setup wrote (``aws:PrincipalArn`` carries the role's path
  ``aws-reserved/sso.amazonaws.com/``); on a real account it runs for an
  SSO caller only (``aws sso login``), after that user ran ``starburst setup``;
* a fresh account: ECS's service-linked role is created, and roles IAM has
  not propagated yet are waited for (a real account shows the refusals only
  when fresh: run ``starburst setup`` right before, or set
  ``STARBURST_TEST_REAL_SETUP=1`` on a fresh or spare account so the test
  runs ``setup --yes`` itself);
* the environment image reaches ECR whole: ECR keeps only the first PATCH
  of a blob upload (on the emulator, a proxy in front of Debian's
  ``docker-registry`` answers as ECR does; without it the test skips). Each
  real run pushes a new image of about 20 MiB (``starburst env prune``
  deletes old ones);
* Graviton (arm64) runs on Fargate Spot.

The GPU test needs ``STARBURST_TEST_REAL_GPU=1`` too on a real account (a
g4dn.xlarge bills about $0.53/h and starts in minutes). The fresh-account
test reads IAM (``iam:ListRoles``), the SSO one ``iam:GetRole`` on the caller's role.

    STARBURST_TEST_REAL_AWS=1 .venv/bin/pytest -n 0 tests/real_aws
    .venv/bin/pytest -n 0 tests/real_aws          # the same tests on emulated_aws()
"""

from __future__ import annotations

import importlib.metadata
import json
import operator
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from _account import Account
from _support import make_wheel, real_aws, wait_for
from click.testing import CliRunner

import starburst
from starburst.aws.clients import client
from starburst.aws.config import load_config
from starburst.aws.consistency import describe_tasks
from starburst.aws.provision import SESSION_TAG
from starburst.backends import _environment
from starburst.cli import main
from starburst.envsync.resolve import IndexOptions
from starburst.envsync.snapshot import Snapshot
from starburst.envsync.target import Target

pytestmark = [pytest.mark.aws, pytest.mark.slow,
              pytest.mark.timeout(1800 if real_aws() else 300)]

_SMALL: dict[str, Any] = {"cpu": 0.25, "memory": "0.5GB", "workers": 2, "max_cost": 0.50,
                          "progress": False}


def _run_and_check(account: Account, **options: Any) -> starburst.Executor:
    with starburst.Executor(backend="fargate", **{**_SMALL, **account.options, **options}) as ex:
        assert list(ex.map(operator.mul, range(40), range(40))) == [i * i for i in range(40)]
    report = ex.cost()
    assert report.computed > 0  # priced from the tasks' own start and stop times
    _nothing_left(ex.session_id)
    return ex


def _nothing_left(session: str) -> None:
    """No task, job or queue of the session is left (cleanup has nothing to do)."""
    result = CliRunner().invoke(main, ["cleanup", session, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "Nothing to clean up" in result.output, result.output


def _session_tasks(session: str) -> list[Any]:
    """The session's stopped ECS tasks (described, with tags)."""
    ecs = client("ecs")
    cluster = load_config().cluster

    def found() -> list[Any]:
        # Not startedBy= too: ListTasks takes it only as the one filter.
        arns = [arn for page in ecs.get_paginator("list_tasks").paginate(
            cluster=cluster, desiredStatus="STOPPED") for arn in page["taskArns"]]
        return [t for t in describe_tasks(ecs, cluster, arns, tags=True)
                if {"key": SESSION_TAG, "value": session} in t.get("tags", [])]

    return wait_for(found, timeout=60, what=f"the stopped tasks of {session}")


def test_fargate_runs_a_map_and_leaves_nothing_running(account: Account) -> None:
    # Every worker is unknown to DescribeTasks right after launch (MISSING): none
    # is taken for gone, so none is replaced.
    with account.serves("missing_served"):
        ex = _run_and_check(account)
    assert ex.status().workers_launched == _SMALL["workers"]


def test_fargate_spot_runs_a_map(account: Account) -> None:
    _run_and_check(account, spot="prefer")


def test_graviton_runs_a_map_from_an_arm64_image(account: Account) -> None:
    ex = _run_and_check(account, platform="arm64", cpu=0.25)
    assert ex.status().tasks_done == 40


def test_graviton_runs_on_fargate_spot(account: Account) -> None:
    # Fargate Spot supports ARM64 since 2024 (platform version 1.4.0).
    ex = _run_and_check(account, platform="arm64", cpu=0.25, spot="require")
    assert ex.status().tasks_done == 40
    tasks = _session_tasks(ex.session_id)
    assert {t.get("capacityProviderName") for t in tasks} == {"FARGATE_SPOT"}
    ecs = client("ecs")
    assert {ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"][
        "runtimePlatform"]["cpuArchitecture"]
        for arn in {t["taskDefinitionArn"] for t in tasks}} == {"ARM64"}


def test_a_gpu_worker_sees_its_gpu(account: Account) -> None:
    if account.real and os.environ.get("STARBURST_TEST_REAL_GPU") != "1":
        pytest.skip("a GPU instance costs ~$0.53/h: set STARBURST_TEST_REAL_GPU=1 too")
    # The job is unknown to DescribeJobs right after it is submitted: it is not
    # taken for gone, so no second one is submitted.
    with account.serves("missing_served"), starburst.Executor(
            backend="fargate", gpu="nvidia-t4", workers=1, max_cost=1.00, progress=False,
            **account.options) as ex:
        listed = ex.submit(subprocess.getoutput, "nvidia-smi -L").result(timeout=1500)
    if account.real:  # the emulator's jobs run on this machine, without a GPU
        assert "Tesla T4" in listed
    assert ex.status().workers_launched == 1
    _nothing_left(ex.session_id)


#: The service-linked role ECS needs to run tasks (AWS's own name and path).
_ECS_LINKED_ROLE = "AWSServiceRoleForECS"
_ECS_LINKED_PATH = "/aws-service-role/ecs.amazonaws.com/"


def test_a_fresh_account_runs_its_first_map_right_after_setup(account: Account) -> None:
    iam = client("iam")
    if not account.real:  # an account that never used ECS
        for role in iam.list_roles(PathPrefix=_ECS_LINKED_PATH)["Roles"]:
            iam.delete_role(RoleName=role["RoleName"])
    with account.serves("service_linked_refusals", "propagation_refusals"):
        account.setup()
        if not account.real:  # IAM has not propagated the roles setup left yet
            account.roles_propagate_in(1.0)
        _run_and_check(account)
    linked = iam.list_roles(PathPrefix=_ECS_LINKED_PATH)["Roles"]
    # moto spells the name AWSServiceRoleForecs.
    assert [r["RoleName"].lower() for r in linked] == [_ECS_LINKED_ROLE.lower()]


#: An IAM Identity Center role as AWS names it: under aws-reserved/sso.amazonaws.com/.
_SSO_ROLE = "AWSReservedSSO_AdministratorAccess_0123456789abcdef"
_SSO_PATH = "/aws-reserved/sso.amazonaws.com/"
_ADMINISTRATOR = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def _identity_center_user(account: Account) -> str:
    """The ARN of the IAM role of the IAM Identity Center (SSO) user the test runs as.

    On a real account, the caller's own (skipped unless it is an SSO user).
    On the emulator, a user signs in: a role with administrator access under
    the SSO path is assumed and its credentials put in the environment.
    """
    sts = client("sts")
    if account.real:
        caller = sts.get_caller_identity()["Arn"]
        if ":assumed-role/AWSReservedSSO_" not in caller:
            pytest.skip(f"the caller {caller} is not an IAM Identity Center (SSO) user: run "
                        "it signed in with `aws sso login` (AWS_PROFILE=<your SSO profile>)")
        name = caller.split(":assumed-role/", 1)[1].split("/", 1)[0]
        return str(client("iam").get_role(RoleName=name)["Role"]["Arn"])
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Federated": "arn:aws:iam::123456789012:saml-provider/"
                                                      "AWSSSO_0123456789abcdef_DO_NOT_DELETE"},
        "Action": ["sts:AssumeRoleWithSAML", "sts:TagSession"]}]}
    iam = client("iam")
    role = iam.create_role(RoleName=_SSO_ROLE, Path=_SSO_PATH,
                           AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    iam.put_role_policy(RoleName=_SSO_ROLE, PolicyName="AdministratorAccess",
                        PolicyDocument=json.dumps(_ADMINISTRATOR))
    creds = sts.assume_role(RoleArn=role["Arn"],
                            RoleSessionName="someone@example.com")["Credentials"]
    account.monkeypatch.setenv("AWS_ACCESS_KEY_ID", creds["AccessKeyId"])
    account.monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", creds["SecretAccessKey"])
    account.monkeypatch.setenv("AWS_SESSION_TOKEN", creds["SessionToken"])
    assert client("sts").get_caller_identity()["Arn"].endswith(
        f":assumed-role/{_SSO_ROLE}/someone@example.com")
    return str(role["Arn"])


def test_an_identity_center_user_writes_the_run_prefix(account: Account) -> None:
    role = _identity_center_user(account)
    assert "/aws-reserved/sso.amazonaws.com/" in role  # its aws:PrincipalArn has the path
    account.setup()  # the bucket policy's writers: the task roles and this user
    ex = _run_and_check(account)  # the client writes the payloads under the run prefix
    if not account.real:  # the audit held each write to the bucket policy, as IAM does
        config = load_config()
        run_prefix = f"arn:aws:s3:::{config.bucket}/{config.prefix.strip('/')}/"
        writes = [c for c in account.emulated.audit.calls(principal=role)
                  if c.action == "s3:PutObject" and c.resource.startswith(run_prefix)]
        assert writes
        assert all(c.decision is not None and c.decision.allowed for c in writes)
    assert ex.status().tasks_done == 40


#: The probe package's incompressible payload: over one 16 MiB PATCH read
#: (envsync.registry.DEFAULT_CHUNK_BYTES), so a chunked upload would send two.
_PAYLOAD_BYTES = 20 * 1024 * 1024


def test_the_environment_image_reaches_ecr_whole(account: Account, tmp_path: Path) -> None:
    if not account.real and account.emulated.ecr is None:
        pytest.skip("the emulated ECR needs the distribution registry "
                    "(apt-get install docker-registry)")
    # A new package version each run: a new environment, so its image is built and
    # pushed whatever an earlier run left in the repository.
    version = f"1.0.{time.time_ns()}"
    make_wheel(tmp_path / "wheels", "starburst-ecr-probe", version, {
        "starburst_ecr_probe/__init__.py": b"",
        "starburst_ecr_probe/payload.bin": os.urandom(_PAYLOAD_BYTES)})
    monkeypatch = account.monkeypatch
    monkeypatch.setenv("STARBURST_CACHE_DIR", str(tmp_path / "cache"))  # nothing left behind
    reports: list[Any] = []
    original = _environment.ensure_environment

    def spy(*args: Any, **kwargs: Any) -> Any:
        reports.append(original(*args, **kwargs))
        return reports[-1]

    monkeypatch.setattr(_environment, "ensure_environment", spy)
    wheels = str(tmp_path / "wheels")
    if account.real:  # this interpreter's packages from PyPI, the probe from the wheel
        env: dict[str, Any] = {"index": IndexOptions(find_links=(wheels,))}
    else:  # offline: only the probe (the emulated worker has the host's packages too)
        monkeypatch.setenv("UV_OFFLINE", "1")
        env = {"snapshot": Snapshot(target=Target.of("x86_64"), distributions=()),
               "index": IndexOptions(find_links=(wheels,), no_index=True)}
    ecr = None if account.real else account.emulated.ecr
    before = (ecr.patches_forwarded, ecr.patches_discarded) if ecr else (0, 0)
    with starburst.Executor(backend="fargate", env="auto", workers=1, max_cost=0.50,
                            packages=[f"starburst-ecr-probe=={version}"], progress=False,
                            **env, **account.options) as ex:
        seen = ex.submit(importlib.metadata.version, "starburst-ecr-probe").result(timeout=1500)
    assert seen == version  # the worker runs from the image the probe is in
    [report] = reports
    assert report.built
    assert report.bytes_uploaded > _PAYLOAD_BYTES
    if ecr is not None:  # the blobs went up through the ECR rule, each in one PATCH
        assert ecr.patches_forwarded > before[0]
        assert ecr.patches_discarded == before[1]
    _nothing_left(ex.session_id)
