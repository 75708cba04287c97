"""``starburst pricing refresh``/``show`` and the price cache, against a Pricing API stub.

The Pricing API route (``--source api``): Fargate from ``GetProducts`` of
AmazonECS, and GPU instance prices from ``GetProducts`` of AmazonEC2, both
answered by :class:`_pricing_stub.PricingStub` on 127.0.0.1 (see that
module for the shape of the requests and answers). The bulk offer route
is in ``test_pricing_bulk.py``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from _pricing_stub import (
    PricingStub,
    ec2_product,
    gpu_products,
    private_pricing_env,
    product,
    region_products,
)
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from starburst import ConfigurationError
from starburst.aws import price_refresh, pricing_api
from starburst.cli import main
from starburst.exceptions import CloudError
from starburst.gpu import (
    GPU_PRICES,
    GPU_SPOT_DISCOUNT,
    gpu_instances,
    instance_price,
    known_gpus,
    priced_regions,
)
from starburst.pricing import PRICES, lookup
from starburst.pricing_cache import (
    PriceCache,
    cache_path,
    gpu_table_in_use,
    load,
    save,
    spot_table_in_use,
    table_in_use,
)


def api_refresh(regions: list[str] | None = None, **kwargs: Any) -> price_refresh.RefreshResult:
    """A refresh of the Fargate prices through the Pricing API only."""
    kwargs.setdefault("gpu", False)
    return price_refresh.refresh(regions, source="api", **kwargs)


#: us-east-1 at prices unlike the shipped ones (so a test can tell which is used),
#: plus a region the shipped table does not know.
PRODUCTS = [
    *region_products("us-east-1", vcpu=0.05, gib=0.005, arm_vcpu=0.04, arm_gib=0.004),
    *region_products("mx-central-1", vcpu=0.0506, gib=0.0055, arm_vcpu=0.0405,
                     arm_gib=0.0044),
    product("mx-central-1", "Fargate-vCPU-Hours:perCPU", 0.0152, spot=True),
    product("mx-central-1", "Fargate-GB-Hours", 0.00166, spot=True),
    # GPU instances (AmazonEC2): a region the shipped GPU table lacks, and a us-east-1
    # price unlike the shipped 0.526 (so a test can tell which one is used).
    *gpu_products("mx-central-1", {"g4dn.xlarge": 0.70, "g6.xlarge": 0.91}),
    *gpu_products("us-east-1", {"g4dn.xlarge": 0.5}),
]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Fake credentials, no AWS config files, a private cache directory."""
    return private_pricing_env(tmp_path, monkeypatch, credentials=True)


@pytest.fixture
def stub(env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PricingStub]:
    with PricingStub(list(PRODUCTS)) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", server.url)
        yield server


NOW = datetime(2026, 11, 28, 9, 15, 2, tzinfo=UTC)


# -- refresh through the API ------------------------------------------------


def test_refresh_writes_the_cache_and_lookup_prefers_it(stub: PricingStub, env: Path) -> None:
    assert load() is None
    assert table_in_use() == PRICES
    result = api_refresh(["us-east-1", "mx-central-1"], now=NOW)
    path = result.path
    assert path == env == cache_path()
    assert result.route == "api"
    assert result.missing == []
    data = json.loads(path.read_text())
    assert data["format"] == 1
    assert data["fetched"] == "2026-11-28T09:15:02Z"
    assert "GetProducts AmazonECS" in data["source"]

    # The requests had the real API's shape, and were signed.
    headers, body = stub.requests[0]
    assert headers["X-Amz-Target"] == "AWSPriceListService.GetProducts"
    assert headers["Content-Type"] == "application/x-amz-json-1.1"
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=testing/")
    assert "/us-east-1/pricing/aws4_request" in headers["Authorization"]
    assert body["ServiceCode"] == "AmazonECS"
    assert body["FormatVersion"] == "aws_v1"
    assert body["Filters"] == [{"Type": "TERM_MATCH", "Field": "regionCode",
                                "Value": "us-east-1"}]
    # Eight us-east-1 products at three per page: three pages; NextToken followed.
    assert [b.get("NextToken") for _, b in stub.requests[:3]] == [None, "3", "6"]

    table = table_in_use()
    fetched = lookup("us-east-1", "x86_64", table)
    assert (fetched.vcpu_hour, fetched.gib_hour) == (0.05, 0.005)  # the cache, not shipped
    assert fetched.recorded == "2026-11-28"
    assert "AWS Price List API" in fetched.source
    arm = lookup("us-east-1", "arm64", table)
    assert (arm.vcpu_hour, arm.gib_hour, arm.storage_gib_hour) == (0.04, 0.004, 0.000111)
    new = lookup("mx-central-1", "x86_64", table)
    assert new.vcpu_hour == 0.0506
    assert lookup("eu-west-1", "x86_64", table) == PRICES[("eu-west-1", "x86_64")]
    # The Windows and ECS Anywhere rows were left out; Spot rows were kept apart.
    assert spot_table_in_use()[("mx-central-1", "x86_64")].vcpu_hour == 0.0152
    assert ("us-east-1", "x86_64") not in spot_table_in_use()


def test_refresh_merges_with_what_was_cached(stub: PricingStub) -> None:
    api_refresh(["mx-central-1"], now=NOW)
    later = datetime(2026, 12, 1, tzinfo=UTC)
    api_refresh(["us-east-1"], now=later)
    cache = load()
    assert cache is not None
    assert cache.fetched == "2026-12-01T00:00:00Z"
    assert cache.on_demand[("mx-central-1", "x86_64")].recorded == "2026-11-28"
    assert cache.on_demand[("us-east-1", "x86_64")].recorded == "2026-12-01"


def test_refresh_without_regions_refreshes_the_table_in_use(stub: PricingStub) -> None:
    result = api_refresh(now=NOW)
    asked = [b["Filters"][0]["Value"] for b in stub.bodies("AmazonECS")
             if not b.get("NextToken")]
    assert asked == sorted({r for r, _ in PRICES})
    # The stub lists only us-east-1 of those: the others are reported, not guessed.
    assert result.missing == ["eu-west-1", "us-east-2", "us-west-2"]
    assert set(result.cache.on_demand) == {("us-east-1", "x86_64"), ("us-east-1", "arm64")}


def test_a_region_absent_from_table_and_cache_is_a_clear_error(stub: PricingStub,
                                                                env: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"'xx-nowhere-1'.*pricing refresh"):
        lookup("xx-nowhere-1", "x86_64", table_in_use())
    with pytest.raises(ConfigurationError, match="no Fargate \\(Linux\\) price"):
        api_refresh(["xx-nowhere-1"], now=NOW)
    assert not env.exists()  # nothing was written
    # The CLI checks the region first: an AWS region the shipped table lacks.
    result = CliRunner().invoke(main, ["estimate", "--tasks", "10", "--task-seconds", "1",
                                       "--region", "eu-central-1"])
    assert result.exit_code == 1
    assert "no Fargate price is known for 'eu-central-1'" in result.output
    assert "starburst pricing refresh --region eu-central-1" in result.output


def test_access_denied_says_what_to_do(stub: PricingStub) -> None:
    stub.fail_with = (400, "AccessDeniedException", "User is not authorized: pricing:GetProducts")
    with pytest.raises(CloudError, match=r"GetProducts.*access denied.*pricing:GetProducts"):
        api_refresh(["us-east-1"], now=NOW)


def test_the_pricing_endpoint_must_exist() -> None:
    with pytest.raises(ConfigurationError, match="no endpoint in 'eu-west-1'"):
        pricing_api.pricing_client("eu-west-1")


# -- the commands ------------------------------------------------------------


def test_cli_refresh_show_and_estimate_use_the_cache(stub: PricingStub, env: Path) -> None:
    runner = CliRunner()
    before = runner.invoke(main, ["pricing", "show", "--json"])
    assert before.exit_code == 0, before.output
    assert json.loads(before.output)["cache_fetched"] is None

    done = runner.invoke(main, ["pricing", "refresh", "--source", "api", "--no-gpu",
                                "--region", "us-east-1", "--region", "mx-central-1"])
    assert done.exit_code == 0, done.output
    assert "Fetched Fargate prices for 2 regions (mx-central-1, us-east-1)" in done.output
    assert "Fargate Spot rates listed for: mx-central-1" in done.output
    assert f"Wrote {env}" in done.output

    shown = json.loads(runner.invoke(main, ["pricing", "show", "--json"]).output)
    assert shown["cache_fetched"] is not None
    rows = {(r["region"], r["arch"], r["capacity"]): r for r in shown["prices"]}
    assert rows[("us-east-1", "x86_64", "On-Demand")]["vcpu_hour"] == 0.05
    assert "AWS Price List API" in rows[("us-east-1", "x86_64", "On-Demand")]["source"]
    assert rows[("eu-west-1", "x86_64", "On-Demand")]["source"].startswith("https://aws")
    assert rows[("mx-central-1", "x86_64", "Spot")]["vcpu_hour"] == 0.0152
    assert "assumed 70% below On-Demand" in rows[("us-east-1", "x86_64", "Spot")]["source"]
    for row in shown["prices"]:
        assert row["source"]
        assert row["recorded"]

    text = runner.invoke(main, ["pricing", "show", "--region", "us-east-1"])
    assert text.exit_code == 0, text.output
    assert "us-east-1" in text.output
    assert "eu-west-1" not in text.output
    assert "AWS Price List API" in text.output

    est = runner.invoke(main, ["estimate", "--tasks", "100", "--task-seconds", "2",
                               "--region", "mx-central-1", "--spot", "--json"])
    assert est.exit_code == 0, est.output
    data = json.loads(est.output)
    assert all("AWS Price List API" in o["price"]["source"] for o in data["options"])
    assert {o["price"]["vcpu_hour"] for o in data["options"]} == {0.0506, 0.0152}


def test_cli_refresh_reports_api_errors(stub: PricingStub) -> None:
    stub.fail_with = (400, "AccessDeniedException", "not allowed")
    result = CliRunner().invoke(main, ["pricing", "refresh", "--source", "api",
                                       "--region", "us-east-1"])
    assert result.exit_code == 1
    assert "access denied" in result.output


def test_cli_refresh_json_reports_what_was_fetched_and_errors_as_json(stub: PricingStub,
                                                                     env: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(main, ["pricing", "refresh", "--source", "api", "--no-gpu",
                                "--region", "us-east-1", "--region", "mx-central-1",
                                "--json"])
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert data["regions"] == ["mx-central-1", "us-east-1"]
    assert data["spot_regions"] == ["mx-central-1"]
    assert data["cache"] == str(env)
    assert "AWS Price List API" in data["source"]
    assert data["fetched"]
    rows = {(r["region"], r["arch"]): r for r in data["on_demand"]}
    assert rows[("us-east-1", "x86_64")]["vcpu_hour"] == 0.05
    stub.fail_with = (400, "AccessDeniedException", "not allowed")
    failed = runner.invoke(main, ["pricing", "refresh", "--source", "api", "--region",
                                  "us-east-1", "--json"])
    assert failed.exit_code == 1
    error = json.loads(failed.stdout)["error"]
    assert "access denied" in error["message"]


def test_show_rejects_an_unknown_region(env: Path) -> None:
    result = CliRunner().invoke(main, ["pricing", "show", "--region", "xx-nowhere-1"])
    assert result.exit_code == 1
    assert "no Fargate price is known for xx-nowhere-1" in result.output


# -- the cache file and the parser (pure) -------------------------------------


def test_a_broken_cache_is_ignored(env: Path, caplog: pytest.LogCaptureFixture) -> None:
    env.parent.mkdir(parents=True)
    env.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="starburst"):
        assert load() is None
        assert table_in_use() == PRICES
    assert "ignoring the price cache" in caplog.text
    env.write_text(json.dumps({"format": 99}))
    assert load() is None


def test_cache_round_trip(tmp_path: Path) -> None:
    cache = PriceCache(fetched="2026-11-28T00:00:00Z", source="test",
                       on_demand={("us-east-1", "x86_64"): PRICES[("us-east-1", "x86_64")]})
    path = save(cache, tmp_path / "p.json")
    assert load(path) == cache


@pytest.mark.parametrize(("usage", "expected"), [
    ("USE1-Fargate-vCPU-Hours:perCPU", (False, "x86_64", "vcpu")),
    ("Fargate-vCPU-Hours:perCPU", (False, "x86_64", "vcpu")),
    ("EU-Fargate-GB-Hours", (False, "x86_64", "gib")),
    ("APS3-Fargate-ARM-vCPU-Hours:perCPU", (False, "arm64", "vcpu")),
    ("USW2-Fargate-ARM-GB-Hours", (False, "arm64", "gib")),
    ("USE1-Fargate-EphemeralStorage-GB-Hours", (False, None, "storage")),
    ("USE1-SpotUsage:Fargate-vCPU-Hours:perCPU", (True, "x86_64", "vcpu")),
    ("USE1-SpotUsage-Fargate-GB-Hours", (True, "x86_64", "gib")),
    ("USE1-Fargate-Windows-vCPU-Hours:perCPU", None),
    ("USE1-Fargate-Windows-OS-Hours:perCPU", None),
    ("USE1-Fargate-vCPU-Hours:perCPU-SpotDiscount", None),
    ("USE1-ECS-Anywhere-Instance-hours", None),
    ("USE1-Windows-Fargate-GB-Hours", None),
])
def test_usage_types(usage: str, expected: tuple[bool, str | None, str] | None) -> None:
    kind = pricing_api.classify_usage_type(usage)
    got = None if kind is None else (kind.spot, kind.arch, kind.dimension)
    assert got == expected


prices = st.floats(0.0001, 1.0, allow_nan=False).map(lambda x: round(x, 8))


@settings(deadline=None, max_examples=50)
@given(vcpu=prices, gib=prices, arm_vcpu=prices, arm_gib=prices, storage=prices,
       as_text=st.booleans(), order=st.randoms(use_true_random=False))
def test_parse_recovers_every_listed_price(vcpu: float, gib: float, arm_vcpu: float,
                                           arm_gib: float, storage: float, as_text: bool,
                                           order: Any) -> None:
    items: list[Any] = region_products("mx-central-1", vcpu=vcpu, gib=gib, arm_vcpu=arm_vcpu,
                                       arm_gib=arm_gib, storage=storage)
    order.shuffle(items)
    if as_text:
        items = [json.dumps(i) for i in items]
    result = pricing_api.parse_price_list(items, fetched=NOW, source="stub",
                                          regions=["mx-central-1"])
    assert result.missing == []
    x86 = result.cache.on_demand[("mx-central-1", "x86_64")]
    arm = result.cache.on_demand[("mx-central-1", "arm64")]
    assert (x86.vcpu_hour, x86.gib_hour, x86.storage_gib_hour) == (vcpu, gib, storage)
    assert (arm.vcpu_hour, arm.gib_hour, arm.storage_gib_hour) == (arm_vcpu, arm_gib, storage)
    assert x86.recorded == "2026-11-28"
    assert result.cache.spot == {}


def test_parse_reports_incomplete_regions() -> None:
    items = [product("mx-central-1", "Fargate-vCPU-Hours:perCPU", 0.05)]  # no GB-hour
    result = pricing_api.parse_price_list(items, fetched=NOW, source="stub",
                                          regions=["mx-central-1"])
    assert result.missing == ["mx-central-1"]
    # A storage price missing from the list comes from the shipped table, and says so.
    items = [product("us-east-1", "Fargate-vCPU-Hours:perCPU", 0.05),
             product("us-east-1", "Fargate-GB-Hours", 0.005)]
    result = pricing_api.parse_price_list(items, fetched=NOW, source="stub")
    price = result.cache.on_demand[("us-east-1", "x86_64")]
    assert price.storage_gib_hour == PRICES[("us-east-1", "x86_64")].storage_gib_hour
    assert "storage price from" in price.source


# -- GPU instance prices (GetProducts of AmazonEC2) ---------------------------

#: The filters that pick the one Linux, shared-tenancy, On-Demand row of a type.
LINUX_FILTERS = {"operatingSystem": "Linux", "tenancy": "Shared", "preInstalledSw": "NA",
                 "capacitystatus": "Used", "licenseModel": "No License required"}


def test_gpu_refresh_asks_amazonec2_for_each_catalogued_type(stub: PricingStub,
                                                             env: Path) -> None:
    result = api_refresh(["mx-central-1"], gpu=True, now=NOW)
    asked = stub.bodies("AmazonEC2")
    catalog = {i.instance_type for g in known_gpus() for i in gpu_instances(g)}
    assert {b["Filters"][1]["Value"] for b in asked} == catalog  # one query per type
    for body in asked:
        assert body["FormatVersion"] == "aws_v1"
        filters = {f["Field"]: f["Value"] for f in body["Filters"]}
        assert {f["Type"] for f in body["Filters"]} == {"TERM_MATCH"}
        assert filters == {"regionCode": "mx-central-1",
                           "instanceType": filters["instanceType"], **LINUX_FILTERS}
    # Only the Linux, shared, used row counts (the stub also lists Windows, dedicated,
    # capacity-reservation and SQL rows of each type, and a Reserved term).
    row = result.cache.gpu[("g4dn.xlarge", "mx-central-1")]
    assert (row.hourly, row.spot, row.recorded) == (0.70, False, "2026-11-28")
    assert "GetProducts AmazonEC2" in row.source
    assert result.cache.gpu[("g6.xlarge", "mx-central-1")].hourly == 0.91
    assert set(result.cache.gpu) == {("g4dn.xlarge", "mx-central-1"),
                                     ("g6.xlarge", "mx-central-1")}
    # The types without a listed price are reported, not guessed.
    assert result.gpu_missing == {"mx-central-1": sorted(catalog - {"g4dn.xlarge",
                                                                    "g6.xlarge"})}
    assert result.gpu_skipped is None
    data = json.loads(env.read_text())
    assert data["format"] == 1  # an optional key: older readers still read the file
    assert {(r["instance_type"], r["region"]) for r in data["gpu_on_demand"]} == \
        set(result.cache.gpu)


def test_instance_price_uses_the_cached_price_where_none_is_shipped(stub: PricingStub) -> None:
    with pytest.raises(ConfigurationError, match="pricing refresh --region mx-central-1"):
        instance_price("g4dn.xlarge", "mx-central-1", table=gpu_table_in_use())
    api_refresh(["mx-central-1", "us-east-1"], gpu=True, now=NOW)
    table = gpu_table_in_use()
    fetched = instance_price("g4dn.xlarge", "mx-central-1", table=table)
    assert fetched.hourly == 0.70
    assert "AmazonEC2" in fetched.source
    spot = instance_price("g4dn.xlarge", "mx-central-1", spot=True, table=table)
    assert spot.hourly == pytest.approx(0.70 * (1 - GPU_SPOT_DISCOUNT))
    assert "mx-central-1" in priced_regions("g4dn.xlarge", table)
    # A newer cached row wins over the shipped one, as for Fargate.
    assert instance_price("g4dn.xlarge", "us-east-1", table=table).hourly == 0.5
    # What the cache lacks still comes from the shipped table.
    assert instance_price("g5.xlarge", "us-east-1", table=table) == \
        instance_price("g5.xlarge", "us-east-1")
    # Without table= the shipped table alone answers (gpu.py does no I/O).
    assert instance_price("g4dn.xlarge", "us-east-1").hourly == 0.526


def test_estimate_prices_gpus_from_the_cache(stub: PricingStub) -> None:
    args = ["estimate", "--tasks", "10", "--task-seconds", "1", "--workers", "2",
            "--region", "mx-central-1", "--gpu", "nvidia-t4", "--json"]
    api_refresh(["mx-central-1"], gpu=True, now=NOW)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    gpu = json.loads(result.output)["options"][-1]
    assert gpu["price"]["instance_hourly"] == 0.70
    assert "AmazonEC2" in gpu["price"]["source"]


def test_a_gpu_refresh_that_fails_is_an_error_when_asked_for(stub: PricingStub,
                                                             env: Path) -> None:
    stub.fail_with = (400, "AccessDeniedException", "User is not authorized")
    stub.fail_service = "AmazonEC2"
    with pytest.raises(CloudError, match=r"GetProducts.*AmazonEC2.*access denied"):
        api_refresh(["mx-central-1"], gpu=True, now=NOW)
    assert not env.exists()


def test_a_gpu_refresh_that_fails_by_default_keeps_the_fargate_prices(stub: PricingStub,
                                                                      env: Path) -> None:
    stub.fail_with = (400, "AccessDeniedException", "User is not authorized")
    stub.fail_service = "AmazonEC2"
    result = api_refresh(["mx-central-1"], gpu=None, now=NOW)
    assert ("mx-central-1", "x86_64") in result.cache.on_demand
    assert result.cache.gpu == {}
    assert result.gpu_skipped is not None
    assert "access denied" in result.gpu_skipped
    assert load() is not None


def test_cli_refresh_reports_gpu_prices(stub: PricingStub) -> None:
    runner = CliRunner()
    done = runner.invoke(main, ["pricing", "refresh", "--source", "api",
                                "--region", "mx-central-1"])
    assert done.exit_code == 0, done.output
    assert "GPU instance prices for 2 instance types in 1 region (mx-central-1)" in done.output
    assert "from the AWS Price List API (GetProducts AmazonEC2" in done.output
    assert "No GPU price listed in mx-central-1 for 38 types" in done.output
    data = json.loads(runner.invoke(main, ["pricing", "refresh", "--source", "api",
                                           "--region", "mx-central-1", "--json"]).stdout)
    rows = {(r["instance_type"], r["region"]): r for r in data["gpu"]}
    assert rows[("g4dn.xlarge", "mx-central-1")]["hourly"] == 0.70
    assert rows[("g4dn.xlarge", "mx-central-1")]["recorded"]
    assert len(data["gpu_missing"]["mx-central-1"]) == 38
    assert data["gpu_skipped"] is None
    skipped = json.loads(runner.invoke(main, ["pricing", "refresh", "--source", "api",
                                              "--no-gpu", "--region", "mx-central-1",
                                              "--json"]).stdout)
    assert skipped["gpu"] == []
    assert "--no-gpu" in skipped["gpu_skipped"]


def test_show_gpu_lists_instance_prices_with_source_and_date(stub: PricingStub) -> None:
    runner = CliRunner()
    shipped = json.loads(runner.invoke(main, ["pricing", "show", "--gpu", "--json"]).output)
    assert {r["region"] for r in shipped["gpu_prices"]} == {"us-east-1"}
    api_refresh(["mx-central-1"], gpu=True, now=NOW)
    shown = json.loads(runner.invoke(main, ["pricing", "show", "--gpu", "--json",
                                            "--region", "mx-central-1"]).output)
    rows = {r["instance_type"]: r for r in shown["gpu_prices"]}
    assert set(rows) == {"g4dn.xlarge", "g6.xlarge"}
    assert rows["g4dn.xlarge"]["hourly"] == 0.70
    assert rows["g4dn.xlarge"]["gpu"] == "nvidia-t4"
    assert "AmazonEC2" in rows["g4dn.xlarge"]["source"]
    assert rows["g4dn.xlarge"]["recorded"] == "2026-11-28"
    text = runner.invoke(main, ["pricing", "show", "--gpu", "--region", "mx-central-1"])
    assert text.exit_code == 0, text.output
    assert "g4dn.xlarge" in text.output
    assert "GetProducts AmazonEC2" in text.output
    assert "g5.2xlarge" not in text.output  # a shipped us-east-1 row, filtered out
    missing = runner.invoke(main, ["pricing", "show", "--gpu", "--region", "xx-nowhere-1"])
    assert missing.exit_code == 1
    assert "no GPU instance price is known for xx-nowhere-1" in missing.output


def test_parse_gpu_keeps_only_linux_shared_on_demand_rows() -> None:
    # A server that ignored a filter must not smuggle in a Windows or dedicated price.
    items = gpu_products("mx-central-1", {"g5.xlarge": 1.2})
    items.append(ec2_product("mx-central-1", "g5.xlarge", 1.3))  # a second, different price
    table, notes = pricing_api.parse_gpu_price_list(
        [json.dumps(i) for i in items], fetched=NOW, source="stub")
    assert table[("g5.xlarge", "mx-central-1")].hourly == 1.2
    assert notes == ["mx-central-1: two prices for g5.xlarge; kept 1.2, ignored 1.3"]
    assert pricing_api.parse_gpu_price_list([], fetched=NOW, source="stub") == ({}, [])


def test_cache_reads_files_without_gpu_rows_and_round_trips_them(tmp_path: Path) -> None:
    old = {"format": 1, "fetched": "2026-11-28T00:00:00Z", "source": "test",
           "on_demand": [dict(asdict(PRICES[("us-east-1", "x86_64")]))], "spot": []}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(old))
    cache = load(path)
    assert cache is not None
    assert cache.gpu == {}
    assert gpu_table_in_use(cache=cache) == GPU_PRICES
    row = instance_price("g4dn.xlarge", "us-east-1")
    moved = dataclasses.replace(row, region="mx-central-1", hourly=0.7, source="x")
    with_gpu = dataclasses.replace(cache, gpu={("g4dn.xlarge", "mx-central-1"): moved})
    assert load(save(with_gpu, path)) == with_gpu
    data = json.loads(path.read_text())
    data["gpu_on_demand"][0]["hourly"] = -1
    path.write_text(json.dumps(data))
    assert load(path) is None  # a broken row: the cache is ignored, as for Fargate
