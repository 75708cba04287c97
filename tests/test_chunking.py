"""Chunk sizing: pure functions, checked as properties."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starburst.chunking import (
    MAX_CHUNK,
    STREAM_CHUNK,
    TARGET_PAYLOAD,
    ChunkSizer,
    chunk_plan,
    submit_group_size,
)

workers = st.integers(1, 1_000)
tasks = st.integers(0, 10**6)


@settings(deadline=None, max_examples=200)
@given(n=tasks, w=workers)
def test_chunk_plan_covers_every_task_exactly_once(n, w):
    sizes = chunk_plan(n, w)
    assert sum(sizes) == n
    assert all(1 <= s <= MAX_CHUNK for s in sizes)


@settings(deadline=None, max_examples=200)
@given(n=tasks, w=workers)
def test_chunk_plan_shrinks_towards_the_end(n, w):
    sizes = chunk_plan(n, w)
    # Guided: never a larger chunk after a smaller one, so the tail is small.
    assert all(a >= b for a, b in itertools.pairwise(sizes))
    if sizes:
        assert sizes[0] <= max(1, math.ceil(n / (2 * w)), math.ceil(n / (32 * w)))


@settings(deadline=None, max_examples=200)
@given(n=st.integers(1, 10**6), w=workers)
def test_chunk_plan_bounds_the_number_of_chunks(n, w):
    sizes = chunk_plan(n, w)
    # Every chunk but the last holds at least n / (32 w) tasks: at most
    # 32 chunks per worker, whatever n is (requests per task stay bounded).
    assert len(sizes) <= 32 * w
    assert len(sizes) <= n


@settings(deadline=None, max_examples=200)
@given(n=st.integers(1, 10**6), w=workers)
def test_chunk_plan_gives_every_worker_work(n, w):
    assert len(chunk_plan(n, w)) >= min(n, w)


def test_chunk_plan_examples():
    assert chunk_plan(0, 4) == []
    assert chunk_plan(3, 4) == [1, 1, 1]
    assert chunk_plan(100, 1) == [50, 25, 13, 6, 4, 2]  # floor ceil(100 / 32) = 4, then tail
    assert max(chunk_plan(10**9, 1)) == MAX_CHUNK


@pytest.mark.parametrize("w", [0, -1])
def test_chunk_plan_needs_a_worker(w):
    with pytest.raises(ValueError, match="workers"):
        chunk_plan(10, w)


@settings(deadline=None, max_examples=100)
@given(n=st.integers(1, 10**5), w=st.integers(1, 100))
def test_chunk_sizer_follows_the_plan(n, w):
    sizer = ChunkSizer(n, w)
    plan = chunk_plan(n, w)
    assert [sizer.next_size() for _ in plan] == plan
    assert sizer.next_size() >= 1  # asked past the plan: still a valid size


@given(fixed=st.integers(1, 10**6), n=st.none() | st.integers(0, 10**6), w=workers)
def test_chunk_sizer_uses_a_chosen_size(fixed, n, w):
    sizer = ChunkSizer(n, w, fixed)
    assert [sizer.next_size() for _ in range(3)] == [fixed] * 3


@given(w=workers)
def test_chunk_sizer_of_a_generator_streams(w):
    sizer = ChunkSizer(None, w)
    assert [sizer.next_size() for _ in range(3)] == [STREAM_CHUNK] * 3


@settings(deadline=None, max_examples=200)
@given(size=st.integers(1, 10**5), chunk_tasks=st.integers(1, 10**5),
       payload=st.integers(0, 1 << 40))
def test_chunk_sizer_shrinks_after_a_large_payload(size, chunk_tasks, payload):
    sizer = ChunkSizer(None, 1, size)
    sizer.observe_payload(chunk_tasks, payload)
    new = sizer.next_size()
    assert 1 <= new <= size
    if chunk_tasks == 1 or payload <= 2 * TARGET_PAYLOAD:
        assert new == size
    else:
        assert new <= max(1, size * TARGET_PAYLOAD / payload)


@settings(deadline=None, max_examples=300)
@given(backlog=st.integers(1, 10**7), w=workers)
def test_submit_group_size_spreads_a_backlog_over_every_worker(backlog, w):
    size = submit_group_size(backlog, w)
    assert 1 <= size <= STREAM_CHUNK
    if backlog <= 2 * w:
        assert size == 1  # an idle pool: one task per chunk, lowest latency
        return
    groups = math.ceil(backlog / size)
    if size < STREAM_CHUNK:
        assert 2 * w <= groups <= 4 * w
