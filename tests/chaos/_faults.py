"""Synthetic AWS faults for the chaos tests and bench/chaos_report.py.

:func:`install` patches ``botocore.endpoint.Endpoint._send`` (the one place
every botocore client of this process sends an HTTP request, cached clients
included) so that a fraction of calls get a synthetic throttling (HTTP 400
``ThrottlingException`` / S3 503 ``SlowDown``) or 5xx response instead of
reaching the (emulated) AWS. The request never leaves the process, so a
retry is always safe; what is tested is that starburst rides the errors out
with botocore's retries and neither loses nor duplicates work.

:func:`write_sitecustomize` writes a ``sitecustomize`` module doing the same
in every Python process that starts with its directory on the path: the
emulated ECS task runner gives each Fargate worker the host's ``sys.path``
as ``PYTHONPATH``, so putting the directory first on ``sys.path`` injects
into the workers too. The rates come from a JSON control file; the workers
record how many faults they injected next to it.

Calls made by the emulator's own threads (its ECS agent and task runner,
standing in for AWS machinery) are never touched. ``deny`` makes matching
S3 keys fail permanently with 403 ``AccessDenied`` (not retried).
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
from pathlib import Path
from typing import Any

_EMULATOR_THREADS = ("starburst-ecs-", "starburst-task-")

_ERROR_BODIES = {
    # protocol -> (throttle status, throttle body, 5xx body); {code} filled in
    "json": ('{{"__type":"{code}","message":"injected by the chaos tests"}}'),
    "query": ("<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>injected"
              "</Message></Error><RequestId>chaos</RequestId></ErrorResponse>"),
    "ec2": ("<Response><Errors><Error><Code>{code}</Code><Message>injected</Message></Error>"
            "</Errors><RequestID>chaos</RequestID></Response>"),
    "rest-xml": ("<Error><Code>{code}</Code><Message>injected</Message>"
                 "<RequestId>chaos</RequestId></Error>"),
}


class Injector:
    """Decides, per request, whether to fail it and with what."""

    def __init__(self, throttle: float = 0.0, server_error: float = 0.0, seed: int = 0,
                 deny: str = "", counts: str = "", deny_method: str = "") -> None:
        self.throttle = throttle
        self.server_error = server_error
        self.deny = deny
        self.deny_method = deny_method
        self.counts_path = counts
        self.random = random.Random(seed ^ os.getpid())
        self.lock = threading.Lock()
        self.counts = {"requests": 0, "throttled": 0, "server_error": 0, "denied": 0}
        self.enabled = True

    def _protocol(self, endpoint: Any, request: Any) -> str:
        prefix = getattr(endpoint, "_endpoint_prefix", "")
        if prefix == "s3":
            return "rest-xml"
        if prefix == "ec2":
            return "ec2"
        headers = {k.lower(): v for k, v in request.headers.items()}
        if "x-amz-target" in headers:
            return "json"
        return "query"

    def response(self, endpoint: Any, request: Any) -> Any:
        """A synthetic botocore response for ``request``, or None to send it."""
        if not self.enabled or threading.current_thread().name.startswith(_EMULATOR_THREADS):
            return None
        with self.lock:
            self.counts["requests"] += 1
            roll = self.random.random()
            kind = None
            if self.deny and self.deny in (request.url or "") and (
                    not self.deny_method or request.method == self.deny_method):
                kind = "denied"
            elif roll < self.throttle:
                kind = "throttled"
            elif roll < self.throttle + self.server_error:
                kind = "server_error"
            if kind is None:
                return None
            self.counts[kind] += 1
            total = sum(self.counts[k] for k in ("throttled", "server_error", "denied"))
        if self.counts_path and total % 20 == 1:
            self.dump()
        protocol = self._protocol(endpoint, request)
        if kind == "denied":
            status, code = 403, "AccessDenied"
        elif kind == "throttled":
            status, code = {"rest-xml": (503, "SlowDown"), "ec2": (503, "RequestLimitExceeded"),
                            "json": (400, "ThrottlingException")}.get(protocol, (400, "Throttling"))
        else:
            status, code = 500, ("InternalError" if protocol in ("rest-xml", "ec2")
                                 else "InternalFailure")
        body = _ERROR_BODIES[protocol].format(code=code).encode()
        from botocore.awsrequest import AWSResponse

        headers = {"x-amzn-RequestId": "chaos", "Content-Length": str(len(body)),
                   "Content-Type": ("application/x-amz-json-1.0" if protocol == "json"
                                    else "text/xml")}
        if protocol == "json":
            headers["x-amzn-query-error"] = f"{code};Sender"
        return AWSResponse(request.url, status, headers, _Raw(body))

    def dump(self) -> None:
        if not self.counts_path:
            return
        path = Path(self.counts_path) / f"faults-{os.getpid()}.json"
        tmp = path.with_suffix(".tmp")
        with self.lock:
            tmp.write_text(json.dumps(self.counts))
        tmp.replace(path)


class _Raw:
    """The raw stream an AWSResponse reads its body from."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Any:
        yield self._data

    def read(self, *_: Any) -> bytes:
        data, self._data = self._data, b""
        return data


_installed: Injector | None = None
_original_send: Any = None


def install(injector: Injector) -> Injector:
    """Route every botocore request of this process through ``injector``."""
    global _installed, _original_send
    import botocore.endpoint

    if _original_send is None:
        _original_send = botocore.endpoint.Endpoint._send

        def _send(self: Any, request: Any) -> Any:
            active = _installed
            fake = active.response(self, request) if active is not None else None
            return fake if fake is not None else _original_send(self, request)

        botocore.endpoint.Endpoint._send = _send  # type: ignore[method-assign]
    _installed = injector
    return injector


def uninstall() -> None:
    """Stop injecting in this process (the patch stays, inert)."""
    global _installed
    _installed = None


SITECUSTOMIZE = '''
"""Chaos-test fault injection for starburst workers (tests/chaos/_faults.py)."""
import json, os, sys
try:
    _cfg = json.loads(open({control!r}).read())
except OSError:
    _cfg = None
if _cfg and os.environ.get("STARBURST_SESSION"):
    sys.path.insert(0, {here!r})
    import _faults
    _inj = _faults.install(_faults.Injector(**_cfg))
    import atexit
    atexit.register(_inj.dump)
'''


def write_sitecustomize(directory: Path, **config: Any) -> Path:
    """Write ``sitecustomize.py`` and its control file into ``directory``."""
    control = directory / "faults.json"
    control.write_text(json.dumps({**config, "counts": str(directory)}))
    (directory / "sitecustomize.py").write_text(SITECUSTOMIZE.format(
        control=str(control), here=str(Path(__file__).resolve().parent)))
    return control


def worker_counts(directory: Path) -> dict[str, int]:
    """Faults the workers injected, summed over their count files."""
    total: dict[str, int] = {}
    for path in directory.glob("faults-*.json"):
        try:
            for k, v in json.loads(path.read_text()).items():
                total[k] = total.get(k, 0) + v
        except (OSError, ValueError):
            continue
    return total


def put_first_on_path(directory: Path) -> None:
    sys.path.insert(0, str(directory))


def remove_from_path(directory: Path) -> None:
    while str(directory) in sys.path:
        sys.path.remove(str(directory))
