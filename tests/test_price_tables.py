"""The shipped price tables hold only plausible, sourced, dated rows.

Every Fargate row (:data:`starburst.pricing.PRICES`) and every GPU instance
row (:func:`starburst.gpu.instance_price`) must be a positive finite figure
that names where it came from and the ISO date it was recorded, so a wrong
or unsourced row added later fails here rather than mispricing a session.
"""

from __future__ import annotations

import datetime
import itertools
import math
from pathlib import Path

import pytest

from starburst import pricing
from starburst.gpu import gpu_instance, gpu_instances, instance_price, known_gpus, priced_regions

_FARGATE_KEYS = sorted(pricing.PRICES)
_REGIONS = sorted({region for region, _ in pricing.PRICES})
_GPU_ROWS = sorted((spec.instance_type, region) for name in known_gpus()
                   for spec in gpu_instances(name) for region in priced_regions(spec.instance_type))


def _iso_date(text: str) -> datetime.date:
    return datetime.date.fromisoformat(text)


def test_the_tables_are_not_empty() -> None:
    assert _FARGATE_KEYS
    assert _GPU_ROWS


@pytest.mark.parametrize("key", _FARGATE_KEYS, ids=lambda k: f"{k[0]}-{k[1]}")
def test_every_fargate_row_is_positive_finite_sourced_and_dated(key: tuple[str, str]) -> None:
    row = pricing.PRICES[key]
    assert (row.region, row.arch) == key
    assert row.arch in {"x86_64", "arm64"}
    for figure in (row.vcpu_hour, row.gib_hour, row.storage_gib_hour):
        assert math.isfinite(figure)
        assert figure > 0
    assert row.source.strip()
    assert _iso_date(row.recorded) <= datetime.date.today()


@pytest.mark.parametrize("region", _REGIONS)
def test_every_priced_region_has_both_architectures(region: str) -> None:
    assert (region, "x86_64") in pricing.PRICES
    assert (region, "arm64") in pricing.PRICES


@pytest.mark.parametrize("region", _REGIONS)
def test_arm64_is_cheaper_than_x86_64_in_the_same_region(region: str) -> None:
    x86, arm = pricing.PRICES[(region, "x86_64")], pricing.PRICES[(region, "arm64")]
    assert arm.vcpu_hour < x86.vcpu_hour
    assert arm.gib_hour < x86.gib_hour


@pytest.mark.parametrize("key", _FARGATE_KEYS, ids=lambda k: f"{k[0]}-{k[1]}")
def test_the_shipped_spot_rule_prices_below_on_demand(key: tuple[str, str]) -> None:
    on_demand = pricing.PRICES[key]
    spot = pricing.spot_price(on_demand)
    assert 0 < spot.vcpu_hour < on_demand.vcpu_hour
    assert 0 < spot.gib_hour < on_demand.gib_hour
    assert on_demand.source in spot.source  # the Spot figure names what it derives from


@pytest.mark.parametrize(("itype", "region"), _GPU_ROWS, ids=str)
def test_every_gpu_row_is_positive_finite_sourced_and_dated(itype: str, region: str) -> None:
    row = instance_price(itype, region)
    assert (row.instance_type, row.region, row.spot) == (itype, region, False)
    assert math.isfinite(row.hourly)
    assert row.hourly > 0
    assert region in row.source
    assert _iso_date(row.recorded) <= datetime.date.today()


@pytest.mark.parametrize(("itype", "region"), _GPU_ROWS, ids=str)
def test_an_assumed_gpu_spot_price_is_below_on_demand(itype: str, region: str) -> None:
    on_demand = instance_price(itype, region)
    spot = instance_price(itype, region, spot=True)
    assert 0 < spot.hourly < on_demand.hourly
    assert spot.recorded == on_demand.recorded


@pytest.mark.parametrize("region", sorted({r for _, r in _GPU_ROWS}))
def test_a_bigger_instance_of_one_gpu_family_never_costs_less(region: str) -> None:
    """Within a family (g5, g6, ...) price grows with GPUs and then vCPUs: a typo'd row shows."""
    by_family: dict[str, list[tuple[int, int, float, str]]] = {}
    for itype, row_region in _GPU_ROWS:
        if row_region != region:
            continue
        spec = gpu_instance(itype)
        by_family.setdefault(itype.split(".")[0], []).append(
            (spec.gpus, spec.vcpus, instance_price(itype, region).hourly, itype))
    for rows in by_family.values():
        rows.sort()
        # Same GPU count: more vCPUs and memory cost more.
        for (g1, _, p1, t1), (g2, _, p2, t2) in itertools.pairwise(rows):
            if g1 == g2:
                assert p1 < p2, f"{t1} ({p1}) should cost less than {t2} ({p2})"


_DOCS = Path(__file__).resolve().parents[1] / "docs"


def _paragraph(page: str, opening: str) -> str:
    """The paragraph or list item of ``docs/page`` that starts with ``opening``, on one line."""
    page_text = (_DOCS / page).read_text(encoding="utf-8").replace("\n- ", "\n\n- ")
    for paragraph in page_text.split("\n\n"):
        text = " ".join(paragraph.split())
        if text.startswith(opening):
            return text
    raise AssertionError(f"docs/{page} has no paragraph starting {opening!r}")


def test_the_cost_docs_name_every_region_the_fargate_table_prices() -> None:
    text = _paragraph("costs-and-quotas.md", "In a region the price table in use does not carry")
    named = {region for region in _REGIONS if f"`{region}`" in text}
    assert named == set(_REGIONS), f"docs/costs-and-quotas.md misses {set(_REGIONS) - named}"


def test_the_gpu_docs_name_every_region_the_gpu_table_prices() -> None:
    text = _paragraph("spot-graviton-gpu.md", "- **Prices.** The hourly rate is the instance's")
    regions = {region for _, region in _GPU_ROWS}
    named = {region for region in regions if f"`{region}`" in text}
    assert named == regions, f"docs/spot-graviton-gpu.md misses {regions - named}"
