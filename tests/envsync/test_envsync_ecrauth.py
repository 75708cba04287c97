"""ECR tokens: decoded, cached despite moto's 2015 expiry, refreshed when refused."""

from __future__ import annotations

import httpx
import pytest

from starburst.envsync import ecrauth
from starburst.envsync.ecrauth import REGISTRY_URL_ENV, EcrCredentials, ecr_registry
from starburst.envsync.oci import sha256_digest


@pytest.fixture(autouse=True)
def _fresh_token_cache() -> None:
    ecrauth._CACHE.clear()


class _Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _count_calls(client: object) -> list[str]:
    calls: list[str] = []
    client.meta.events.register(  # type: ignore[attr-defined]
        "before-call.ecr.GetAuthorizationToken", lambda **kw: calls.append("token"))
    return calls


def test_past_expiry_is_read_as_one_hour_and_never_loops(ecr_client: object) -> None:
    calls = _count_calls(ecr_client)
    clock = _Clock()
    creds = EcrCredentials(ecr_client, clock=clock)  # type: ignore[arg-type]
    user, password = creds()
    assert user == "AWS"
    assert password == "123456789012-auth-token"
    for _ in range(5):
        creds()
    assert calls == ["token"]  # moto's 2015 expiry did not make every call refetch
    clock.now += 3000  # inside the hour (minus the refresh margin)
    creds()
    assert calls == ["token"]
    clock.now += 700  # past it: one refresh
    creds()
    creds()
    assert calls == ["token", "token"]


def test_tokens_are_shared_by_clients_of_one_registry(ecr_client: object) -> None:
    calls = _count_calls(ecr_client)
    EcrCredentials(ecr_client)()  # type: ignore[arg-type]
    EcrCredentials(ecr_client)()  # type: ignore[arg-type]
    assert calls == ["token"]


def test_registry_url_override_and_reference_name(
        ecr_client: object, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.url.host}:{request.headers.get('authorization', '')[:6]}")
        return httpx.Response(404)

    monkeypatch.setenv(REGISTRY_URL_ENV, "http://127.0.0.1:9")
    with ecr_registry(ecr_client,  # type: ignore[arg-type]
                      transport=httpx.MockTransport(handler)) as reg:
        assert reg.url == "http://127.0.0.1:9"
        # Image references keep the name ECS pulls from: moto's proxyEndpoint host.
        assert reg.name == "123456789012.dkr.ecr.us-east-1.amazonaws.com"
        assert not reg.has_blob("repo", sha256_digest(b"x"))
    # Basic credentials went with the first request: no challenge round trip.
    assert seen == ["127.0.0.1:Basic "]
    with ecr_registry(ecr_client, registry_url="http://127.0.0.1:8",  # type: ignore[arg-type]
                      transport=httpx.MockTransport(handler)) as reg:
        assert reg.url == "http://127.0.0.1:8"


def test_a_refused_token_is_replaced_once(ecr_client: object) -> None:
    calls = _count_calls(ecr_client)
    answers = [401, 200]

    def handler(request: httpx.Request) -> httpx.Response:
        status = answers.pop(0) if answers else 401
        return httpx.Response(status, headers={"WWW-Authenticate": 'Basic realm="ecr"'})

    with ecr_registry(ecr_client, registry_url="http://127.0.0.1:9",  # type: ignore[arg-type]
                      transport=httpx.MockTransport(handler)) as reg:
        assert reg.has_blob("repo", sha256_digest(b"x"))
    assert calls == ["token", "token"]  # the first was refused and dropped
