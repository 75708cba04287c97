"""ECR credentials for the registry API, from ``ecr:GetAuthorizationToken``.

ECR's registry API takes HTTP Basic auth: user ``AWS`` and, as password,
the token that ``GetAuthorizationToken`` returns base64-encoded as
``AWS:<password>``. A token lasts 12 hours; it is cached per process
(shared by every client for one registry) and refreshed five minutes
before it expires, or at once when the registry refuses it.

Emulators differ from ECR in two ways handled here:

* moto returns an ``expiresAt`` in 2015. A past expiry is read as "valid
  for an hour from now", so the cache never spins fetching tokens that
  are already expired.
* moto's ``proxyEndpoint`` names real AWS. The registry URL is therefore
  overridable: argument > ``STARBURST_REGISTRY_URL`` > ``proxyEndpoint``.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from .auth import RegistryAuth
from .errors import RegistryError
from .registry import DEFAULT_CHUNK_BYTES, Registry

if TYPE_CHECKING:
    from mypy_boto3_ecr.client import ECRClient

__all__ = ["REGISTRY_URL_ENV", "EcrCredentials", "ecr_registry"]

#: Environment variable that overrides the registry URL (emulators, proxies).
REGISTRY_URL_ENV = "STARBURST_REGISTRY_URL"
# Refresh this long before the stated expiry, so no request races it.
_REFRESH_MARGIN_S = 300.0
# How long a token whose stated expiry already passed is trusted (emulators).
_FALLBACK_TTL_S = 3600.0


@dataclass(frozen=True, slots=True)
class _Token:
    user: str
    password: str
    endpoint: str
    expires_at: float


# One token per (ECR endpoint, region, registry id), shared by all clients
# of this process: a new session does not ask ECR again.
_CACHE: dict[tuple[str, str, str | None], _Token] = {}
_CACHE_LOCK = threading.Lock()


class EcrCredentials:
    """``(user, password)`` for an ECR registry, cached until shortly before expiry.

    Args:
        client: a boto3 ECR client.
        registry_id: the registry's account id; the caller's by default.
        clock: returns the current epoch time (tests move it).
    """

    def __init__(self, client: ECRClient, *, registry_id: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._registry_id = registry_id
        self._clock = clock
        self._key = (str(client.meta.endpoint_url), str(client.meta.region_name), registry_id)

    def __call__(self) -> tuple[str, str]:
        """The current user and password, fetching a token when needed."""
        token = self._token()
        return token.user, token.password

    @property
    def endpoint(self) -> str:
        """The registry URL ECR states (``https://<id>.dkr.ecr.<region>.amazonaws.com``)."""
        return self._token().endpoint

    def invalidate(self) -> None:
        """Forget the cached token (the registry refused it)."""
        with _CACHE_LOCK:
            _CACHE.pop(self._key, None)

    def _token(self) -> _Token:
        now = self._clock()
        with _CACHE_LOCK:
            cached = _CACHE.get(self._key)
            if cached is not None and now < cached.expires_at - _REFRESH_MARGIN_S:
                return cached
        token = self._fetch(now)
        with _CACHE_LOCK:
            _CACHE[self._key] = token
        return token

    def _fetch(self, now: float) -> _Token:
        from ..aws.errors import translate_errors

        kwargs: dict[str, Any] = {}
        if self._registry_id:
            kwargs["registryIds"] = [self._registry_id]
        with translate_errors("ECR GetAuthorizationToken", kind=RegistryError):
            resp = self._client.get_authorization_token(**kwargs)
        data = resp.get("authorizationData") or []
        if not data or "authorizationToken" not in data[0]:
            raise RegistryError("ECR GetAuthorizationToken returned no token")
        try:
            decoded = base64.b64decode(data[0]["authorizationToken"]).decode()
        except ValueError as exc:
            raise RegistryError("ECR returned an authorization token that is not "
                                "base64 of user:password") from exc
        user, sep, password = decoded.partition(":")
        if not sep:
            raise RegistryError("ECR returned an authorization token without a password")
        expires = data[0].get("expiresAt")
        expires_at = expires.timestamp() if expires is not None else 0.0
        if expires_at <= now + _REFRESH_MARGIN_S:
            expires_at = now + _FALLBACK_TTL_S
        return _Token(user=user, password=password,
                      endpoint=str(data[0].get("proxyEndpoint", "")), expires_at=expires_at)


def ecr_registry(client: ECRClient | None = None, *, registry_url: str | None = None,
                 registry_id: str | None = None, region: str | None = None,
                 chunk_size: int = DEFAULT_CHUNK_BYTES, **kwargs: Any) -> Registry:
    """A :class:`Registry` for the account's ECR, authenticated with ECR tokens.

    Args:
        client: a boto3 ECR client; starburst's client factory makes one by default.
        registry_url: where to send API calls; ``STARBURST_REGISTRY_URL`` or
            the token's ``proxyEndpoint`` by default.
        registry_id: the registry's account id; the caller's by default.
        region: region of the default client.
        chunk_size, kwargs: passed to :class:`Registry`.

    Raises:
        RegistryError: no token could be obtained.
    """
    if client is None:
        from ..aws.clients import client as make_client

        client = make_client("ecr", region=region)
    creds = EcrCredentials(client, registry_id=registry_id)
    endpoint = creds.endpoint
    url = registry_url or os.environ.get(REGISTRY_URL_ENV) or endpoint
    if not url:
        raise RegistryError("ECR returned no proxyEndpoint; pass registry_url= or set "
                            f"{REGISTRY_URL_ENV}")
    if "://" not in url:
        url = f"https://{url}"
    auth = RegistryAuth(creds, invalidate=creds.invalidate, basic_first=True)
    name = urlparse(endpoint).netloc or None
    return Registry(url, auth=auth, name=name, chunk_size=chunk_size, **kwargs)
