"""A proxy in front of the emulated ECR's registry that answers blob uploads as ECR does.

Other registry clients report that ECR's registry API keeps the body of
the first PATCH of an upload session only: every later PATCH of that
session is answered with success and its bytes are discarded, so a blob
sent in several chunks is committed short (or its empty commit PUT fails).
The CNCF registry behind ``emulated_aws(registry=True)`` accepts chunked
uploads, so this proxy puts ECR's behaviour back in front of it: the
first PATCH of an upload session goes through, a later one is answered
``202 Accepted`` and dropped (counter ``patches_discarded``; the PATCHes
passed on are counted in ``patches_forwarded``, so a test can show its
uploads met the rule). Everything else is forwarded unchanged
(``Location`` headers rewritten to the proxy).

Only 127.0.0.1 is involved.
"""

from __future__ import annotations

import http.server
import threading
from typing import Any
from urllib.parse import urlsplit

import httpx

__all__ = ["EcrLikeProxy"]

#: Request headers not forwarded: hop-by-hop, or recomputed by httpx.
_SKIP_REQUEST = frozenset({"host", "connection", "content-length", "transfer-encoding",
                           "accept-encoding"})
#: Response headers not passed back: hop-by-hop, or recomputed here.
_SKIP_RESPONSE = frozenset({"connection", "transfer-encoding", "content-length",
                            "content-encoding", "keep-alive"})


class EcrLikeProxy:
    """Forward to ``upstream`` (a registry URL), discarding later PATCHes of an upload.

    Attributes:
        url: the proxy's own URL (``http://127.0.0.1:<port>``).
        patches_discarded: PATCHes answered without being forwarded.
        patches_forwarded: PATCHes forwarded and accepted (with the rule on, only
            the first of each upload).
        discard_later_patches: the ECR rule (on by default).
    """

    def __init__(self, upstream: str, *, discard_later_patches: bool = True) -> None:
        self.upstream = upstream.rstrip("/")
        self.discard_later_patches = discard_later_patches
        self.patches_discarded = 0
        self.patches_forwarded = 0
        self._patched: dict[str, str] = {}  # upload path -> Range of its first PATCH
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=httpx.Timeout(120.0), follow_redirects=False)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet, like the registry's own log level

            def _handle(self) -> None:
                proxy._serve(self)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="starburst-ecr-proxy", daemon=True)

    def __enter__(self) -> EcrLikeProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving and close the upstream connections."""
        self._server.shutdown()
        self._server.server_close()
        self._client.close()

    # -- serving ----------------------------------------------------------
    def _serve(self, req: http.server.BaseHTTPRequestHandler) -> None:
        length = int(req.headers.get("Content-Length") or 0)
        body = req.rfile.read(length) if length else b""
        path = urlsplit(req.path).path
        if req.command == "PATCH" and "/blobs/uploads/" in path and self.discard_later_patches:
            with self._lock:
                first_range = self._patched.get(path)
                if first_range is not None:
                    self.patches_discarded += 1
            if first_range is not None:
                self._reply(req, 202, {"Location": req.path, "Range": first_range,
                                       "Docker-Upload-UUID": path.rsplit("/", 1)[-1]}, b"")
                return
        headers = {k: v for k, v in req.headers.items() if k.lower() not in _SKIP_REQUEST}
        upstream = self._client.request(req.command, self.upstream + req.path, headers=headers,
                                        content=body)
        out = {k: v for k, v in upstream.headers.items() if k.lower() not in _SKIP_RESPONSE}
        if "location" in upstream.headers:
            out = {k: v for k, v in out.items() if k.lower() != "location"}
            out["Location"] = self._local(upstream.headers["location"])
        if req.command == "PATCH" and "/blobs/uploads/" in path and upstream.status_code < 300:
            with self._lock:
                self.patches_forwarded += 1
                self._patched.setdefault(urlsplit(out.get("Location", req.path)).path,
                                         upstream.headers.get("range", "0-0"))
                self._patched.setdefault(path, upstream.headers.get("range", "0-0"))
        if req.command == "HEAD":
            out["Content-Length"] = upstream.headers.get("content-length", "0")
        self._reply(req, upstream.status_code, out,
                    b"" if req.command == "HEAD" else upstream.content)

    def _local(self, location: str) -> str:
        """An upstream ``Location`` as the proxy's (relative ones stay relative)."""
        parts = urlsplit(location)
        if not parts.netloc:
            return location
        rest = parts.path + (f"?{parts.query}" if parts.query else "")
        return f"{self.url}{rest}"

    @staticmethod
    def _reply(req: http.server.BaseHTTPRequestHandler, status: int, headers: dict[str, str],
               body: bytes) -> None:
        req.send_response(status)
        for name, value in headers.items():
            req.send_header(name, value)
        if req.command != "HEAD":
            req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        if body and req.command != "HEAD":
            req.wfile.write(body)
