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
* ``STARBURST_CODE``: the store key of the session's code archive; the worker
  makes a private directory for it (0700, ``mkdtemp``, named with the
  session id), which its task processes unpack into and which it removes
  when it exits.

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


#: The private directory (0700) the worker made for this session's code; the
#: supervisor sets it and passes it to its task processes, which unpack there.
CODE_DIR_ENV = "STARBURST_CODE_DIR"


def load_code(transport: Transport, environ: Mapping[str, str] | None = None) -> None:
    """Fetch the session's code archive (``STARBURST_CODE``) and put it first on sys.path.

    It is kept and unpacked in the worker's private directory
    (``STARBURST_CODE_DIR``, see :func:`main`), else in a fresh private one.
    """
    env = os.environ if environ is None else environ
    key = env.get("STARBURST_CODE")
    if not key:
        return
    import hashlib
    import tempfile
    from pathlib import Path

    from ..envsync.code import apply_code_archive, private_code_dir

    data = transport.store.get(key)
    digest = hashlib.sha256(data).hexdigest()
    if not key.endswith(f"{digest}.zip"):
        raise ProtocolError(f"the code archive {key} is corrupted (its sha256 is {digest})")
    given = env.get(CODE_DIR_ENV)
    if given:
        folder = Path(given)
    else:  # a task process started without its supervisor: its own, removed at exit
        import atexit
        import shutil

        folder = private_code_dir(env.get("STARBURST_SESSION", "code"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = folder / f"code-{digest[:16]}.zip"
    if not path.is_file():
        fd, staging = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(staging, path)
    try:
        apply_code_archive(path, extract_to=folder)
    except PermissionError as exc:
        raise ConfigurationError(f"cannot unpack the session's code archive: {exc}") from exc


def _code_dir(session: str) -> str | None:
    """Make this worker's private code directory when the session ships code."""
    if not os.environ.get("STARBURST_CODE"):
        return None
    from ..envsync.code import private_code_dir

    folder = str(private_code_dir(session))
    os.environ[CODE_DIR_ENV] = folder  # the task processes inherit it
    return folder


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
    code_dir: str | None = None
    try:
        check_environment()
        key = key_from_env()
        settings = Settings.from_env()
        transport = open_transport(args.transport)
        # The supervisor runs no task code: the task process loads the
        # session's code archive itself, into this worker's private directory.
        code_dir = _code_dir(args.session)
        worker = Supervisor(transport, session=args.session, key=key,
                            worker_id=args.worker_id or _ecs_task_arn(),
                            settings=settings, detached=args.detached)
        return worker.run()
    except StarburstError as exc:
        print(f"starburst worker: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    finally:
        if code_dir is not None:
            import shutil

            shutil.rmtree(code_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
