"""A map whose chunks' payloads go to the store keeps every chunk (issue #17, defect 1).

When a chunk finishes, the client deletes its payload. A store key is a
path, so deleting ``.../payloads/1`` must never take ``payloads/10`` to
``payloads/19`` (or ``100``...) with it: those chunks would fail with
"payload ... is missing" before any worker ran them.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import starburst

#: Items of 50 kB (random bytes, which compression cannot shrink) stay below
#: the client's sharing threshold (1 MiB), so they travel inside their chunk's
#: payload; 25 of them make a payload of ~1.25 MB, above the local transport's
#: inline limit (1 MiB), so each payload is a store object.
_ITEM_BYTES = 50_000
_PER_CHUNK = 25
#: More than 10 chunks, so chunk 1's payload key is a prefix of 10..19's.
_CHUNKS = 30


def test_a_map_of_30_stored_payloads_loses_no_chunk(executor_factory: Callable[
        ..., starburst.Executor]) -> None:
    """On every backend: on Fargate the inline limit is lower still (~94 kB)."""
    rng = random.Random(17)
    items = [rng.randbytes(_ITEM_BYTES + i) for i in range(_CHUNKS * _PER_CHUNK)]
    with executor_factory() as ex:
        got = list(ex.map(len, items, chunksize=_PER_CHUNK))
    assert got == [len(item) for item in items]
