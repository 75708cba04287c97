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

from ..exceptions import StarburstError
from ..settings import Settings
from ..transport import open_transport
from .loop import Worker


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


def main(argv: list[str] | None = None) -> int:
    """Run a worker until it is idle, stopped or orphaned; return its exit code."""
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
        settings = Settings.from_env()
        transport = open_transport(args.transport)
        worker = Worker(transport, session=args.session,
                        worker_id=args.worker_id or _ecs_task_arn(),
                        settings=settings, detached=args.detached)
        return worker.run()
    except StarburstError as exc:
        print(f"starburst worker: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
