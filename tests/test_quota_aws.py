"""Reading the Fargate vCPU quota and what runs, against a moto server on 127.0.0.1.

ECS is moto's own: clusters, task definitions and Fargate tasks (On-Demand
and Spot) are created through the API, and :func:`vcpus_in_use` lists and
describes them as it would in an account.

Service Quotas in moto knows only the ``vpc`` service and has no
GetAWSDefaultServiceQuota, RequestServiceQuotaIncrease or
ListRequestedServiceQuotaChangeHistory. The route taken here (DESIGN.md
§5: "patch moto's backend in process") is :class:`FargateQuotas`: while a
test runs, it teaches moto's in-process Service Quotas handler the
``fargate`` quotas and those three operations, answering with the shapes
of botocore's service model. So the calls go over HTTP, signed, through
boto3's serializer and parser, exactly as starburst makes them; what is
*not* proven is AWS's own behaviour (the quota values, when a request
changes state): those are this fake's, stated here.

The moto server is this module's own (127.0.0.1, a free port). Its tasks
live in :data:`REGION`, away from the region of the AWS suite's emulator
(whose task runner would otherwise try to run them), and only that
region's ECS backend is reset between tests.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from _support import private_moto_server
from click.testing import CliRunner
from moto.backends import get_backend
from moto.core.exceptions import JsonRESTError
from moto.servicequotas.models import ServiceQuotasBackend
from moto.servicequotas.responses import ServiceQuotasResponse

from starburst.aws import quota as aws_quota
from starburst.cli import main
from starburst.exceptions import CloudError, ConfigurationError

REGION = "eu-west-3"
ACCOUNT = "123456789012"  # moto's default account
ON_DEMAND, SPOT = "L-3032A538", "L-36FBB829"


class FargateQuotas:
    """The fake Fargate side of Service Quotas, installed into moto for one test.

    Attributes:
        applied: quota code -> applied value (GetServiceQuota answers
            NoSuchResourceException for a code without one, as AWS does
            for quotas never changed).
        defaults: quota code -> AWS default value.
        denied: answer AccessDeniedException to every fargate call.
        requests: increase requests made, newest last.
    """

    def __init__(self) -> None:
        self.applied: dict[str, float] = {ON_DEMAND: 500.0}
        self.defaults: dict[str, float] = {ON_DEMAND: 6.0, SPOT: 6.0}
        self.denied = False
        self.requests: list[dict[str, Any]] = []

    def _quota(self, code: str, value: float) -> dict[str, Any]:
        name = ("Fargate On-Demand vCPU resource count" if code == ON_DEMAND
                else "Fargate Spot vCPU resource count")
        return {"ServiceCode": "fargate", "ServiceName": "AWS Fargate", "QuotaCode": code,
                "QuotaName": name, "Value": value, "Unit": "None", "Adjustable": True,
                "GlobalQuota": False,
                "QuotaArn": f"arn:aws:servicequotas:{REGION}:{ACCOUNT}:fargate/{code}"}

    def _check(self) -> None:
        if self.denied:
            raise JsonRESTError("AccessDeniedException",
                                "User is not authorized to perform servicequotas:*")

    def get(self, code: str) -> dict[str, Any]:
        self._check()
        if code not in self.applied:
            raise JsonRESTError("NoSuchResourceException", f"no applied quota {code}")
        return self._quota(code, self.applied[code])

    def get_default(self, code: str) -> dict[str, Any]:
        self._check()
        if code not in self.defaults:
            raise JsonRESTError("NoSuchResourceException", f"no quota {code}")
        return self._quota(code, self.defaults[code])

    def request(self, code: str, desired: float) -> dict[str, Any]:
        self._check()
        if any(r["QuotaCode"] == code and r["Status"] in ("PENDING", "CASE_OPENED")
               for r in self.requests):
            raise JsonRESTError("ResourceAlreadyExistsException",
                                "A request for this quota is already open")
        made = {"Id": uuid.uuid4().hex, "ServiceCode": "fargate", "ServiceName": "AWS Fargate",
                "QuotaCode": code, "QuotaName": self._quota(code, 0)["QuotaName"],
                "DesiredValue": desired, "Status": "PENDING",
                "Created": datetime.now(UTC).timestamp(), "Requester": "testing",
                "QuotaArn": self._quota(code, 0)["QuotaArn"], "GlobalQuota": False,
                "Unit": "None"}
        self.requests.append(made)
        return made

    def history(self) -> list[dict[str, Any]]:
        self._check()
        return list(self.requests)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        fake = self
        original = ServiceQuotasBackend.get_service_quota

        def get_service_quota(backend: Any, service_code: str,
                              quota_code: str) -> dict[str, Any]:
            if service_code == "fargate":
                return fake.get(quota_code)
            return original(backend, service_code, quota_code)

        def params(response: Any) -> dict[str, Any]:
            return json.loads(response.body or "{}")  # type: ignore[no-any-return]

        def get_aws_default_service_quota(response: Any) -> str:
            p = params(response)
            return json.dumps({"Quota": fake.get_default(p["QuotaCode"])})

        def request_service_quota_increase(response: Any) -> str:
            p = params(response)
            return json.dumps({"RequestedQuota": fake.request(p["QuotaCode"],
                                                              float(p["DesiredValue"]))})

        def list_requested_service_quota_change_history(response: Any) -> str:
            p = params(response)
            rows = fake.history() if p.get("ServiceCode") == "fargate" else []
            return json.dumps({"RequestedQuotas": rows})

        monkeypatch.setattr(ServiceQuotasBackend, "get_service_quota", get_service_quota)
        for fn in (get_aws_default_service_quota, request_service_quota_increase,
                   list_requested_service_quota_change_history):
            monkeypatch.setattr(ServiceQuotasResponse, fn.__name__, fn, raising=False)


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with private_moto_server() as url:
        # DescribeTasks must not move tasks toward STOPPED (moto's default does).
        request = urllib.request.Request(
            f"{url}/moto-api/state-manager/set-transition", method="POST",
            data=json.dumps({"model_name": "ecs::task", "transition": {
                "progression": "manual", "times": 1_000_000}}).encode())
        with urllib.request.urlopen(request, timeout=30) as answer:
            answer.read()
        yield url


@pytest.fixture
def quotas(moto_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> FargateQuotas:
    """Environment pointing at the moto server; a fresh ECS region; the fake quotas."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_ENDPOINT_URL": moto_url, "AWS_REGION": REGION,
                        "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
                        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws-credentials"),
                        "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    get_backend("ecs")[ACCOUNT][REGION].reset()
    fake = FargateQuotas()
    fake.install(monkeypatch)
    return fake


class Account:
    """Creates Fargate tasks in the moto account."""

    def __init__(self, url: str) -> None:
        self.ecs = boto3.client("ecs", region_name=REGION, endpoint_url=url)
        iam = boto3.client("iam", region_name=REGION, endpoint_url=url)
        with contextlib.suppress(iam.exceptions.InvalidInputException,
                                 iam.exceptions.EntityAlreadyExistsException):
            iam.create_service_linked_role(AWSServiceName="ecs.amazonaws.com")
        ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=url)
        self.net = {"awsvpcConfiguration": {
            "subnets": [ec2.describe_subnets()["Subnets"][0]["SubnetId"]],
            "securityGroups": [ec2.describe_security_groups()["SecurityGroups"][0]["GroupId"]]}}

    def _run_task(self, **kwargs: Any) -> Any:
        """RunTask, waiting out the service-linked role's propagation: moto's state is
        process-wide, so an emulated AWS in this process applies its rules here too."""
        deadline = time.monotonic() + 10
        while True:
            try:
                return self.ecs.run_task(**kwargs)
            except self.ecs.exceptions.ClientException as exc:
                if "service linked role" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def definition(self, cpu: int) -> str:
        return self.ecs.register_task_definition(
            family=f"f{cpu}", cpu=str(cpu), memory=str(cpu * 2), networkMode="awsvpc",
            requiresCompatibilities=["FARGATE"],
            containerDefinitions=[{"name": "c", "image": "python:3.11-slim",
                                   "memoryReservation": 128}],
        )["taskDefinition"]["taskDefinitionArn"]

    def run(self, cluster: str, cpu: int, count: int, *, spot: bool = False) -> list[str]:
        self.ecs.create_cluster(clusterName=cluster)
        kind: dict[str, Any] = (
            {"capacityProviderStrategy": [{"capacityProvider": "FARGATE_SPOT"}]} if spot
            else {"launchType": "FARGATE"})
        arns: list[str] = []
        while len(arns) < count:
            tasks = self._run_task(cluster=cluster, taskDefinition=self.definition(cpu),
                                   count=min(10, count - len(arns)),
                                   networkConfiguration=self.net, **kind)["tasks"]
            arns.extend(t["taskArn"] for t in tasks)
        return arns


@pytest.fixture
def account(quotas: FargateQuotas, moto_url: str) -> Account:
    return Account(moto_url)


# -- the quota -----------------------------------------------------------------


def test_read_quota_applied_default_and_spot(quotas: FargateQuotas) -> None:
    assert aws_quota.read_quota(region=REGION) == 500.0
    # No Spot value applied: AWS's default answers.
    assert aws_quota.read_quota(region=REGION, spot=True) == 6.0
    quotas.applied[SPOT] = 40.0
    assert aws_quota.read_quota(region=REGION, spot=True) == 40.0


def test_read_quota_takes_a_boto3_session(quotas: FargateQuotas) -> None:
    session = boto3.session.Session(region_name=REGION)
    assert aws_quota.read_quota(session, REGION) == 500.0


def test_access_denied_is_none_and_said(quotas: FargateQuotas,
                                        caplog: pytest.LogCaptureFixture) -> None:
    quotas.denied = True
    with caplog.at_level(logging.WARNING, logger="starburst"):
        assert aws_quota.read_quota(region=REGION) is None
    assert "cannot read the Fargate vCPU quota" in caplog.text
    status = aws_quota.read_plan(100, 4, region=REGION)
    assert status.quota_vcpu is None
    assert status.plan.workers == 100
    assert "could not be read" in status.plan.message()


def test_other_errors_are_translated(quotas: FargateQuotas) -> None:
    quotas.applied.clear()
    quotas.defaults.clear()
    with pytest.raises(CloudError, match="NoSuchResourceException"):
        aws_quota.read_quota(region=REGION)


def test_the_quota_variables_replace_the_read_for_every_caller(
        quotas: FargateQuotas, monkeypatch: pytest.MonkeyPatch) -> None:
    """STARBURST_VCPU_QUOTA / STARBURST_SPOT_VCPU_QUOTA answer without asking AWS, for the
    Executor, `doctor` and `quota` alike (one reader); a bad value is a clear error."""
    quotas.denied = True  # any Service Quotas call would answer None, not the variable
    monkeypatch.setenv("STARBURST_VCPU_QUOTA", "64")
    monkeypatch.setenv("STARBURST_SPOT_VCPU_QUOTA", "32")
    assert aws_quota.read_quota_from(region=REGION) == (64.0, "STARBURST_VCPU_QUOTA")
    assert aws_quota.read_quota(region=REGION, spot=True) == 32.0
    status = aws_quota.read_plan(100, 1, region=REGION)
    assert (status.quota_vcpu, status.read_from, status.plan.workers) == (
        64.0, "STARBURST_VCPU_QUOTA", 64)
    monkeypatch.setenv("STARBURST_VCPU_QUOTA", "lots")
    with pytest.raises(ConfigurationError, match=r"STARBURST_VCPU_QUOTA='lots' is not a "
                                                 r"number of vCPUs.*unset it"):
        aws_quota.read_quota(region=REGION)


# -- what runs -------------------------------------------------------------------


def test_vcpus_in_use_counts_fargate_tasks_in_every_cluster(account: Account) -> None:
    assert aws_quota.vcpus_in_use(region=REGION) == 0.0
    account.run("one", 1024, 3)
    four = account.run("two", 4096, 2)
    account.run("two", 2048, 1, spot=True)
    account.ecs.stop_task(cluster="two", task=four[1], reason="test")  # stopped: not counted
    # A task description carries its own cpu on AWS; moto's leaves it out (then the
    # task definition's counts). Give one task its own, different, value.
    first = next(iter(get_backend("ecs")[ACCOUNT][REGION].tasks["one"].values()))
    first.cpu = "512"
    assert aws_quota.vcpus_in_use(region=REGION) == pytest.approx(0.5 + 1 + 1 + 4)
    assert aws_quota.vcpus_in_use(region=REGION, spot=True) == pytest.approx(2.0)


def test_vcpus_in_use_describes_in_batches_of_100(account: Account) -> None:
    account.run("big", 256, 105)
    clients = aws_quota.QuotaClients.create(None, REGION)
    calls: list[int] = []
    clients.ecs.meta.events.register(
        "before-parameter-build.ecs.DescribeTasks",
        lambda params, **_: calls.append(len(params["tasks"])))
    assert aws_quota.vcpus_in_use(clients, REGION) == pytest.approx(105 * 0.25)
    assert calls == [100, 5]


def test_read_plan_fits_workers_into_the_free_quota(quotas: FargateQuotas,
                                                    account: Account) -> None:
    quotas.applied[ON_DEMAND] = 100.0
    account.run("busy", 4096, 3)
    status = aws_quota.read_plan(100, 4, region=REGION)
    assert (status.quota_vcpu, status.in_use_vcpu) == (100.0, 12.0)
    assert status.plan.workers == 22
    assert status.plan.waves == 5
    assert status.plan.message().startswith("Quota allows 22 workers of 4 vCPU (100 vCPU, "
                                            "12 in use)")


# -- increases ---------------------------------------------------------------------


def test_request_increase_and_list_requests(quotas: FargateQuotas) -> None:
    assert aws_quota.quota_requests(region=REGION) == []
    made = aws_quota.request_increase(450, region=REGION)
    assert (made.quota_code, made.desired, made.status, made.open) == (ON_DEMAND, 450.0,
                                                                       "PENDING", True)
    assert quotas.requests[0]["DesiredValue"] == 450.0
    with pytest.raises(CloudError, match="ResourceAlreadyExistsException"):
        aws_quota.request_increase(500, region=REGION)
    spot = aws_quota.request_increase(100, region=REGION, spot=True)
    assert spot.quota_code == SPOT
    listed = aws_quota.quota_requests(region=REGION)
    assert [r.id for r in listed] == [made.id]  # the On-Demand quota's only
    assert listed[0].created is not None
    quotas.requests[0]["Status"] = "APPROVED"
    assert not aws_quota.quota_requests(region=REGION)[0].open


# -- the command ---------------------------------------------------------------------


def test_quota_command(quotas: FargateQuotas, account: Account) -> None:
    quotas.applied[ON_DEMAND] = 100.0
    account.run("busy", 4096, 3)
    runner = CliRunner()
    result = runner.invoke(main, ["quota", "--cpu", "4", "--workers", "100"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == (f"Fargate On-Demand vCPU quota in {REGION} (L-3032A538): 100 vCPU; "
                        "in use: 12 vCPU.")
    assert lines[1].startswith("Quota allows 22 workers of 4 vCPU")
    assert lines[2] == (f"To run 100 workers at once, ask for 450 vCPU: starburst quota "
                        f"--region {REGION} --cpu 4 --workers 100 --request")
    assert lines[3] == "No increase requests for this quota."

    asked = runner.invoke(main, ["quota", "--cpu", "4", "--workers", "100", "--request"])
    assert asked.exit_code == 0, asked.output
    assert "Requested On-Demand vCPU quota 450" in asked.output
    assert "Open increase request" in asked.output
    assert "450 vCPU, PENDING" in asked.output

    data = json.loads(runner.invoke(main, ["quota", "--cpu", "4", "--workers", "10",
                                           "--json"]).output)
    assert data["quota_vcpu"] == 100.0
    assert data["workers_fit"] == 10
    assert data["message"] == ""
    assert [r["status"] for r in data["requests"]] == ["PENDING"]

    lower = runner.invoke(main, ["quota", "--request", "50"])
    assert lower.exit_code == 1
    assert "already 100 vCPU" in lower.output


def test_quota_command_without_permission(quotas: FargateQuotas) -> None:
    quotas.denied = True
    result = CliRunner().invoke(main, ["quota", "--region", REGION, "--spot"])
    assert result.exit_code == 0, result.output
    assert "Fargate Spot vCPU quota in eu-west-3 (L-36FBB829): unknown" in result.output
    assert "could not be read" in result.output
    assert "Increase requests could not be listed" in result.output
