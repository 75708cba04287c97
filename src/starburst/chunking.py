"""How many tasks go into one chunk (one queue message, payload and result).

Pure functions, no I/O.

The rule, and why (guided self-scheduling, as OpenMP's ``guided``):

* A known number of tasks ``n`` on ``w`` workers: each chunk takes
  ``ceil(remaining / (2 w))`` tasks, but never fewer than
  ``ceil(n / (32 w))``. Early chunks are large, so the per-chunk cost (a
  queue round trip locally, about four AWS requests on Fargate) is paid
  rarely; late chunks are small, so workers that start late (Fargate cold
  starts spread over a minute) or tasks that run long cannot leave the
  others idle at the end: the tail is at most one small chunk. The floor
  keeps the chunk count near ``2 w ln(16) + 32 w``-ish at most (about 40
  chunks per worker), which bounds requests per task.
* An unknown number (a generator): :data:`STREAM_CHUNK` tasks, so memory
  stays bounded and the first results return quickly.
* Never more than :data:`MAX_CHUNK` tasks, and payloads of a few MB: after
  pickling a chunk, :meth:`ChunkSizer.observe_payload` scales later chunk
  sizes so a payload lands near :data:`TARGET_PAYLOAD`.
* Work submitted one task at a time (``submit``) is grouped only when a
  backlog builds up (:func:`submit_group_size`): an idle pool gets one task
  per chunk, so latency stays low; a burst of thousands is batched.
"""

from __future__ import annotations

import math

__all__ = ["MAX_CHUNK", "STREAM_CHUNK", "TARGET_PAYLOAD", "ChunkSizer", "chunk_plan",
           "submit_group_size"]

#: Each chunk takes remaining / (GUIDED_FACTOR * workers) tasks.
GUIDED_FACTOR = 2
#: The smallest chunk is n / (MIN_CHUNK_DIVISOR * workers) tasks.
MIN_CHUNK_DIVISOR = 32
#: Tasks per chunk for inputs of unknown length.
STREAM_CHUNK = 1024
#: Upper bound on tasks per chunk (keeps one chunk's result list small).
MAX_CHUNK = 100_000
#: Payload size a chunk aims for: re-sent cheaply on a retry, and quick to
#: start on (a worker downloads the whole payload before the first task).
TARGET_PAYLOAD = 4 << 20


def chunk_plan(n: int, workers: int) -> list[int]:
    """Chunk sizes for ``n`` tasks on ``workers`` workers (guided, decreasing)."""
    if workers < 1:
        raise ValueError("workers must be >= 1")
    floor = max(1, math.ceil(n / (MIN_CHUNK_DIVISOR * workers)))
    sizes: list[int] = []
    remaining = n
    while remaining > 0:
        size = min(remaining, MAX_CHUNK,
                   max(floor, math.ceil(remaining / (GUIDED_FACTOR * workers))))
        sizes.append(size)
        remaining -= size
    return sizes


class ChunkSizer:
    """Hands out chunk sizes for one ``map`` call.

    Args:
        n: number of tasks, or None when unknown (a generator).
        workers: number of workers.
        fixed: a chunk size the user chose (overrides the rule).
    """

    def __init__(self, n: int | None, workers: int, fixed: int | None = None) -> None:
        self._plan = chunk_plan(n, workers) if (n is not None and fixed is None) else None
        self._fixed = fixed or STREAM_CHUNK
        self._index = 0
        self._scale = 1.0

    def next_size(self) -> int:
        """Size of the next chunk (the last one may get fewer tasks)."""
        if self._plan is not None:
            if self._index >= len(self._plan):
                return max(1, self._plan[-1] if self._plan else 1)
            size = self._plan[self._index]
            self._index += 1
        else:
            size = self._fixed
        return max(1, int(size * self._scale))

    def observe_payload(self, tasks: int, payload_bytes: int) -> None:
        """Shrink later chunks when a chunk's payload came out above twice the target."""
        if tasks > 1 and payload_bytes > 2 * TARGET_PAYLOAD:
            self._scale = min(self._scale, TARGET_PAYLOAD / payload_bytes)


def submit_group_size(backlog: int, workers: int) -> int:
    """Tasks per chunk for a backlog of ``backlog`` submitted tasks.

    Below two tasks per worker every task gets its own chunk; above, the
    backlog is split into ``2 * workers`` chunks (capped at STREAM_CHUNK) so
    every worker has work and the next burst can start right away.
    """
    if backlog <= 2 * workers:
        return 1
    return max(1, min(STREAM_CHUNK, backlog // (2 * workers)))
