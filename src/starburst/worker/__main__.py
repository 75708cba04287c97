"""``python -m starburst.worker``: the entrypoint a container or process runs.

Configured by environment variables (what ECS task overrides carry) and
optional flags that take precedence:

* ``STARBURST_TRANSPORT`` / ``--transport``: transport spec (``local:<dir>``,
  ``aws:...``).
* ``STARBURST_SESSION`` / ``--session``: the session id.
* ``STARBURST_WORKER_ID`` / ``--worker-id``: a name for logs and notices
  (default: host and pid; on ECS the task ARN from the metadata endpoint).
* ``STARBURST_DETACHED=1`` / ``--detached``: do not exit when the client's
  heartbeat goes stale.
* ``STARBURST_LEASE``, ``STARBURST_IDLE_TIMEOUT``... : :class:`Settings`.

Credentials never travel in these variables: a worker takes them from the
standard chain (the ECS task role on Fargate).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping

from ..exceptions import ConfigurationError, ProtocolError, StarburstError
from ..settings import Settings
from ..transport import Transport, open_transport
from ..wire.auth import key_from_env
from .supervisor import Supervisor


def _ecs_task_arn() -> str | None:
    uri = os.environ.get("ECS_CONTAINER_METADATA_URI_V4")
    if not uri:
        return None
    import json
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri}/task", timeout=2) as resp:
            arn = json.load(resp).get("TaskARN")
    except (OSError, ValueError):
        return None
    return str(arn) if arn else None


def check_environment(environ: Mapping[str, str] | None = None) -> None:
    """Refuse to run in an image other than the one the session built.

    ``STARBURST_EXPECTED_ENV_HASH`` (task env, set by the client when it built
    the image) must equal ``STARBURST_ENV_HASH`` (the image's env). Without
    an expectation (``env="off"``, the user's own image) there is nothing to check.

    Raises:
        ConfigurationError: the hashes differ.
    """
    env = os.environ if environ is None else environ
    expected = env.get("STARBURST_EXPECTED_ENV_HASH")
    if not expected:
        return
    actual = env.get("STARBURST_ENV_HASH")
    if actual != expected:
        found = f"{actual[:12]}..." if actual else "none (not a starburst-built image)"
        raise ConfigurationError(
            f"environment mismatch: this worker's image has environment hash {found}, the "
            f"session expects {expected[:12]}...; the task runs a stale or foreign image "
            "(a moved tag or an edited task definition). Run again to rebuild, or pass "
            "env='off' with image='...' to run your own image unchecked")


def load_code(transport: Transport, environ: Mapping[str, str] | None = None) -> None:
    """Fetch the session's code archive (``STARBURST_CODE``) and put it first on sys.path."""
    env = os.environ if environ is None else environ
    key = env.get("STARBURST_CODE")
    if not key:
        return
    import hashlib
    import tempfile
    from pathlib import Path

    from ..envsync.code import apply_code_archive

    data = transport.store.get(key)
    digest = hashlib.sha256(data).hexdigest()
    if not key.endswith(f"{digest}.zip"):
        raise ProtocolError(f"the code archive {key} is corrupted (its sha256 is {digest})")
    folder = Path(tempfile.gettempdir()) / "starburst-code"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"code-{digest[:16]}.zip"
    if not path.is_file():
        staging = folder / f".{path.name}.{os.getpid()}.tmp"
        staging.write_bytes(data)
        staging.replace(path)
    apply_code_archive(path, extract_to=folder)


def main(argv: list[str] | None = None) -> int:
    """Run a worker (its supervisor, which starts the task process) until it is idle,
    stopped or orphaned; return its exit code."""
    parser = argparse.ArgumentParser(prog="python -m starburst.worker")
    parser.add_argument("--transport", default=os.environ.get("STARBURST_TRANSPORT"))
    parser.add_argument("--session", default=os.environ.get("STARBURST_SESSION"))
    parser.add_argument("--worker-id", default=os.environ.get("STARBURST_WORKER_ID"))
    parser.add_argument("--detached", action="store_true",
                        default=os.environ.get("STARBURST_DETACHED") == "1")
    args = parser.parse_args(argv)
    if not args.transport or not args.session:
        parser.error("STARBURST_TRANSPORT and STARBURST_SESSION (or --transport and "
                     "--session) must be set; this command is started by starburst")
    try:
        check_environment()
        key = key_from_env()
        settings = Settings.from_env()
        transport = open_transport(args.transport)
        # The supervisor runs no task code: the task process loads the
        # session's code archive itself.
        worker = Supervisor(transport, session=args.session, key=key,
                            worker_id=args.worker_id or _ecs_task_arn(),
                            settings=settings, detached=args.detached)
        return worker.run()
    except StarburstError as exc:
        print(f"starburst worker: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
