"""The registry client: chunked uploads, HEAD before upload, retries, auth, mounts.

ECR's quirks are played by an in-memory fake behind ``httpx.MockTransport``
(PATCH answered with 201 and a stale Range); the rest runs against the
real CNCF registries of the fixtures.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from _envsync_support import PYTHON, payload

from starburst.envsync.auth import RegistryAuth, parse_challenge
from starburst.envsync.base import copy_base, resolve_base
from starburst.envsync.errors import RegistryError
from starburst.envsync.oci import parse_reference, sha256_digest
from starburst.envsync.registry import Registry
from starburst.envsync.target import Target


@dataclass
class FakeEcr:
    """Blob uploads the way ECR answers them: PATCH -> 201 with a Range that lags, and
    only the first PATCH of an upload session kept (later ones are discarded)."""

    blobs: dict[str, bytes] = field(default_factory=dict)
    sessions: dict[str, bytearray] = field(default_factory=dict)
    ranges: list[str] = field(default_factory=list)
    fail_next: list[int] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    opened: int = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(f"{request.method} {request.url.path}")
        if self.fail_next:
            return httpx.Response(self.fail_next.pop(0))
        path = request.url.path
        blob = re.fullmatch(r"/v2/(.+)/blobs/(sha256:[0-9a-f]+)", path)
        if request.method == "HEAD" and blob:
            return httpx.Response(200 if blob.group(2) in self.blobs else 404)
        if request.method == "POST" and path.endswith("/blobs/uploads/"):
            sid = f"s{self.opened}"
            self.opened += 1
            self.sessions[sid] = bytearray()
            return httpx.Response(202, headers={"Location": f"/v2/repo/blobs/uploads/{sid}"})
        session = re.fullmatch(r"/v2/.+/blobs/uploads/(s\d+)", path)
        if request.method == "PATCH" and session:
            buf = self.sessions[session.group(1)]
            self.ranges.append(request.headers["content-range"])
            body = request.read()
            if not buf:  # ECR keeps the first PATCH's bytes and drops later ones
                start, end = (int(x) for x in request.headers["content-range"].split("-"))
                assert start == 0
                buf.extend(body)
                assert end == len(buf) - 1
            # ECR's answer: 201, and a Range that reports only the first byte.
            return httpx.Response(201, headers={"Range": "0-0",
                                                "Location": request.url.path})
        if request.method == "DELETE" and session:
            self.sessions.pop(session.group(1), None)
            return httpx.Response(204)
        if request.method == "PUT" and session:
            data = bytes(self.sessions.pop(session.group(1)))
            digest = request.url.params["digest"]
            assert sha256_digest(data) == digest
            self.blobs[digest] = data
            return httpx.Response(201, headers={"Docker-Content-Digest": digest})
        return httpx.Response(404)


def _fake(fake: FakeEcr, chunk: int = 1000) -> Registry:
    return Registry("https://123456789012.dkr.ecr.us-east-1.amazonaws.com",
                    transport=httpx.MockTransport(fake), chunk_size=chunk)


def test_a_blob_goes_up_as_one_streamed_patch_whatever_the_range_answered() -> None:
    fake = FakeEcr()
    data = payload("blob", 3500)
    digest = sha256_digest(data)
    seen: list[int] = []
    with _fake(fake) as reg:
        assert reg.push_blob("repo", digest, data, progress=seen.append) == 3500
    assert fake.blobs[digest] == data  # whole, though ECR keeps one PATCH per session
    assert fake.ranges == ["0-3499"]
    assert seen == [1000, 1000, 1000, 500]  # progress still moves per chunk read


def test_a_blob_already_present_is_not_sent_again(tmp_path: Path) -> None:
    fake = FakeEcr()
    blob = tmp_path / "blob"
    blob.write_bytes(payload("again", 2500))
    digest = "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()
    with _fake(fake) as reg:
        assert reg.push_blob("repo", digest, blob) == 2500
        fake.calls.clear()
        assert reg.push_blob("repo", digest, blob) == 0
    assert fake.calls == [f"HEAD /v2/repo/blobs/{digest}"]


def test_transient_errors_are_retried_and_permanent_ones_are_not(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("starburst.envsync.registry.time.sleep", lambda s: None)
    fake = FakeEcr(fail_next=[503, 502])
    data = b"x" * 10
    with _fake(fake) as reg:
        assert reg.push_blob("repo", sha256_digest(data), data) == 10
        fake.fail_next = [403]
        with pytest.raises(RegistryError) as info:
            reg.has_blob("repo", sha256_digest(b"other"))
    assert info.value.status == 403
    assert "credentials refused" in str(info.value)


def test_an_upload_failing_midway_restarts_in_a_new_session(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("starburst.envsync.registry.time.sleep", lambda s: None)
    fake = FakeEcr()
    real = fake.__call__
    state = {"patches": 0}

    def flaky(request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH":
            state["patches"] += 1
            if state["patches"] == 1:
                request.read()
                return httpx.Response(500)
        return real(request)

    data = payload("flaky", 2500)
    with Registry("https://r.example", transport=httpx.MockTransport(flaky),
                  chunk_size=1000) as reg:
        assert reg.push_blob("repo", sha256_digest(data), data) == 2500
    assert fake.blobs[sha256_digest(data)] == data
    # The broken session was cancelled; a new one carried the whole blob.
    assert fake.sessions == {}
    assert "DELETE /v2/repo/blobs/uploads/s0" in fake.calls
    assert fake.calls[-1] == "PUT /v2/repo/blobs/uploads/s1"


def test_bearer_challenge_fetches_a_token_once_per_repository() -> None:
    token_calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example":
            token_calls.append(request.url.params["scope"])
            return httpx.Response(200, json={"token": "tkn"})
        if request.headers.get("authorization") != "Bearer tkn":
            return httpx.Response(401, headers={"WWW-Authenticate": (
                'Bearer realm="https://auth.example/token",service="reg",'
                'scope="repository:library/python:pull"')})
        return httpx.Response(200, content=b"{}", headers={
            "Content-Type": "application/vnd.oci.image.manifest.v1+json"})

    with Registry("https://reg.example", auth=RegistryAuth(),
                  transport=httpx.MockTransport(handler)) as reg:
        reg.get_manifest("library/python", "3.11-slim")
        reg.get_manifest("library/python", "3.12-slim")
    assert token_calls == ["repository:library/python:pull"]


def test_parse_challenge() -> None:
    assert parse_challenge('Bearer realm="https://a/t",service="s",scope="x:y:pull,push"') == (
        "bearer", {"realm": "https://a/t", "service": "s", "scope": "x:y:pull,push"})
    assert parse_challenge('Basic realm="ecr"') == ("basic", {"realm": "ecr"})


def test_basic_auth_against_the_real_registry(ecr_server: object, ecr_password: str) -> None:
    url = ecr_server.url  # type: ignore[attr-defined]
    with Registry(url) as anonymous, pytest.raises(RegistryError) as info:
        anonymous.has_blob("repo", sha256_digest(b"x"))
    assert info.value.status == 401
    creds = ("AWS", ecr_password)
    with Registry(url, auth=RegistryAuth(lambda: creds)) as reg:
        assert reg.push_blob("auth/check", sha256_digest(b"hello"), b"hello") == 5
        assert reg.has_blob("auth/check", sha256_digest(b"hello"))


def test_mount_inside_one_registry_and_copy_across_registries(
        registry: Registry, source: Registry, base_image: str, tmp_path: Path,
        repo: str) -> None:
    ref = parse_reference(base_image)
    base = resolve_base(source, ref, Target.of("x86_64"), cache_dir=tmp_path)
    assert base.config["architecture"] == "amd64"
    sent = copy_base(base, source, registry, repo)
    assert sent == sum(layer.size for layer in base.layers) > 0
    assert copy_base(base, source, registry, repo) == 0  # once only
    # Same registry: the blob is mounted into another repository, no bytes sent.
    before = registry.bytes_uploaded
    assert registry.mount_blob(f"{repo}-other", base.layers[0].digest, repo)
    assert registry.has_blob(f"{repo}-other", base.layers[0].digest)
    assert registry.bytes_uploaded == before
    arm = resolve_base(source, ref, Target.of("arm64"), cache_dir=tmp_path)
    assert arm.config["architecture"] == "arm64"
    assert arm.digest != base.digest


def test_base_resolution_is_cached_so_a_warm_check_skips_the_source(
        source: Registry, base_image: str, tmp_path: Path) -> None:
    ref = parse_reference(base_image)
    first = resolve_base(source, ref, Target.of("x86_64"), cache_dir=tmp_path)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"unexpected request {request.url}")

    with Registry(source.url, transport=httpx.MockTransport(refuse)) as offline:
        again = resolve_base(offline, ref, Target.of("x86_64"), cache_dir=tmp_path)
        assert again == first
        # A day later the tag is looked up again.
        with pytest.raises(AssertionError):
            resolve_base(offline, ref, Target.of("x86_64"), cache_dir=tmp_path,
                         clock=2e10)
    assert PYTHON in ref.reference
