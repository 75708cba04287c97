"""The session key: what makes a queue message the session's own.

Every message a client or worker sends (:mod:`.messages`) ends with an
HMAC-SHA256 tag under a random per-session key, over the whole message:
its header (which names the session, the chunk, the store key of a stored
payload and that payload's digest) and its inline body. A reader checks the
tag, in constant time, before it parses the header, so a message forged or
altered by anyone without the key is refused before any of it is read, and
never unpickled.

A stored payload (arguments, results, a shared object) is authenticated
through the message that names it: the tagged header carries its store key
and its digest (:func:`starburst.wire.serialization.frame_checksum`), so a
payload swapped for another valid one, of this session or another, fails
that digest. A result commit in the store is a tagged ``done`` notice.

How the key reaches workers without appearing in task overrides, logs or
queue messages is the backend's business (the local backend: the worker
process's environment and a 0600 file in the private session directory;
Fargate and Batch: a per-session secret the container's execution role
injects, which the task role cannot read). A worker reads it once, from
:data:`KEY_ENV`, and removes it from its environment, so the processes its
tasks start do not inherit it.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import os
import secrets
from collections.abc import MutableMapping

from ..exceptions import ProtocolError

__all__ = ["KEY_BYTES", "KEY_ENV", "TAG_BYTES", "AuthenticationError", "key_from_env",
           "key_from_text", "key_text", "new_key", "sign", "verify"]

#: Environment variable that carries the hex session key into a worker process.
KEY_ENV = "STARBURST_SESSION_KEY"
#: Bytes of a session key (256 bits, the HMAC-SHA256 block's recommended minimum).
KEY_BYTES = 32
#: Bytes of a message tag.
TAG_BYTES = 32
# Domain separation: a tag made for a message is never valid for anything else.
_DOMAIN = b"starburst message\x00"


class AuthenticationError(ProtocolError):
    """A message's tag does not match: it was forged, altered or is of another session."""


def new_key() -> bytes:
    """A fresh random session key."""
    return secrets.token_bytes(KEY_BYTES)


def key_text(key: bytes) -> str:
    """The key as hex text (for a secret, a file or an environment variable)."""
    return key.hex()


def key_from_text(text: str) -> bytes:
    """Parse :func:`key_text`'s output.

    Raises:
        ProtocolError: not a session key.
    """
    try:
        key = bytes.fromhex(text.strip())
    except (ValueError, binascii.Error):
        raise ProtocolError("the session key is not hex text") from None
    if len(key) != KEY_BYTES:
        raise ProtocolError(f"the session key has {len(key)} bytes, not {KEY_BYTES}")
    return key


def key_from_env(environ: MutableMapping[str, str] | None = None) -> bytes:
    """Read the session key from :data:`KEY_ENV` and remove it from ``environ``.

    Raises:
        ProtocolError: the variable is missing or does not hold a key.
    """
    env = os.environ if environ is None else environ
    text = env.pop(KEY_ENV, "")
    if not text:
        raise ProtocolError(
            f"{KEY_ENV} is not set: a worker needs its session's key to read its messages "
            "(the backend that started it passes it)")
    return key_from_text(text)


def _tag(key: bytes, data: bytes | memoryview) -> bytes:
    mac = hmac.new(key, _DOMAIN, hashlib.sha256)
    mac.update(data)
    return mac.digest()


def sign(key: bytes, data: bytes) -> bytes:
    """``data`` with its tag appended."""
    return data + _tag(key, data)


def verify(key: bytes, signed: bytes) -> memoryview:
    """The data of a signed message, once its tag matches (a view, no copy).

    Raises:
        AuthenticationError: too short to hold a tag, or the tag does not match.
    """
    if len(signed) < TAG_BYTES:
        raise AuthenticationError(f"message truncated ({len(signed)} bytes, no tag)")
    view = memoryview(signed)
    data, tag = view[:-TAG_BYTES], view[-TAG_BYTES:]
    if not hmac.compare_digest(_tag(key, data), tag):
        raise AuthenticationError(
            "message tag does not match the session key: forged, altered, or of another "
            "session")
    return data
