"""What every AWS-backed session opens the same way: its queues, transport and worker env.

The Fargate and Batch backends differ in how workers start; the session
around them is the same::

    create_session_queues -> AwsTransport(bucket, prefix, queues)
    session key -> secret starburst/<session>/key (aws/session_key.py)
    task role   -> starburst-session-<session> (aws/session_role.py)
    worker env: STARBURST_TRANSPORT, STARBURST_SESSION,
                STARBURST_EXPECTED_ENV_HASH (env="auto"), STARBURST_CODE (code archive)

:func:`open_worker_session` does that and hands the transport, worker
environment and key secret to ``build`` (which makes the backend, whose
task or job definitions inject the secret); if anything fails before it
returns, the session's queues and secret are deleted again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from ..aws import provision, session_key, session_role
from ..exceptions import ConfigurationError
from ..transport.aws import AwsTransport, create_session_queues, delete_session_queues
from ..wire.auth import new_key
from . import _environment

if TYPE_CHECKING:
    from ..envsync.snapshot import Snapshot

__all__ = ["KeyedSession", "close_session_access", "in_parallel", "open_worker_session",
           "reject_unknown", "session_access"]

T = TypeVar("T")
R = TypeVar("R")
#: AWS calls in flight at once when starting or stopping many workers: 100
#: workers stop in about a second, not ten, well under the APIs' rates.
API_THREADS = 8


def reject_unknown(options: Iterable[str], valid: Sequence[str], what: str) -> None:
    """A ConfigurationError naming the options not in ``valid`` (``what`` they were for)."""
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigurationError(
            f"unknown option(s) {', '.join(unknown)} for {what}; valid: {', '.join(valid)}")


def in_parallel(call: Callable[[R], T], items: Sequence[R], *, name: str) -> list[T]:
    """``call`` on every item, :data:`API_THREADS` at a time, results in order."""
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(API_THREADS, len(items)),
                            thread_name_prefix=f"starburst-{name}") as pool:
        return list(pool.map(call, items))


@dataclass(frozen=True)
class KeyedSession:
    """What only this session's workers get: its key, the secret they get it from, and
    the task role they run as (``starburst-session-<id>``, reaching only this
    session's queues and objects; a role of the user's own is kept as it is)."""

    key: bytes = field(repr=False)
    secret_arn: str
    task_role: str
    #: Whether ``task_role`` is the session's own (deleted when the session ends).
    own_role: bool = False


def session_access(session: str, *, shared: provision.Shared, debug: bool, key: bytes,
                   secret_arn: str) -> KeyedSession:
    """The session's task role (created, or found again: it is idempotent), with its key.

    At open, ``key``/``secret_arn`` are the new ones; at attach, those read back.
    """
    roles = session_role.session_task_roles(shared.roles, session, region=shared.region,
                                            bucket=shared.bucket, prefix=shared.prefix,
                                            debug=debug)
    return KeyedSession(key, secret_arn, roles.task, own_role=roles.task != shared.roles.task)


def _delete_access(session: str, *, region: str, role: bool) -> None:
    """Delete the session's key secret and (``role``) its own role; either may be gone."""
    try:
        session_key.delete_key_secret(session, region=region)
    finally:
        if role:
            session_role.delete_session_role(session, region=region)


def close_session_access(session: str, access: KeyedSession | None, *, region: str) -> None:
    """Delete what :func:`open_worker_session` made for the session alone: its key
    secret and its own task role (after its workers stopped)."""
    if access is not None:
        _delete_access(session, region=region, role=access.own_role)


def open_worker_session(
        session: str, *, shared: provision.Shared, max_receives: int,
        env_options: _environment.EnvOptions, snapshot: Snapshot | None,
        expected_hash: str | None,
        build: Callable[[AwsTransport, dict[str, str], KeyedSession], T],
        notes: list[str] | None = None, debug: bool = False,
) -> tuple[AwsTransport, KeyedSession, T]:
    """Create the session's queues, transport and key, ship the code archive, build the backend.

    Args:
        session: the session id.
        shared: the region's shared resources (bucket, prefix, region).
        max_receives: the task queue's redrive limit (the dead-letter backstop).
        env_options: the environment options (``code`` ships the user's code).
        snapshot: the environment snapshot, when one was taken (else taken here
            for the code archive).
        expected_hash: the image's environment hash (``env="auto"``), else None.
        build: makes the backend from the transport, the worker environment and
            the key.
        notes: the session's notes (what the code archive left out is added).
        debug: a debug session (its own role adds ECS Exec's channels).

    Returns:
        The transport, the key and what ``build`` returned.
    """
    queues = create_session_queues(session, region=shared.region, max_receives=max_receives)
    try:
        key = new_key()
        keyed = session_access(session, shared=shared, debug=debug, key=key,
                               secret_arn=session_key.create_key_secret(
                                   session, key, region=shared.region))
        transport = AwsTransport(bucket=shared.bucket, prefix=shared.prefix, queues=queues,
                                 region=shared.region)
        worker_env = {"STARBURST_TRANSPORT": transport.spec, "STARBURST_SESSION": session}
        if expected_hash is not None:
            worker_env[_environment.EXPECTED_HASH_ENV] = expected_hash
        if env_options.code:
            if snapshot is None:
                snapshot = _environment.snapshot_of(env_options)
            code = _environment.upload_code(transport, session, snapshot, notes=notes)
            if code is not None:
                worker_env[_environment.CODE_ENV] = code
        return transport, keyed, build(transport, worker_env, keyed)
    except BaseException:
        # Whatever part of it was made (a secret AWS created before an error, a
        # role whose policy failed): both deletions are no-ops for what is not there.
        try:
            delete_session_queues(session, region=shared.region)
        finally:
            _delete_access(session, region=shared.region, role=True)
        raise
