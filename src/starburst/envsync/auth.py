"""Authentication to container registries, as an ``httpx.Auth`` flow.

Registries answer 401 with a challenge; this flow answers it:

* ``Basic realm=...`` (ECR, the CNCF registry with htpasswd): send the
  user and password. With ``basic_first`` the header goes on every request
  from the start, saving a round trip per call (what ECR wants).
* ``Bearer realm=...,service=...,scope=...`` (Docker Hub, ECR Public, most
  public registries): fetch a token from the realm (anonymously, or with
  the credentials) and retry with it. Tokens are kept per repository and
  access (pull, or push and pull).

A second 401 after fresh credentials is final: the caller raises.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Callable, Generator

import httpx

__all__ = ["Credentials", "RegistryAuth", "parse_challenge"]

#: Returns ``(username, password)``; may fetch and cache (an ECR token).
Credentials = Callable[[], tuple[str, str]]

_PARAM_RE = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))')
_REPO_RE = re.compile(r"^/v2/(?P<repo>.+?)/(?:blobs|manifests|tags)/")


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``('bearer', {'realm': ..., 'service': ..., 'scope': ...})`` from WWW-Authenticate."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
              for m in _PARAM_RE.finditer(rest)}
    return scheme.lower(), params


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class RegistryAuth(httpx.Auth):
    """Answers registry challenges with Basic credentials or Bearer tokens.

    Args:
        credentials: where user and password come from; None for anonymous
            access (Bearer tokens are still fetched, without credentials).
        invalidate: called when the registry rejects the credentials, so a
            cached token is dropped before the single retry.
        basic_first: send Basic credentials without waiting for a challenge.
    """

    # Blob downloads stream; only the token response is read, explicitly.
    requires_response_body = False

    def __init__(self, credentials: Credentials | None = None, *,
                 invalidate: Callable[[], None] | None = None,
                 basic_first: bool = False) -> None:
        self._credentials = credentials
        self._invalidate = invalidate
        self._basic = basic_first and credentials is not None
        self._tokens: dict[tuple[str, bool], str] = {}
        self._lock = threading.Lock()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Send ``request``, answering at most one challenge (plus a token fetch)."""
        key = _token_key(request)
        with self._lock:
            token = self._tokens.get(key)
            basic = self._basic
        if token is not None:
            request.headers["Authorization"] = f"Bearer {token}"
        elif basic and self._credentials is not None:
            request.headers["Authorization"] = _basic(*self._credentials())
        response = yield request
        if response.status_code != 401:
            return
        scheme, params = parse_challenge(response.headers.get("www-authenticate", ""))
        if scheme == "basic" and self._credentials is not None:
            if "Authorization" in request.headers and self._invalidate is not None:
                self._invalidate()  # the credentials we sent were refused: get fresh ones
            with self._lock:
                self._basic = True
            request.headers["Authorization"] = _basic(*self._credentials())
            yield request
        elif scheme == "bearer" and "realm" in params:
            token_request = httpx.Request(
                "GET", params["realm"],
                params={k: v for k, v in params.items() if k in ("service", "scope")})
            if self._credentials is not None:
                token_request.headers["Authorization"] = _basic(*self._credentials())
            token_response = yield token_request
            if token_response.status_code != 200:
                return
            try:
                token_response.read()
                body = token_response.json()
                token = str(body.get("token") or body.get("access_token") or "")
            except ValueError:
                return
            if not token:
                return
            with self._lock:
                self._tokens[key] = token
            request.headers["Authorization"] = f"Bearer {token}"
            yield request


def _token_key(request: httpx.Request) -> tuple[str, bool]:
    """(repository, whether the request writes): the scope a Bearer token covers."""
    match = _REPO_RE.match(request.url.path)
    repo = match.group("repo") if match else ""
    return repo, request.method not in ("GET", "HEAD")
