"""``starburst pricing refresh`` from the public bulk offer files: no credentials.

The region index and the per-region AmazonECS offer files are served by
:class:`_pricing_stub.PriceListServer` on 127.0.0.1, reached through
``STARBURST_PRICE_LIST_URL``; the Pricing API (for the fallback and for
GPU prices) by :class:`_pricing_stub.PricingStub`. Nothing leaves the
machine.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from _pricing_stub import (
    INDEX_PATH,
    PriceListServer,
    PricingStub,
    bulk_files,
    gpu_products,
    offer_path,
    private_pricing_env,
    product,
    region_products,
)
from click.testing import CliRunner
from rich.console import Console

from starburst import ConfigurationError
from starburst.aws import price_list, price_refresh
from starburst.cli import main
from starburst.commands import pricing as pricing_command
from starburst.exceptions import CloudError
from starburst.pricing import PRICES, lookup
from starburst.pricing_cache import load, spot_table_in_use, table_in_use

NOW = datetime(2026, 12, 5, 8, 0, 0, tzinfo=UTC)
#: Fargate rows of three regions, at the AmazonECS prices of eu-central-1 and
#: eu-north-1 (regions the shipped table lacks), with Spot rows for eu-central-1.
DOCS = [
    *region_products("us-east-1", vcpu=0.04048, gib=0.004445, arm_vcpu=0.03238,
                     arm_gib=0.00356),
    *region_products("eu-central-1", vcpu=0.04656, gib=0.00511, arm_vcpu=0.03725,
                     arm_gib=0.00409, storage=0.000119),
    product("eu-central-1", "Fargate-vCPU-Hours:perCPU", 0.0140458, spot=True),
    product("eu-central-1", "Fargate-GB-Hours", 0.00154154, spot=True),
    *region_products("eu-north-1", vcpu=0.0445, gib=0.0049, arm_vcpu=0.0356,
                     arm_gib=0.0039),
]
REGIONS = ["eu-central-1", "eu-north-1", "us-east-1"]
PUBLISHED = {"eu-central-1": "2026-11-11T12:00:00Z", "eu-north-1": "2026-10-02T09:30:00Z",
             "us-east-1": "2026-11-11T12:00:00Z"}


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(price_list, "_BACKOFF_S", 0.0)


@pytest.fixture
def cache_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No AWS credentials anywhere, and a private cache directory."""
    return private_pricing_env(tmp_path, monkeypatch, credentials=False)


@pytest.fixture
def offers(cache_file: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PriceListServer]:
    with PriceListServer(bulk_files(DOCS, REGIONS, published=PUBLISHED)) as server:
        monkeypatch.setenv("STARBURST_PRICE_LIST_URL", server.url)
        yield server


@pytest.fixture
def api(cache_file: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PricingStub]:
    """Credentials (fake), and the Pricing API stub with the same Fargate rows and GPU rows."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    rows = [*DOCS, *gpu_products("eu-central-1", {"g4dn.xlarge": 0.658})]
    with PricingStub(rows, page_size=100) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", server.url)
        yield server


def test_bulk_refresh_needs_no_credentials(offers: PriceListServer, cache_file: Path) -> None:
    result = price_refresh.refresh(["eu-central-1", "eu-north-1"], now=NOW)
    assert result.route == "bulk"
    assert result.missing == []
    assert result.path == cache_file
    # The index once, then only the offers of the regions asked for.
    assert offers.hits == {INDEX_PATH: 1, offer_path("eu-central-1"): 1,
                           offer_path("eu-north-1"): 1}
    assert result.published == {"eu-central-1": "2026-11-11T12:00:00Z",
                                "eu-north-1": "2026-10-02T09:30:00Z"}

    table = table_in_use()
    x86 = lookup("eu-central-1", "x86_64", table)
    assert (x86.vcpu_hour, x86.gib_hour, x86.storage_gib_hour) == (0.04656, 0.00511, 0.000119)
    # Each row cites its offer file and the date AWS published it.
    assert x86.source.startswith(f"{offers.url}{offer_path('eu-central-1')} ")
    assert x86.recorded == "2026-11-11"
    arm = lookup("eu-central-1", "arm64", table)
    assert (arm.vcpu_hour, arm.gib_hour) == (0.03725, 0.00409)
    north = lookup("eu-north-1", "x86_64", table)
    assert (north.vcpu_hour, north.recorded) == (0.0445, "2026-10-02")
    spot = spot_table_in_use()[("eu-central-1", "x86_64")]
    assert (spot.vcpu_hour, spot.gib_hour) == (0.0140458, 0.00154154)
    assert "Fargate Spot" in spot.source
    assert lookup("us-east-1", "x86_64", table) == PRICES[("us-east-1", "x86_64")]

    cache = load()
    assert cache is not None
    assert cache.fetched == "2026-12-05T08:00:00Z"
    assert "bulk" in cache.source
    assert INDEX_PATH in cache.source
    # GPU prices need the Pricing API, hence credentials: skipped, and said why.
    assert cache.gpu == {}
    assert result.gpu_skipped is not None
    assert "credentials" in result.gpu_skipped
    assert "GetProducts" in result.gpu_skipped


def test_bulk_refresh_of_every_region_in_the_index(offers: PriceListServer) -> None:
    result = price_refresh.refresh(all_regions=True, now=NOW)
    assert sorted({r for r, _ in result.cache.on_demand}) == REGIONS
    assert set(offers.hits) == {INDEX_PATH, *(offer_path(r) for r in REGIONS)}


def test_a_region_missing_from_the_index_is_reported(offers: PriceListServer,
                                                     cache_file: Path) -> None:
    result = price_refresh.refresh(["eu-central-1", "xx-nowhere-1"], now=NOW)
    assert result.missing == ["xx-nowhere-1"]
    assert any("xx-nowhere-1" in n and "region index" in n for n in result.notes)
    cache_file.unlink()
    with pytest.raises(ConfigurationError, match="no Fargate \\(Linux\\) price for xx-nowhere-1"):
        price_refresh.refresh(["xx-nowhere-1"], now=NOW)
    assert not cache_file.exists()


def test_transient_failures_are_retried(offers: PriceListServer) -> None:
    offers.failures[INDEX_PATH] = [503, 500]
    offers.failures[offer_path("eu-north-1")] = [429]
    result = price_refresh.refresh(["eu-north-1"], now=NOW)
    assert ("eu-north-1", "x86_64") in result.cache.on_demand
    assert offers.hits == {INDEX_PATH: 3, offer_path("eu-north-1"): 2}
    assert "gzip" in offers.headers[0].get("Accept-Encoding", "")


def test_a_server_that_stalls_times_out_and_is_retried(offers: PriceListServer,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(price_list, "_TIMEOUT", httpx.Timeout(0.1))
    offers.stall[INDEX_PATH] = 0.4
    with pytest.raises(price_list.PriceListUnavailable,
                       match=r"region_index\.json failed after 4 attempts: .*ReadTimeout"):
        price_refresh.refresh(["eu-north-1"], source="bulk", now=NOW)
    assert offers.hits == {INDEX_PATH: 4}


def test_a_missing_file_is_not_retried(offers: PriceListServer, cache_file: Path) -> None:
    del offers.files[offer_path("eu-north-1")]
    with pytest.raises(CloudError, match=r"eu-north-1/index\.json failed: HTTP 404"):
        price_refresh.refresh(["eu-north-1"], source="bulk", now=NOW)
    assert offers.hits[offer_path("eu-north-1")] == 1
    assert not cache_file.exists()


@pytest.mark.parametrize("doc", [
    b"<html>captive portal</html>",
    {"formatVersion": "v2.0", "offerCode": "AmazonECS", "publicationDate": "x",
     "products": {}, "terms": {}},
    {"formatVersion": "v1.0", "offerCode": "AmazonEC2", "publicationDate": "x",
     "products": {}, "terms": {}},
    {"formatVersion": "v1.0", "offerCode": "AmazonECS", "products": {}, "terms": {}},
])
def test_a_document_that_is_not_an_amazonecs_offer_is_refused(offers: PriceListServer,
                                                              doc: object) -> None:
    offers.files[offer_path("eu-north-1")] = doc
    with pytest.raises(price_list.PriceListUnavailable, match=r"eu-north-1/index\.json"):
        price_refresh.refresh(["eu-north-1"], source="bulk", now=NOW)


def test_unreachable_without_credentials_names_both_routes(cache_file: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.setenv("STARBURST_PRICE_LIST_URL", "http://127.0.0.1:9")  # nothing listens
    with pytest.raises(CloudError) as info:
        price_refresh.refresh(["eu-central-1"], now=NOW)
    message = str(info.value)
    assert "http://127.0.0.1:9/offers/v1.0/aws/AmazonECS/current/region_index.json" in message
    assert "no AWS credentials" in message
    assert "STARBURST_PRICE_LIST_URL" in message
    assert "--source api" in message
    assert not cache_file.exists()


def test_unreachable_with_credentials_falls_back_to_the_api(api: PricingStub,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.setenv("STARBURST_PRICE_LIST_URL", "http://127.0.0.1:9")
    result = price_refresh.refresh(["eu-central-1"], now=NOW)
    assert result.route == "api"
    assert any("bulk offers" in n and "Pricing API" in n for n in result.notes)
    price = result.cache.on_demand[("eu-central-1", "x86_64")]
    assert price.vcpu_hour == 0.04656
    assert "GetProducts AmazonECS" in price.source
    # With credentials, the GPU prices came too.
    assert result.cache.gpu[("g4dn.xlarge", "eu-central-1")].hourly == 0.658
    # --source bulk never falls back.
    with pytest.raises(price_list.PriceListUnavailable):
        price_refresh.refresh(["eu-central-1"], source="bulk", now=NOW)
    # Every region of the index cannot be asked of the API: it says what to do instead.
    with pytest.raises(CloudError, match="--region"):
        price_refresh.refresh(all_regions=True, now=NOW)


def test_bulk_for_fargate_and_the_api_for_gpus(offers: PriceListServer,
                                                api: PricingStub) -> None:
    result = price_refresh.refresh(["eu-central-1"], now=NOW)
    assert result.route == "bulk"
    assert api.bodies("AmazonECS") == []  # Fargate came from the offer files
    assert {b["Filters"][0]["Value"] for b in api.bodies("AmazonEC2")} == {"eu-central-1"}
    assert result.cache.gpu[("g4dn.xlarge", "eu-central-1")].hourly == 0.658
    assert result.gpu_skipped is None


def test_the_options_are_checked() -> None:
    with pytest.raises(ConfigurationError, match=r"source='ftp'.*auto, bulk, api"):
        price_refresh.refresh(["eu-central-1"], source="ftp")
    with pytest.raises(ConfigurationError, match=r"all_regions.*regions"):
        price_refresh.refresh(["eu-central-1"], all_regions=True)
    with pytest.raises(ConfigurationError, match=r"all_regions.*bulk"):
        price_refresh.refresh(all_regions=True, source="api")
    assert pricing_command.SOURCES == price_refresh.SOURCES  # the CLI's copy


# -- the command ---------------------------------------------------------------


def test_cli_refresh_from_the_bulk_offers(offers: PriceListServer, cache_file: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(main, ["pricing", "refresh", "--region", "eu-central-1",
                                "--region", "eu-north-1"])
    assert done.exit_code == 0, done.output
    out = done.stdout
    assert "Fetched Fargate prices for 2 regions (eu-central-1, eu-north-1) from the AWS " \
           "Price List bulk offers" in out
    assert "no credentials needed" in out
    assert "published 2026-10-02T09:30:00Z (eu-north-1), 2026-11-11T12:00:00Z " \
           "(eu-central-1)" in out
    assert "Fargate Spot rates listed for: eu-central-1" in out
    assert "GPU instance prices were not refreshed" in out
    assert f"Wrote {cache_file}" in out

    shown = json.loads(runner.invoke(main, ["pricing", "show", "--json", "--region",
                                            "eu-central-1"]).output)
    row = next(r for r in shown["prices"] if r["capacity"] == "On-Demand"
               and r["arch"] == "x86_64")
    assert row["source"].startswith(f"{offers.url}{offer_path('eu-central-1')}")
    assert row["recorded"] == "2026-11-11"

    # The region that was refused for want of a price is now priced.
    est = runner.invoke(main, ["estimate", "--tasks", "100", "--task-seconds", "2",
                               "--region", "eu-central-1", "--json"])
    assert est.exit_code == 0, est.output
    assert {o["price"]["vcpu_hour"] for o in json.loads(est.output)["options"]} == {0.04656}


def test_cli_refresh_json(offers: PriceListServer, cache_file: Path) -> None:
    done = CliRunner().invoke(main, ["pricing", "refresh", "--region", "eu-central-1",
                                     "--json"])
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert data["route"] == "bulk"
    assert data["regions"] == ["eu-central-1"]
    assert data["published"] == {"eu-central-1": "2026-11-11T12:00:00Z"}
    assert data["cache"] == str(cache_file)
    assert data["gpu"] == []
    assert "credentials" in data["gpu_skipped"]
    rows = {(r["region"], r["arch"]): r for r in data["on_demand"]}
    assert rows[("eu-central-1", "x86_64")]["recorded"] == "2026-11-11"


def test_cli_refresh_errors(cache_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STARBURST_PRICE_LIST_URL", "http://127.0.0.1:9")
    runner = CliRunner()
    failed = runner.invoke(main, ["pricing", "refresh", "--region", "eu-central-1", "--json"])
    assert failed.exit_code == 1
    error = json.loads(failed.stdout)["error"]
    assert "--source api" in error["message"]
    assert "STARBURST_PRICE_LIST_URL" in error["message"]
    text = runner.invoke(main, ["pricing", "refresh", "--region", "eu-central-1"])
    assert text.exit_code == 1
    assert "no AWS credentials" in text.output
    bad = runner.invoke(main, ["pricing", "refresh", "--all-regions", "--region", "us-east-1"])
    assert bad.exit_code == 2
    assert "--all-regions" in bad.output


def test_cli_refresh_shows_progress_per_region(offers: PriceListServer,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    screen = io.StringIO()
    monkeypatch.setattr(pricing_command, "_progress_console",
                        lambda: Console(file=screen, force_terminal=True, width=120))
    done = CliRunner().invoke(main, ["pricing", "refresh", "--all-regions"])
    assert done.exit_code == 0, done.output
    drawn = screen.getvalue()
    assert "Fargate (bulk offers)" in drawn
    for region in REGIONS:
        assert region in drawn
    # --json prints no progress.
    screen.truncate(0)
    CliRunner().invoke(main, ["pricing", "refresh", "--all-regions", "--json"])
    assert "Fargate (bulk offers)" not in screen.getvalue()
