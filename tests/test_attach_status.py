"""What ``status()`` says of a session taken over by ``attach`` (found by a helper's run)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_detached import _start

import starburst


def test_status_after_attach_counts_the_previous_clients_chunks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An attached client sent nothing itself: its chunks_done was sent minus
    outstanding, so negative. The chunks it adopted count as sent."""
    proc, session = _start(tmp_path, detached=True, after="ex.shutdown()")
    proc.communicate(timeout=30)
    assert proc.returncode == 0
    monkeypatch.setenv("STARBURST_LOCAL_DIR", str(tmp_path))
    with starburst.attach(session, progress=False) as handle:
        first = handle.status()
        chunks = first.chunks_done + first.chunks_pending + first.chunks_running
        assert first.chunks_done >= 0
        assert chunks >= 1
        for future in handle.as_completed(timeout=120):
            future.result()
        last = handle.status()
    assert last.tasks_done == 20
    assert last.chunks_done == chunks  # every adopted chunk, none counted twice
    assert last.chunks_pending == last.chunks_running == 0
