"""Local stand-ins for the two AWS price sources, on 127.0.0.1.

* :class:`PricingStub`, the Pricing API. moto has none, so this small
  HTTP server answers the JSON 1.1 ``AWSPriceListService.GetProducts``
  call the way the real endpoint does (botocore's service model
  ``pricing/2017-10-15``): a POST with ``X-Amz-Target``, a JSON body with
  ``ServiceCode``/``Filters``/``FormatVersion``/``MaxResults``/``NextToken``,
  and an answer ``{"FormatVersion": "aws_v1", "PriceList": [<JSON document
  as a string>, ...], "NextToken": ...}``. Each PriceList document has the
  shape of a real product (``product.attributes``, ``terms.OnDemand.<sku>.
  <term>.priceDimensions...pricePerUnit.USD``): AmazonECS rows from
  :func:`product`, AmazonEC2 instance rows from :func:`ec2_product`. boto3
  reaches it through ``AWS_ENDPOINT_URL_PRICING``; requests are signed
  with fake credentials and nothing leaves 127.0.0.1.
* :class:`PriceListServer`, the public bulk offer files
  (``/offers/v1.0/aws/AmazonECS/current/region_index.json`` and one
  ``index.json`` per region), in the documented layout: a region index
  ``{formatVersion, disclaimer, publicationDate, regions: {code:
  {regionCode, currentVersionUrl}}}`` and offer files ``{formatVersion,
  disclaimer, offerCode, version, publicationDate, products: {sku:
  {sku, productFamily, attributes}}, terms: {OnDemand: {sku: {<sku>.<term>:
  {...}}}}}`` (https://docs.aws.amazon.com/awsaccountbilling/latest/aboutv2/
  service-region-infex-file-for-service.html and reading-service-price-list-
  file-for-services.html). starburst reaches it through
  ``STARBURST_PRICE_LIST_URL``.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

_PREFIX = {"us-east-1": "USE1", "eu-west-1": "EU", "mx-central-1": "MXC1",
           "eu-central-1": "EUC1"}
_LOCATION = {"us-east-1": "US East (N. Virginia)", "eu-west-1": "EU (Ireland)",
             "mx-central-1": "Mexico (Central)", "eu-central-1": "EU (Frankfurt)"}
_ON_DEMAND_TERM = "JRTCKXETXF"  # the On-Demand offer term code AWS uses
_RATE = "6YS6EN2CT7"


def private_pricing_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *,
                        credentials: bool) -> Path:
    """No AWS config files and a private cache directory (and fake keys when
    ``credentials``); returns the cache file a refresh writes."""
    if credentials:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("STARBURST_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "prices.json"


def _sku(*key: object) -> str:
    return f"SKU{abs(hash(key)) % 10**10:010d}"


def _on_demand(sku: str, usd: float, unit: str, description: str) -> dict[str, Any]:
    term = f"{sku}.{_ON_DEMAND_TERM}"
    return {term: {
        "priceDimensions": {f"{term}.{_RATE}": {
            "unit": unit, "endRange": "Inf", "description": description,
            "appliesTo": [], "rateCode": f"{term}.{_RATE}", "beginRange": "0",
            "pricePerUnit": {"USD": f"{usd:.10f}"}}},
        "sku": sku, "effectiveDate": "2026-11-01T00:00:00Z", "offerTermCode": _ON_DEMAND_TERM,
        "termAttributes": {}}}


def product(region: str, usage_tail: str, usd: float, *, sku: str | None = None,
            family: str = "Compute", spot: bool = False) -> dict[str, Any]:
    """One AmazonECS PriceList document, shaped like the real ones."""
    sku = sku or _sku(region, usage_tail, spot)
    usage = f"{_PREFIX.get(region, 'XX1')}-{'SpotUsage:' if spot else ''}{usage_tail}"
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
        "terms": {"OnDemand": _on_demand(sku, usd, "hours", f"AWS Fargate {usage}")},
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


#: The attributes of the Linux, shared-tenancy, On-Demand row of an instance type.
LINUX_SHARED = {"operatingSystem": "Linux", "tenancy": "Shared", "preInstalledSw": "NA",
                "capacitystatus": "Used", "licenseModel": "No License required"}


def ec2_product(region: str, instance_type: str, usd: float,
                **attributes: str) -> dict[str, Any]:
    """One AmazonEC2 instance PriceList document (Linux, shared, used unless overridden)."""
    attrs = {**LINUX_SHARED, **attributes}
    sku = _sku(region, instance_type, tuple(sorted(attrs.items())))
    usage = f"{_PREFIX.get(region, 'XX1')}-BoxUsage:{instance_type}"
    return {
        "product": {
            "productFamily": "Compute Instance",
            "attributes": {
                "regionCode": region, "servicecode": "AmazonEC2", "instanceType": instance_type,
                "instanceFamily": "GPU instance", "usagetype": usage,
                "operation": "RunInstances", "location": _LOCATION.get(region, region),
                "locationType": "AWS Region", "marketoption": "OnDemand", **attrs},
            "sku": sku},
        "serviceCode": "AmazonEC2",
        "terms": {
            "OnDemand": _on_demand(sku, usd, "Hrs",
                                   f"${usd} per On Demand Linux {instance_type} Instance Hour"),
            # A Reserved term is listed too; only OnDemand counts.
            "Reserved": {f"{sku}.4NA7Y494T4": {
                "priceDimensions": {f"{sku}.4NA7Y494T4.{_RATE}": {
                    "unit": "Hrs", "pricePerUnit": {"USD": f"{usd / 2:.10f}"},
                    "beginRange": "0", "endRange": "Inf", "appliesTo": [],
                    "description": "Linux/UNIX (Amazon VPC), reserved"}},
                "sku": sku, "offerTermCode": "4NA7Y494T4",
                "effectiveDate": "2026-11-01T00:00:00Z",
                "termAttributes": {"LeaseContractLength": "1yr",
                                   "PurchaseOption": "No Upfront"}}},
        },
        "version": "20261101000000", "publicationDate": "2026-11-01T00:00:00Z",
    }


def gpu_products(region: str, prices: dict[str, float]) -> list[dict[str, Any]]:
    """The Linux rows of ``prices`` (type -> $/h), each beside rows the filters must drop."""
    rows: list[dict[str, Any]] = []
    for itype, usd in prices.items():
        rows += [
            ec2_product(region, itype, usd),
            ec2_product(region, itype, usd * 1.8, operatingSystem="Windows"),
            ec2_product(region, itype, usd * 1.1, tenancy="Dedicated"),
            ec2_product(region, itype, usd * 0.01, capacitystatus="UnusedCapacityReservation"),
            ec2_product(region, itype, usd * 1.5, preInstalledSw="SQL Std"),
        ]
    return rows


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (a timeout test) is no error of the server's."""


class _Server:
    """A ThreadingHTTPServer on 127.0.0.1 run in a thread, as a context manager."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = _QuietServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class PricingStub:
    """A Pricing API endpoint on 127.0.0.1 serving ``products`` (any service code)."""

    def __init__(self, products: list[dict[str, Any]], *, page_size: int = 3) -> None:
        self.products = products
        self.page_size = page_size
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.fail_with: tuple[int, str, str] | None = None
        #: When set, ``fail_with`` answers only the requests for this service code.
        self.fail_service: str | None = None
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub._lock:
                    stub.requests.append((dict(self.headers), body))
                status, answer = stub.answer(self.headers.get("X-Amz-Target", ""), body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("x-amzn-RequestId", "stub-request")
                self.end_headers()
                self.wfile.write(data)

        self._server = _Server(Handler)

    @property
    def url(self) -> str:
        return self._server.url

    def bodies(self, service: str) -> list[dict[str, Any]]:
        """The request bodies that asked ``service`` (AmazonECS, AmazonEC2)."""
        return [b for _, b in self.requests if b.get("ServiceCode") == service]

    def answer(self, target: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if target != "AWSPriceListService.GetProducts":
            return 400, {"__type": "UnknownOperationException", "message": target}
        if self.fail_with is not None and self.fail_service in (None, body.get("ServiceCode")):
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
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()


INDEX_PATH = "/offers/v1.0/aws/AmazonECS/current/region_index.json"
#: The offer version the served region index points at.
VERSION = "20261111120000"


def offer_path(region: str) -> str:
    """Where the region index says ``region``'s current AmazonECS offer file is."""
    return f"/offers/v1.0/aws/AmazonECS/{VERSION}/{region}/index.json"


def offer_file(region: str, docs: list[dict[str, Any]], *,
               published: str = "2026-11-11T12:00:00Z") -> dict[str, Any]:
    """A per-region AmazonECS offer file holding ``docs`` (GetProducts-shaped products)."""
    mine = [d for d in docs if d["product"]["attributes"]["regionCode"] == region]
    return {
        "formatVersion": "v1.0",
        "disclaimer": "This pricing list is for informational purposes only.",
        "offerCode": "AmazonECS",
        "version": VERSION,
        "publicationDate": published,
        "products": {d["product"]["sku"]: d["product"] for d in mine},
        "terms": {"OnDemand": {d["product"]["sku"]: d["terms"]["OnDemand"] for d in mine}},
    }


def region_index(regions: list[str], *, published: str = "2026-11-11T12:00:00Z"
                 ) -> dict[str, Any]:
    """The AmazonECS region index listing ``regions``."""
    return {
        "formatVersion": "v1.0",
        "disclaimer": "This pricing list is for informational purposes only.",
        "publicationDate": published,
        "regions": {r: {"regionCode": r, "currentVersionUrl": offer_path(r)} for r in regions},
    }


class PriceListServer:
    """The bulk offer files on 127.0.0.1: ``files`` maps a path to a JSON document.

    ``failures`` maps a path to the statuses to answer before the file
    (one per request: ``[503, 503]`` fails twice, then serves); ``stall``
    maps a path to seconds to wait before answering; ``hits`` counts the
    requests per path.
    """

    def __init__(self, files: dict[str, Any]) -> None:
        self.files = files
        self.failures: dict[str, list[int]] = {}
        self.stall: dict[str, float] = {}
        self.hits: dict[str, int] = {}
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                status, data = server.answer(self.path, dict(self.headers))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = _Server(Handler)

    @property
    def url(self) -> str:
        return self._server.url

    def answer(self, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        with self._lock:
            self.hits[path] = self.hits.get(path, 0) + 1
            self.headers.append(headers)
        time.sleep(self.stall.get(path, 0.0))
        with self._lock:
            pending = self.failures.get(path)
            if pending:
                return pending.pop(0), b'{"message": "stub failure"}'
        if path not in self.files:
            return 404, b"<Error><Code>NoSuchKey</Code></Error>"
        doc = self.files[path]
        return 200, doc if isinstance(doc, bytes) else json.dumps(doc).encode()

    def __enter__(self) -> PriceListServer:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()


def bulk_files(docs: list[dict[str, Any]], regions: list[str], *,
               published: dict[str, str] | None = None) -> dict[str, Any]:
    """The region index and one offer file per region, for :class:`PriceListServer`."""
    published = published or {}
    files: dict[str, Any] = {INDEX_PATH: region_index(regions)}
    for region in regions:
        files[offer_path(region)] = offer_file(
            region, docs, published=published.get(region, "2026-11-11T12:00:00Z"))
    return files
