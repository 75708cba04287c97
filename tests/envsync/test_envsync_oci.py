"""Pure pieces: targets, image references, platform selection, canonical JSON."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starburst.envsync.oci import (
    DOCKER_LAYER_GZIP,
    OCI_LAYER_GZIP,
    canonical_json,
    oci_layer_type,
    parse_reference,
    select_platform,
)
from starburst.envsync.target import Target
from starburst.exceptions import ConfigurationError


@pytest.mark.parametrize(("spelling", "arch", "uv", "oci"), [
    ("x86_64", "x86_64", "x86_64-manylinux_2_28", "amd64"),
    ("AMD64", "x86_64", "x86_64-manylinux_2_28", "amd64"),
    ("arm64", "arm64", "aarch64-manylinux_2_28", "arm64"),
    ("aarch64", "arm64", "aarch64-manylinux_2_28", "arm64"),
])
def test_target_spellings(spelling: str, arch: str, uv: str, oci: str) -> None:
    target = Target.of(spelling, "3.12")
    assert (target.arch, target.uv_platform, target.oci_arch) == (arch, uv, oci)
    assert target.site_packages == "usr/local/lib/python3.12/site-packages"
    assert target.key == f"linux-{arch}-py3.12"


@pytest.mark.parametrize(("platform", "python"), [("sparc", None), ("x86_64", "3"),
                                                  ("x86_64", "2.7"), ("x86_64", "3.x")])
def test_bad_targets_are_configuration_errors(platform: str, python: str | None) -> None:
    with pytest.raises(ConfigurationError):
        Target.of(platform, python)


@pytest.mark.parametrize(("ref", "registry", "repository", "reference"), [
    ("python:3.11-slim", "registry-1.docker.io", "library/python", "3.11-slim"),
    ("docker.io/library/python", "registry-1.docker.io", "library/python", "latest"),
    ("public.ecr.aws/docker/library/python:3.12-slim", "public.ecr.aws",
     "docker/library/python", "3.12-slim"),
    ("127.0.0.1:5000/a/b:t", "127.0.0.1:5000", "a/b", "t"),
    ("localhost/x@sha256:" + "a" * 64, "localhost", "x", "sha256:" + "a" * 64),
])
def test_parse_reference(ref: str, registry: str, repository: str, reference: str) -> None:
    parsed = parse_reference(ref)
    assert (parsed.registry, parsed.repository, parsed.reference) == (registry, repository,
                                                                      reference)


_component = st.from_regex(r"[a-z0-9]{1,8}(?:[._-][a-z0-9]{1,8})?", fullmatch=True)


@settings(deadline=None, max_examples=200)
@given(host=st.sampled_from(["127.0.0.1:5000", "public.ecr.aws",
                             "1.dkr.ecr.us-east-1.amazonaws.com"]),
       path=st.lists(_component, min_size=1, max_size=3),
       tag=st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True))
def test_references_round_trip(host: str, path: list[str], tag: str) -> None:
    text = f"{host}/{'/'.join(path)}:{tag}"
    parsed = parse_reference(text)
    assert str(parsed) == text
    assert parse_reference(str(parsed)) == parsed
    assert parsed.url.startswith("http://" if host.startswith("127.") else "https://")


def test_select_platform_skips_attestations_and_other_platforms() -> None:
    digest = "sha256:" + "1" * 64
    index = {"manifests": [
        {"mediaType": "m", "digest": "sha256:" + "0" * 64, "size": 1,
         "platform": {"os": "unknown", "architecture": "unknown"}},
        {"mediaType": "m", "digest": "sha256:" + "2" * 64, "size": 1,
         "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
        {"mediaType": "m", "digest": digest, "size": 1,
         "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
    ]}
    assert select_platform(index, arch="arm64").digest == digest
    with pytest.raises(LookupError, match="linux/amd64"):
        select_platform(index, arch="amd64")


def test_canonical_json_and_layer_types() -> None:
    assert canonical_json({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'.encode()
    assert oci_layer_type(DOCKER_LAYER_GZIP) == OCI_LAYER_GZIP
    assert oci_layer_type("application/other") == "application/other"
