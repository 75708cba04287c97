"""How many tasks go into one chunk (one queue message, payload and result).

Pure functions, no I/O.

The rule, and why:

* A known number of tasks ``n`` on ``w`` workers: ``ceil(n / (4 w))``.
  Four chunks per worker amortise the per-chunk cost (a queue round trip
  locally, ~4 AWS requests on Fargate) over many tasks while leaving
  enough chunks that a slow chunk at the end does not idle the other
  workers for long (the last wave is at most a quarter of the work).
* An unknown number (a generator): :data:`STREAM_CHUNK` tasks, so memory
  stays bounded and the first results return quickly.
* Never more than :data:`MAX_CHUNK` tasks, and the payload is kept to a
  few MB: after pickling a chunk, :func:`shrink_for_bytes` scales the
  next chunk size so its payload lands near :data:`TARGET_PAYLOAD`.
* Work submitted one task at a time (``submit``) is grouped only when a
  backlog builds up (:func:`submit_group_size`): an idle pool gets one task
  per chunk, so latency stays low; a burst of thousands is batched.
"""

from __future__ import annotations

import math

__all__ = ["MAX_CHUNK", "STREAM_CHUNK", "TARGET_PAYLOAD", "auto_chunksize",
           "shrink_for_bytes", "submit_group_size"]

#: Chunks per worker for a known-length input.
CHUNKS_PER_WORKER = 4
#: Tasks per chunk for inputs of unknown length.
STREAM_CHUNK = 1024
#: Upper bound on tasks per chunk (keeps one chunk's result list small).
MAX_CHUNK = 100_000
#: Payload size a chunk aims for: small enough to ride inline in SQS after a
#: few KB, and to be re-sent cheaply on a retry.
TARGET_PAYLOAD = 4 << 20


def auto_chunksize(n: int | None, workers: int) -> int:
    """Tasks per chunk for ``n`` tasks (None: unknown) on ``workers`` workers."""
    if workers < 1:
        raise ValueError("workers must be >= 1")
    if n is None:
        return STREAM_CHUNK
    if n <= 0:
        return 1
    return max(1, min(MAX_CHUNK, math.ceil(n / (CHUNKS_PER_WORKER * workers))))


def shrink_for_bytes(chunksize: int, payload_bytes: int) -> int:
    """Next chunk size so that a payload of this many bytes per chunk nears the target."""
    if payload_bytes <= 2 * TARGET_PAYLOAD or chunksize <= 1:
        return chunksize
    return max(1, chunksize * TARGET_PAYLOAD // payload_bytes)


def submit_group_size(backlog: int, workers: int) -> int:
    """Tasks per chunk for a backlog of ``backlog`` submitted tasks.

    Below two tasks per worker every task gets its own chunk; above, the
    backlog is split into ``2 * workers`` chunks (capped at STREAM_CHUNK) so
    every worker has work and the next burst can start right away.
    """
    if backlog <= 2 * workers:
        return 1
    return max(1, min(STREAM_CHUNK, backlog // (2 * workers)))
