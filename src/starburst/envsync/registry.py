"""A client for the OCI distribution HTTP API (ECR, the CNCF registry, Docker Hub).

Only what environment sync needs, and each call at most once::

    blob:     HEAD /v2/<repo>/blobs/<digest>            exists? then nothing is sent
              POST /v2/<repo>/blobs/uploads/           open an upload session
              PATCH <location>  (the whole blob, streamed)   one request per blob
              PUT <location>?digest=<digest>            commit
              POST ...uploads/?mount=<digest>&from=<repo>   same-registry copy, no bytes
    manifest: HEAD /v2/<repo>/manifests/<ref>           exists? (the warm check)
              GET / PUT /v2/<repo>/manifests/<ref>

A blob goes up as one streamed PATCH: ECR's registry API keeps the body of
the first PATCH of an upload session only, and answers an empty commit PUT
after several PATCHes with a 500; the ``Range`` it answers is never trusted.
Transient failures (connection errors, 429, 5xx) are retried with capped
exponential backoff and jitter; a blob upload that fails midway restarts
in a new session. Everything else raises :class:`RegistryError` at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import httpx

from .errors import RegistryError
from .oci import MANIFEST_ACCEPT, sha256_digest

__all__ = ["DEFAULT_CHUNK_BYTES", "Manifest", "ProgressCallback", "Registry"]

#: Called with the number of bytes just sent to the registry.
ProgressCallback = Callable[[int], None]

#: Bytes read (and counted for progress) per step of a blob's one streamed
#: PATCH: large enough that the per-read cost is nothing, small enough that
#: progress moves often and memory stays flat.
DEFAULT_CHUNK_BYTES = 16 * 1024 * 1024
# Four attempts with backoff capped at 8 s ride out a registry restart or a
# throttling burst without hiding a real outage for minutes.
_ATTEMPTS = 4
_BACKOFF_S = 0.5
_BACKOFF_CAP_S = 8.0
# Generous: a 16 MiB chunk over a slow uplink takes a while.
_TIMEOUT = httpx.Timeout(connect=15.0, read=120.0, write=120.0, pool=30.0)
_READ_BYTES = 1024 * 1024
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Manifest:
    """A manifest or index as the registry returned it.

    Attributes:
        media_type: its ``Content-Type``.
        data: the exact bytes (their sha256 is the digest).
        digest: ``sha256:<hex>`` of ``data``.
    """

    media_type: str
    data: bytes
    digest: str

    def json(self) -> dict[str, Any]:
        """The parsed document."""
        import json

        parsed = json.loads(self.data)
        if not isinstance(parsed, dict):
            raise RegistryError(f"manifest {self.digest} is not a JSON object")
        return parsed


class _Transient(Exception):
    """A failure worth retrying; carries the error to raise if retries run out."""

    def __init__(self, error: RegistryError) -> None:
        super().__init__(str(error))
        self.error = error


class Registry:
    """One registry's HTTP API.

    Args:
        url: base URL, ``https://<account>.dkr.ecr.<region>.amazonaws.com``
            or ``http://127.0.0.1:5000``.
        auth: how to authenticate (see :mod:`starburst.envsync.auth`).
        name: host name used in image references when it differs from the
            URL's (an emulator serving for ECR); the URL's host by default.
        chunk_size: bytes per PATCH of a blob upload.
        transport, event_hooks: passed to ``httpx.Client`` (tests count
            requests and bytes with event hooks).
    """

    def __init__(self, url: str, *, auth: httpx.Auth | None = None, name: str | None = None,
                 chunk_size: int = DEFAULT_CHUNK_BYTES,
                 transport: httpx.BaseTransport | None = None,
                 event_hooks: Mapping[str, list[Callable[..., Any]]] | None = None) -> None:
        self.url = url.rstrip("/")
        self.name = name or urlparse(self.url).netloc
        self.chunk_size = chunk_size
        #: Bytes of blobs and manifests sent by this client so far.
        self.bytes_uploaded = 0
        self._client = httpx.Client(base_url=self.url, auth=auth, transport=transport,
                                    timeout=_TIMEOUT, follow_redirects=True,
                                    event_hooks=dict(event_hooks or {}))

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def same_registry(self, other: Registry) -> bool:
        """Whether both clients talk to one registry (so blobs can be mounted)."""
        return self.url == other.url

    # -- blobs -----------------------------------------------------------------

    def has_blob(self, repo: str, digest: str) -> bool:
        """Whether ``repo`` holds blob ``digest``."""
        resp = self._call("HEAD", f"/v2/{repo}/blobs/{digest}", ok=(200, 404),
                          what=f"check blob {digest[:19]} in {repo}")
        return resp.status_code == 200

    def push_blob(self, repo: str, digest: str, source: Path | bytes, *,
                  progress: ProgressCallback | None = None) -> int:
        """Upload a blob unless ``repo`` already has it; return the bytes sent.

        Raises:
            RegistryError: the registry refused the upload or stayed unreachable.
        """
        if self.has_blob(repo, digest):
            return 0
        size = len(source) if isinstance(source, bytes) else source.stat().st_size
        return self._retrying(lambda: self._upload(repo, digest, source, size, progress),
                              f"upload blob {digest[:19]} to {repo}")

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Ask the registry to link a blob of ``from_repo`` into ``repo``, sending no bytes.

        Returns:
            True when mounted; False when the registry declined (the blob
            must then be uploaded).
        """
        resp = self._call("POST", f"/v2/{repo}/blobs/uploads/", ok=(201, 202),
                          params={"mount": digest, "from": from_repo},
                          what=f"mount blob {digest[:19]} from {from_repo} into {repo}")
        if resp.status_code == 201:
            return True
        location = resp.headers.get("location")
        if location:  # a plain upload session was opened instead: close it
            # An abandoned session expires on the registry by itself.
            with contextlib.suppress(httpx.HTTPError):
                self._client.delete(self._absolute(location))
        return False

    def get_blob(self, repo: str, digest: str) -> bytes:
        """Download a (small) blob and verify its digest."""
        resp = self._call("GET", f"/v2/{repo}/blobs/{digest}", ok=(200,),
                          what=f"download blob {digest[:19]} from {repo}")
        if sha256_digest(resp.content) != digest:
            raise RegistryError(f"blob {digest} of {repo} arrived with another digest",
                                url=str(resp.url))
        return resp.content

    def download_blob(self, repo: str, digest: str, dest: Path) -> None:
        """Stream a blob to ``dest``, verifying its digest before it lands there."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part")

        def fetch() -> None:
            sha = hashlib.sha256()
            try:
                with self._client.stream("GET", f"/v2/{repo}/blobs/{digest}") as resp:
                    self._check(resp, (200,), f"download blob {digest[:19]} from {repo}")
                    with tmp.open("wb") as fh:
                        for block in resp.iter_bytes(_READ_BYTES):
                            sha.update(block)
                            fh.write(block)
            except httpx.HTTPError as exc:
                raise _Transient(RegistryError(
                    f"download blob {digest[:19]} from {repo} at {self.url} failed: {exc}",
                    url=self.url)) from exc
            if "sha256:" + sha.hexdigest() != digest:
                raise RegistryError(f"blob {digest} of {repo} arrived with another digest")

        self._retrying(fetch, f"download blob {digest[:19]} from {repo}")
        tmp.replace(dest)

    # -- manifests -------------------------------------------------------------

    def manifest_digest(self, repo: str, ref: str) -> str | None:
        """The digest of manifest ``ref`` (tag or digest) in ``repo``, or None if absent."""
        resp = self._call("HEAD", f"/v2/{repo}/manifests/{ref}", ok=(200, 404),
                          headers={"Accept": MANIFEST_ACCEPT},
                          what=f"check manifest {repo}:{ref}")
        if resp.status_code == 404:
            return None
        header = resp.headers.get("docker-content-digest")
        return header or self.get_manifest(repo, ref).digest

    def get_manifest(self, repo: str, ref: str, *, accept: str = MANIFEST_ACCEPT) -> Manifest:
        """Fetch manifest ``ref``; a digest reference is verified against the bytes."""
        resp = self._call("GET", f"/v2/{repo}/manifests/{ref}", ok=(200,),
                          headers={"Accept": accept}, what=f"get manifest {repo}:{ref}")
        digest = sha256_digest(resp.content)
        if ref.startswith("sha256:") and digest != ref:
            raise RegistryError(f"manifest {repo}@{ref} arrived with digest {digest}",
                                url=str(resp.url))
        media_type = resp.headers.get("content-type", "").split(";")[0].strip()
        return Manifest(media_type=media_type, data=resp.content, digest=digest)

    def put_manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> str:
        """Upload a manifest under tag (or digest) ``ref``; return its digest."""
        self._call("PUT", f"/v2/{repo}/manifests/{ref}", ok=(200, 201), content=data,
                   headers={"Content-Type": media_type}, what=f"put manifest {repo}:{ref}")
        self.bytes_uploaded += len(data)
        return sha256_digest(data)

    def delete_manifest(self, repo: str, digest: str) -> None:
        """Delete manifest ``digest`` (and so every tag on it) from ``repo``.

        ``DELETE /v2/<repo>/manifests/<digest>``: the distribution registry
        needs ``storage.delete.enabled``; ECR's own API for this is
        ``BatchDeleteImage`` (see ``starburst env prune``).
        """
        if not digest.startswith("sha256:"):
            raise RegistryError(f"delete manifest {repo}@{digest}: a digest is required")
        self._call("DELETE", f"/v2/{repo}/manifests/{digest}", ok=(202, 200),
                   what=f"delete manifest {repo}@{digest[:19]}")

    def list_tags(self, repo: str) -> list[str]:
        """Every tag of ``repo`` (``GET /v2/<repo>/tags/list``, following ``Link`` pages)."""
        tags: list[str] = []
        url: str | None = f"/v2/{repo}/tags/list"
        while url:
            resp = self._call("GET", url, ok=(200, 404), what=f"list the tags of {repo}")
            if resp.status_code == 404:
                return tags
            tags += list(resp.json().get("tags") or [])
            link = resp.headers.get("link", "")
            url = self._absolute(link.split(";")[0].strip(" <>")) if link else None
        return tags

    # -- internals -------------------------------------------------------------

    def _upload(self, repo: str, digest: str, source: Path | bytes, size: int,
                progress: ProgressCallback | None) -> int:
        resp = self._call("POST", f"/v2/{repo}/blobs/uploads/", ok=(202,), retry=False,
                          what=f"open an upload of {digest[:19]} to {repo}")
        location = self._location(resp)
        try:
            location = self._send_chunks(repo, digest, source, size, location, progress)
        except (_Transient, RegistryError):
            # Cancel the broken session (best effort) before the caller retries.
            with contextlib.suppress(httpx.HTTPError):
                self._client.delete(location)
            raise
        commit = httpx.URL(location).copy_merge_params({"digest": digest})
        resp = self._call("PUT", str(commit), ok=(201, 204), retry=False,
                          headers={"Content-Length": "0"},
                          what=f"commit blob {digest[:19]} to {repo}")
        stored = resp.headers.get("docker-content-digest")
        if stored and stored != digest:
            raise RegistryError(f"the registry stored {digest} as {stored}", url=str(resp.url))
        return size

    def _send_chunks(self, repo: str, digest: str, source: Path | bytes, size: int,
                     location: str, progress: ProgressCallback | None) -> str:
        """PATCH the whole blob as one streamed request; return the location for the commit.

        One PATCH, read ``chunk_size`` bytes at a time: ECR's registry API keeps
        only the first PATCH of an upload session (the bytes of later ones are
        discarded, and an empty commit PUT after several PATCHes fails), so a
        blob is never sent in several requests. A failure midway restarts the
        upload in a new session (:meth:`push_blob`).
        """
        sent = 0

        def body() -> Iterator[bytes]:
            nonlocal sent
            fh = None if isinstance(source, bytes) else source.open("rb")
            try:
                while sent < size:
                    if fh is None:
                        assert isinstance(source, bytes)
                        chunk = source[sent:sent + self.chunk_size]
                    else:
                        chunk = fh.read(min(self.chunk_size, size - sent))
                    if not chunk:
                        raise RegistryError(f"the blob {digest} shrank while it was uploaded")
                    sent += len(chunk)
                    self.bytes_uploaded += len(chunk)
                    if progress is not None:
                        progress(len(chunk))
                    yield chunk
            finally:
                if fh is not None:
                    fh.close()

        if size == 0:
            return location
        resp = self._call(
            "PATCH", location, ok=(201, 202, 204), retry=False, content=body(),
            headers={"Content-Type": "application/octet-stream",
                     "Content-Length": str(size), "Content-Range": f"0-{size - 1}"},
            what=f"upload {size} bytes of {digest[:19]} to {repo}")
        return self._location(resp, default=location)

    def _location(self, resp: httpx.Response, default: str | None = None) -> str:
        location = resp.headers.get("location") or default
        if not location:
            raise RegistryError(f"{resp.request.method} {resp.request.url} answered without "
                                "a Location header", url=str(resp.request.url))
        return self._absolute(location)

    def _absolute(self, location: str) -> str:
        return str(httpx.URL(self.url + "/").join(location))

    def _call(self, method: str, url: str, *, ok: tuple[int, ...], what: str,
              retry: bool = True, **kwargs: Any) -> httpx.Response:
        def once() -> httpx.Response:
            try:
                resp = self._client.request(method, url, **kwargs)
            except httpx.HTTPError as exc:
                raise _Transient(RegistryError(
                    f"{what} at {self.url} failed: {type(exc).__name__}: {exc}",
                    url=url)) from exc
            self._check(resp, ok, what)
            return resp

        # Without retry, a transient failure propagates as _Transient to an
        # enclosing _retrying (a blob upload restarts as a whole).
        return self._retrying(once, what) if retry else once()

    def _check(self, resp: httpx.Response, ok: tuple[int, ...], what: str) -> None:
        if resp.status_code in ok:
            return
        resp.read()
        detail = resp.text[:500].strip()
        hint = ""
        if resp.status_code in (401, 403):
            hint = (" (credentials refused: check the registry URL and, on ECR, that the "
                    "IAM identity may push to this repository)")
        error = RegistryError(f"{what} at {self.url}: HTTP {resp.status_code}{hint}: {detail}",
                              status=resp.status_code, url=str(resp.request.url))
        if resp.status_code in _RETRY_STATUS:
            raise _Transient(error)
        raise error

    def _retrying(self, func: Callable[[], _T], what: str) -> _T:
        for attempt in range(_ATTEMPTS):
            try:
                return func()
            except _Transient as exc:
                if attempt == _ATTEMPTS - 1:
                    raise exc.error from exc.__cause__
                delay = min(_BACKOFF_CAP_S, _BACKOFF_S * 2 ** attempt)
                time.sleep(delay * (0.5 + random.random() / 2))
        raise RegistryError(f"{what}: retries exhausted")  # unreachable: loop returns/raises
