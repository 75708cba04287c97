"""The EC2 GPU vCPU quota: plans, the environment override, and the reads against moto.

A moto server of this module's own plays EC2: GPU instances are started
through the API and :func:`gpu_vcpus_in_use` describes them as it would in
an account. moto's Service Quotas knows only the ``vpc`` service (an
``ec2`` code answers NoSuchResourceException) and has no
GetAWSDefaultServiceQuota; :class:`Ec2Quotas` teaches its in-process
handler the ``ec2`` quotas for one test, as ``tests/test_quota_aws.py``
does for Fargate. The values are this fake's, not AWS's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from _support import private_moto_server
from moto.core.exceptions import JsonRESTError
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.responses.instances import InstanceResponse
from moto.servicequotas.models import ServiceQuotasBackend
from moto.servicequotas.responses import ServiceQuotasResponse

from starburst.aws.gpu_quota import (
    GPU_QUOTA_ENV,
    GpuQuotaClients,
    gpu_vcpus_in_use,
    plan_gpu_instances,
    quota_override,
    read_gpu_plan,
    read_gpu_quota,
)
from starburst.exceptions import CloudError, ConfigurationError
from starburst.gpu import resolve_gpu

REGION = "ca-central-1"  # away from the other moto users of this process
T4 = resolve_gpu("nvidia-t4")  # g4dn.xlarge, 4 vCPU, family G


@pytest.fixture(autouse=True)
def _no_injected_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shared emulator injects a GPU quota (kept by tests/aws' environment
    fixture once it has started); these tests read the real source."""
    monkeypatch.delenv(GPU_QUOTA_ENV, raising=False)


# -- the plan (pure) --------------------------------------------------------------


def test_plan_fits_instances_by_their_vcpus() -> None:
    status = plan_gpu_instances(T4, 4, 16.0, 4.0, region=REGION)
    assert (status.instances, status.plan.waves, status.plan.cpu) == (3, 2, 4.0)
    assert status.quota_code == "L-DB2E81BA"
    message = status.message()
    assert "'Running On-Demand G and VT instances' (L-DB2E81BA) allows 3 g4dn.xlarge" in message
    assert "about 2 waves" in message
    # 4 instances x 4 vCPU + 4 in use: exactly what is needed.
    assert status.suggested_quota() == 20
    assert "--quota-code L-DB2E81BA --desired-value 20 --region ca-central-1" in message


def test_plan_with_room_says_nothing() -> None:
    assert plan_gpu_instances(T4, 2, 64.0).message() == ""


def test_zero_quota_says_how_to_get_one() -> None:
    status = plan_gpu_instances(resolve_gpu("nvidia-a100"), 1, 0.0, spot=True)
    assert status.instances == 0
    message = status.message()
    assert "'All P Spot Instance Requests' (L-7212CCBC) allows no p4d.24xlarge" in message
    assert "start GPU quotas at 0" in message
    assert "--desired-value 96`" in message


def test_unreadable_quota_lets_batch_decide() -> None:
    status = plan_gpu_instances(T4, 3, None)
    assert status.instances == 3
    assert "could not be read" in status.message()
    assert GPU_QUOTA_ENV in status.message()


def test_override_must_be_a_number(monkeypatch: pytest.MonkeyPatch) -> None:
    assert quota_override() is None
    monkeypatch.setenv(GPU_QUOTA_ENV, "32")
    assert quota_override() == 32.0
    for bad in ("lots", "-4", "nan"):
        monkeypatch.setenv(GPU_QUOTA_ENV, bad)
        with pytest.raises(ConfigurationError, match=f"{GPU_QUOTA_ENV}='{bad}' is not a number"):
            quota_override()


# -- against moto ----------------------------------------------------------------


class Ec2Quotas:
    """The fake ``ec2`` side of Service Quotas, installed into moto for one test."""

    def __init__(self) -> None:
        self.applied: dict[str, float] = {}
        self.defaults: dict[str, float] = {"L-DB2E81BA": 0.0, "L-3819A6DF": 0.0}
        self.denied = False

    def _quota(self, code: str, value: float) -> dict[str, Any]:
        if self.denied:
            raise JsonRESTError("AccessDeniedException",
                                "User is not authorized to perform servicequotas:GetServiceQuota")
        return {"ServiceCode": "ec2", "QuotaCode": code, "Value": value, "QuotaName": code}

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        fake = self
        original = ServiceQuotasBackend.get_service_quota

        def get_service_quota(backend: Any, service_code: str,
                              quota_code: str) -> dict[str, Any]:
            if service_code != "ec2":
                return original(backend, service_code, quota_code)  # type: ignore[no-any-return]
            if quota_code not in fake.applied and not fake.denied:
                raise JsonRESTError("NoSuchResourceException", f"no applied quota {quota_code}")
            return fake._quota(quota_code, fake.applied.get(quota_code, 0.0))

        def get_aws_default_service_quota(response: Any) -> str:
            code = json.loads(response.body)["QuotaCode"]
            if code not in fake.defaults:
                raise JsonRESTError("NoSuchResourceException", f"no quota {code}")
            return json.dumps({"Quota": fake._quota(code, fake.defaults[code])})

        monkeypatch.setattr(ServiceQuotasBackend, "get_service_quota", get_service_quota)
        monkeypatch.setattr(ServiceQuotasResponse, "get_aws_default_service_quota",
                            get_aws_default_service_quota, raising=False)


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """A moto server of this module's own on 127.0.0.1 (no global mock, no reset of others)."""
    with private_moto_server() as url:
        yield url


@pytest.fixture(scope="module")
def session(moto_url: str) -> Iterator[GpuQuotaClients]:
    """Clients of the moto server, with three On-Demand G instances and one Spot A10G.

    One set for the module (no test changes the instances), in a region of
    its own; the instances are terminated at the end.
    """
    keys = {"region_name": REGION, "endpoint_url": moto_url, "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing"}
    ec2 = boto3.client("ec2", **keys)
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    made: list[str] = []
    for itype, count, market in (("g4dn.xlarge", 2, {}),
                                 ("g5.2xlarge", 1, {"MarketType": "spot"}),
                                 ("vt1.3xlarge", 1, {}),  # VT: the G quota, not in the catalog
                                 ("m5.large", 1, {}), ("p3.2xlarge", 1, {})):
        extra = {"InstanceMarketOptions": market} if market else {}
        made += [i["InstanceId"] for i in ec2.run_instances(
            ImageId=ami, InstanceType=itype, MinCount=count, MaxCount=count,
            **extra)["Instances"]]
    ec2.terminate_instances(InstanceIds=made[-1:])  # the p3 no longer counts
    try:
        yield GpuQuotaClients(quotas=boto3.client("service-quotas", **keys), ec2=ec2)
    finally:
        ec2.terminate_instances(InstanceIds=made)


def test_in_use_counts_the_family_and_market(session: GpuQuotaClients) -> None:
    # 2 x g4dn.xlarge (the catalog's vCPUs) + vt1.3xlarge (12, EC2 DescribeInstanceTypes).
    assert gpu_vcpus_in_use("G", session, REGION) == 20.0
    assert gpu_vcpus_in_use("G", session, REGION, spot=True) == 8.0  # g5.2xlarge
    assert gpu_vcpus_in_use("P", session, REGION) == 0.0       # p3 terminated


def test_override_replaces_the_quota_read(session: GpuQuotaClients,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(GPU_QUOTA_ENV, "32")
    status = read_gpu_plan(T4, 4, session, REGION)
    assert (status.plan.quota_vcpu, status.plan.in_use_vcpu, status.instances) == (32.0, 20.0, 3)
    assert status.read_from == GPU_QUOTA_ENV
    assert f"from {GPU_QUOTA_ENV}" in status.message()


def test_quota_read_applied_then_default_then_denied(session: GpuQuotaClients,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    fake = Ec2Quotas()
    fake.install(monkeypatch)
    # Nothing applied: AWS's default (0 for a new account) answers.
    status = read_gpu_plan(T4, 1, session, REGION)
    assert (status.plan.quota_vcpu, status.instances) == (0.0, 0)
    assert "allows no g4dn.xlarge" in status.message()
    fake.applied["L-DB2E81BA"] = 64.0
    assert read_gpu_quota("G", session, REGION) == 64.0
    fake.denied = True
    assert read_gpu_quota("G", session, REGION) is None
    assert "no permission servicequotas:GetServiceQuota" in caplog.text


def test_quota_other_errors_are_cloud_errors(session: GpuQuotaClients,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    Ec2Quotas().install(monkeypatch)
    # No applied and no default P quota: NoSuchResourceException both times.
    with pytest.raises(CloudError, match=r"GetServiceQuota \(ec2 L-417A185B\)") as err:
        read_gpu_quota("P", session, REGION)
    assert "NoSuchResourceException" in str(err.value)


def test_in_use_without_permission_counts_zero_and_says_so(
        session: GpuQuotaClients, monkeypatch: pytest.MonkeyPatch) -> None:
    class Denied(EC2ClientError):
        code = "UnauthorizedOperation"
        message = "You are not authorized to perform this operation."

    def describe_instances(self: Any) -> Any:
        raise Denied()

    monkeypatch.setattr(InstanceResponse, "describe_instances", describe_instances)
    monkeypatch.setenv(GPU_QUOTA_ENV, "8")
    status = read_gpu_plan(T4, 2, session, REGION)
    assert (status.plan.in_use_vcpu, status.instances) == (0.0, 2)
    assert "no permission for EC2 DescribeInstances" in status.in_use_note
