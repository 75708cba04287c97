"""The GPU catalog: instance resolution, prices with their sources, EC2 GPU quota codes."""

from __future__ import annotations

import itertools

import pytest

from starburst import ConfigurationError
from starburst.gpu import (
    GPU_SPOT_DISCOUNT,
    GpuInstance,
    given_price,
    gpu_instance,
    gpu_instances,
    gpu_quota_code,
    gpu_quota_name,
    instance_price,
    known_gpus,
    priced_regions,
    resolve_gpu,
)

# -- instances ------------------------------------------------------------------


def test_known_gpus_lists_the_catalogued_accelerators() -> None:
    assert known_gpus() == sorted(known_gpus())
    assert {"nvidia-t4", "nvidia-a10g", "nvidia-l4", "nvidia-l40s", "nvidia-v100",
            "nvidia-a100", "nvidia-h100", "nvidia-t4g"} == set(known_gpus())


@pytest.mark.parametrize(("gpu", "default"), [
    ("nvidia-t4", "g4dn.xlarge"), ("nvidia-a10g", "g5.xlarge"), ("nvidia-l4", "g6.xlarge"),
    ("nvidia-l40s", "g6e.xlarge"), ("nvidia-v100", "p3.2xlarge"),
    ("nvidia-a100", "p4d.24xlarge"), ("nvidia-h100", "p5.48xlarge"),
    ("nvidia-t4g", "g5g.xlarge"),
])
def test_each_gpu_defaults_to_its_smallest_instance(gpu: str, default: str) -> None:
    chosen = resolve_gpu(gpu)
    assert chosen.instance_type == default
    assert chosen.gpu == gpu
    assert chosen.vcpus == min(i.vcpus for i in gpu_instances(gpu))


def test_default_t4_instance_has_the_ec2_specification() -> None:
    assert resolve_gpu("nvidia-t4") == GpuInstance(
        instance_type="g4dn.xlarge", gpu="nvidia-t4", gpus=1, vcpus=4, memory_mib=16384,
        family="G", arch="x86_64")


@pytest.mark.parametrize(("itype", "gpus", "vcpus", "memory_gib", "family", "arch"), [
    ("g4dn.12xlarge", 4, 48, 192, "G", "x86_64"),
    ("g5.48xlarge", 8, 192, 768, "G", "x86_64"),
    ("g6e.xlarge", 1, 4, 32, "G", "x86_64"),
    ("g5g.xlarge", 1, 4, 8, "G", "arm64"),
    ("p3.2xlarge", 1, 8, 61, "P", "x86_64"),
    ("p4d.24xlarge", 8, 96, 1152, "P", "x86_64"),
    ("p5.48xlarge", 8, 192, 2048, "P", "x86_64"),
])
def test_instance_specifications(itype: str, gpus: int, vcpus: int, memory_gib: int,
                                 family: str, arch: str) -> None:
    got = gpu_instance(itype)
    assert (got.gpus, got.vcpus, got.memory_mib, got.family, got.arch) == (
        gpus, vcpus, memory_gib * 1024, family, arch)


def test_instance_type_picks_another_size_with_that_gpu() -> None:
    assert resolve_gpu("nvidia-t4", "g4dn.12xlarge").gpus == 4
    assert resolve_gpu("NVIDIA-A10G", " G5.2XLARGE ").instance_type == "g5.2xlarge"


def test_short_gpu_names_are_accepted() -> None:
    assert resolve_gpu("T4") == resolve_gpu("nvidia-t4")
    assert resolve_gpu("a100").instance_type == "p4d.24xlarge"


def test_unknown_gpu_names_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match="unknown gpu 'nvidia-k80'") as err:
        resolve_gpu("nvidia-k80")
    assert "nvidia-t4" in str(err.value)
    assert "nvidia-h100" in str(err.value)


def test_instance_without_that_gpu_names_the_types_that_have_it() -> None:
    with pytest.raises(ConfigurationError, match=r"g5\.xlarge carries nvidia-a10g") as err:
        resolve_gpu("nvidia-t4", "g5.xlarge")
    message = str(err.value)
    assert "g4dn.xlarge" in message
    assert "g4dn.16xlarge" in message
    assert "gpu='nvidia-a10g'" in message


def test_unknown_instance_type_names_the_catalog() -> None:
    with pytest.raises(ConfigurationError, match=r"'m5\.xlarge' is not a GPU instance") as err:
        resolve_gpu("nvidia-t4", "m5.xlarge")
    assert "g4dn.xlarge" in str(err.value)


def test_every_instance_is_consistent() -> None:
    for gpu in known_gpus():
        for inst in gpu_instances(gpu):
            assert inst.gpus >= 1
            assert inst.vcpus >= 4
            assert inst.memory_mib >= 8192
            assert inst.family == inst.instance_type[0].upper()
            assert inst.arch == ("arm64" if inst.instance_type.startswith("g5g.") else "x86_64")


# -- prices ---------------------------------------------------------------------


@pytest.mark.parametrize(("itype", "hourly"), [
    ("g4dn.xlarge", 0.526), ("g4dn.2xlarge", 0.752), ("g5.xlarge", 1.006),
    ("g5.2xlarge", 1.212), ("g6.xlarge", 0.8048), ("p3.2xlarge", 3.06),
])
def test_us_east_1_on_demand_prices(itype: str, hourly: float) -> None:
    price = instance_price(itype, "us-east-1")
    assert price.hourly == pytest.approx(hourly)
    assert not price.spot
    assert price.source.startswith("https://aws.amazon.com/ec2/pricing/on-demand/")
    assert price.recorded == "2026-11-28"


def test_bigger_sizes_cost_more_per_hour() -> None:
    for gpu in known_gpus():
        priced = [(i.vcpus, i.gpus, instance_price(i.instance_type, "us-east-1").hourly)
                  for i in gpu_instances(gpu) if priced_regions(i.instance_type)]
        for (c1, g1, p1), (c2, g2, p2) in itertools.pairwise(priced):
            if c2 > c1 and g2 >= g1:
                assert p2 > p1


def test_unknown_region_is_an_error_never_a_guess() -> None:
    with pytest.raises(ConfigurationError, match=r"no On-Demand price is recorded for "
                       r"g4dn\.xlarge in 'ap-south-1'") as err:
        instance_price("g4dn.xlarge", "ap-south-1")
    assert "--gpu-rate" in str(err.value)
    assert "us-east-1" in str(err.value)


def test_unconfirmed_price_is_an_error() -> None:
    # g6e.12xlarge's price differs between sources, so none is recorded.
    with pytest.raises(ConfigurationError, match="recorded for: no region"):
        instance_price("g6e.12xlarge", "us-east-1")


def test_spot_price_assumes_the_stated_discount() -> None:
    spot = instance_price("g4dn.xlarge", "us-east-1", spot=True)
    assert spot.spot
    assert spot.hourly == pytest.approx(0.526 * (1 - GPU_SPOT_DISCOUNT))
    assert spot.source.startswith("assumed 60% below On-Demand")
    assert "https://aws.amazon.com/ec2/pricing/on-demand/" in spot.source
    mine = instance_price("g4dn.xlarge", "us-east-1", spot=True, discount=0.5)
    assert mine.hourly == pytest.approx(0.263)
    assert "your figure" in mine.source
    with pytest.raises(ConfigurationError, match=r"\[0, 1\)"):
        instance_price("g4dn.xlarge", "us-east-1", spot=True, discount=1.0)


def test_given_price_overrides_and_says_so() -> None:
    price = given_price("g4dn.xlarge", "ap-south-1", 0.2, spot=True)
    assert (price.hourly, price.spot, price.region) == (0.2, True, "ap-south-1")
    assert price.source == "your Spot rate for g4dn.xlarge"
    with pytest.raises(ConfigurationError, match="positive"):
        given_price("g4dn.xlarge", "us-east-1", 0.0)


# -- quotas ---------------------------------------------------------------------


@pytest.mark.parametrize(("family", "spot", "code", "name"), [
    ("G", False, "L-DB2E81BA", "Running On-Demand G and VT instances"),
    ("G", True, "L-3819A6DF", "All G and VT Spot Instance Requests"),
    ("P", False, "L-417A185B", "Running On-Demand P instances"),
    ("P", True, "L-7212CCBC", "All P Spot Instance Requests"),
])
def test_quota_codes(family: str, spot: bool, code: str, name: str) -> None:
    assert gpu_quota_code(family, spot=spot) == code
    assert gpu_quota_name(family, spot=spot) == name


def test_unknown_family_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match="unknown EC2 GPU instance family 'X'"):
        gpu_quota_code("X", spot=False)
