"""``starburst pricing refresh``/``show`` and the price cache, against a Pricing API stub.

moto has no Pricing API, so :class:`PricingStub` is a small HTTP server on
127.0.0.1 that answers the JSON 1.1 ``AWSPriceListService.GetProducts``
call the way the real endpoint does (botocore's service model
``pricing/2017-10-15``): a POST with ``X-Amz-Target``, a JSON body with
``ServiceCode``/``Filters``/``FormatVersion``/``MaxResults``/``NextToken``,
and an answer ``{"FormatVersion": "aws_v1", "PriceList": [<JSON document as
a string>, ...], "NextToken": ...}``. Each PriceList document has the
shape of a real AmazonECS product (``product.attributes.usagetype``,
``regionCode``, ``terms.OnDemand.<sku>.<term>.priceDimensions...pricePerUnit.USD``).
boto3 reaches it through ``AWS_ENDPOINT_URL_PRICING``; requests are
signed with fake credentials and nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from starburst import ConfigurationError
from starburst.aws import pricing_api
from starburst.cli import main
from starburst.exceptions import CloudError
from starburst.pricing import PRICES, lookup
from starburst.pricing_cache import (
    PriceCache,
    cache_path,
    load,
    save,
    spot_table_in_use,
    table_in_use,
)

_PREFIX = {"us-east-1": "USE1", "eu-west-1": "EU", "mx-central-1": "MXC1"}
_LOCATION = {"us-east-1": "US East (N. Virginia)", "eu-west-1": "EU (Ireland)",
             "mx-central-1": "Mexico (Central)"}


def product(region: str, usage_tail: str, usd: float, *, sku: str | None = None,
            family: str = "Compute", spot: bool = False) -> dict[str, Any]:
    """One AmazonECS PriceList document, shaped like the real ones."""
    sku = sku or f"SKU{abs(hash((region, usage_tail, spot))) % 10**10:010d}"
    usage = f"{_PREFIX.get(region, 'XX1')}-{'SpotUsage:' if spot else ''}{usage_tail}"
    term = f"{sku}.JRTCKXETXF"
    return {
        "product": {
            "productFamily": family,
            "attributes": {
                "regionCode": region, "servicecode": "AmazonECS",
                "usagetype": usage, "locationType": "AWS Region",
                "location": _LOCATION.get(region, region), "servicename":
                "Amazon Elastic Container Service", "operation": "",
                "tenancy": "Shared"},
            "sku": sku},
        "serviceCode": "AmazonECS",
        "terms": {"OnDemand": {term: {
            "priceDimensions": {f"{term}.6YS6EN2CT7": {
                "unit": "hours", "endRange": "Inf", "description": f"AWS Fargate {usage}",
                "appliesTo": [], "rateCode": f"{term}.6YS6EN2CT7", "beginRange": "0",
                "pricePerUnit": {"USD": f"{usd:.10f}"}}},
            "sku": sku, "effectiveDate": "2026-11-01T00:00:00Z", "offerTermCode": "JRTCKXETXF",
            "termAttributes": {}}}},
        "version": "20261101000000", "publicationDate": "2026-11-01T00:00:00Z",
    }


def region_products(region: str, *, vcpu: float, gib: float, arm_vcpu: float,
                    arm_gib: float, storage: float = 0.000111) -> list[dict[str, Any]]:
    """The Fargate rows of a region, plus rows that must be ignored."""
    return [
        product(region, "Fargate-vCPU-Hours:perCPU", vcpu),
        product(region, "Fargate-GB-Hours", gib),
        product(region, "Fargate-ARM-vCPU-Hours:perCPU", arm_vcpu),
        product(region, "Fargate-ARM-GB-Hours", arm_gib),
        product(region, "Fargate-EphemeralStorage-GB-Hours", storage, family="Storage"),
        # Not Linux Fargate: ignored.
        product(region, "Fargate-Windows-vCPU-Hours:perCPU", 0.09148),
        product(region, "Fargate-Windows-OS-Hours:perCPU", 0.046),
        product(region, "ECS-Anywhere-Instance-hours", 0.01025, family="ECS Anywhere"),
    ]


class PricingStub:
    """A Pricing API endpoint on 127.0.0.1 serving ``products``."""

    def __init__(self, products: list[dict[str, Any]], *, page_size: int = 3) -> None:
        self.products = products
        self.page_size = page_size
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.fail_with: tuple[int, str, str] | None = None
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append((dict(self.headers), body))
                status, answer = stub.answer(self.headers.get("X-Amz-Target", ""), body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("x-amzn-RequestId", "stub-request")
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def answer(self, target: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if target != "AWSPriceListService.GetProducts":
            return 400, {"__type": "UnknownOperationException", "message": target}
        if self.fail_with is not None:
            status, code, message = self.fail_with
            return status, {"__type": code, "Message": message}
        if body.get("FormatVersion", "aws_v1") != "aws_v1":
            return 400, {"__type": "InvalidParameterException", "Message": "FormatVersion"}
        matches = [p for p in self.products if p["serviceCode"] == body["ServiceCode"]]
        for f in body.get("Filters", []):
            assert f["Type"] == "TERM_MATCH"
            matches = [p for p in matches
                       if p["product"]["attributes"].get(f["Field"]) == f["Value"]]
        start = int(body.get("NextToken") or 0)
        size = min(int(body.get("MaxResults", 100)), self.page_size)
        page = matches[start : start + size]
        answer: dict[str, Any] = {"FormatVersion": "aws_v1",
                                  "PriceList": [json.dumps(p) for p in page]}
        if start + size < len(matches):
            answer["NextToken"] = str(start + size)
        return 200, answer

    def __enter__(self) -> PricingStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


#: us-east-1 at prices unlike the shipped ones (so a test can tell which is used),
#: plus a region the shipped table does not know.
PRODUCTS = [
    *region_products("us-east-1", vcpu=0.05, gib=0.005, arm_vcpu=0.04, arm_gib=0.004),
    *region_products("mx-central-1", vcpu=0.0506, gib=0.0055, arm_vcpu=0.0405,
                     arm_gib=0.0044),
    product("mx-central-1", "Fargate-vCPU-Hours:perCPU", 0.0152, spot=True),
    product("mx-central-1", "Fargate-GB-Hours", 0.00166, spot=True),
]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Fake credentials, no AWS config files, a private cache directory."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("STARBURST_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "prices.json"


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
    result, path = pricing_api.refresh(["us-east-1", "mx-central-1"], now=NOW)
    assert path == env == cache_path()
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
    pricing_api.refresh(["mx-central-1"], now=NOW)
    later = datetime(2026, 12, 1, tzinfo=UTC)
    pricing_api.refresh(["us-east-1"], now=later)
    cache = load()
    assert cache is not None
    assert cache.fetched == "2026-12-01T00:00:00Z"
    assert cache.on_demand[("mx-central-1", "x86_64")].recorded == "2026-11-28"
    assert cache.on_demand[("us-east-1", "x86_64")].recorded == "2026-12-01"


def test_refresh_without_regions_refreshes_the_table_in_use(stub: PricingStub) -> None:
    result, _ = pricing_api.refresh(now=NOW)
    asked = [b["Filters"][0]["Value"] for _, b in stub.requests if not b.get("NextToken")]
    assert asked == sorted({r for r, _ in PRICES})
    # The stub lists only us-east-1 of those: the others are reported, not guessed.
    assert result.missing == ["eu-west-1", "us-east-2", "us-west-2"]
    assert set(result.cache.on_demand) == {("us-east-1", "x86_64"), ("us-east-1", "arm64")}


def test_a_region_absent_from_table_and_cache_is_a_clear_error(stub: PricingStub,
                                                                env: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"'xx-nowhere-1'.*pricing refresh"):
        lookup("xx-nowhere-1", "x86_64", table_in_use())
    with pytest.raises(ConfigurationError, match="no Fargate \\(Linux\\) price"):
        pricing_api.refresh(["xx-nowhere-1"], now=NOW)
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
        pricing_api.refresh(["us-east-1"], now=NOW)


def test_the_pricing_endpoint_must_exist() -> None:
    with pytest.raises(ConfigurationError, match="no endpoint in 'eu-west-1'"):
        pricing_api.pricing_client("eu-west-1")


# -- the commands ------------------------------------------------------------


def test_cli_refresh_show_and_estimate_use_the_cache(stub: PricingStub, env: Path) -> None:
    runner = CliRunner()
    before = runner.invoke(main, ["pricing", "show", "--json"])
    assert before.exit_code == 0, before.output
    assert json.loads(before.output)["cache_fetched"] is None

    done = runner.invoke(main, ["pricing", "refresh", "--region", "us-east-1",
                                "--region", "mx-central-1"])
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
    result = CliRunner().invoke(main, ["pricing", "refresh", "--region", "us-east-1"])
    assert result.exit_code == 1
    assert "access denied" in result.output


def test_cli_refresh_json_reports_what_was_fetched_and_errors_as_json(stub: PricingStub,
                                                                     env: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(main, ["pricing", "refresh", "--region", "us-east-1",
                                "--region", "mx-central-1", "--json"])
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
    failed = runner.invoke(main, ["pricing", "refresh", "--region", "us-east-1", "--json"])
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
