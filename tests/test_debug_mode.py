"""Debug mode: the first worker whose task raises stays alive, and the client
says how to get into it (ECS Exec on Fargate, a pid locally)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from _support import alive, wait_for

import starburst

KEEPALIVE = 3.0


def fail(x: int) -> int:
    raise ValueError(f"bad {x}")


def _pids(ex: starburst.Executor) -> dict[str, int]:
    if ex._options.backend == "fargate":
        from _support import SharedEmulator

        return dict(SharedEmulator.get().runner.pids())
    return dict(ex._client.backend.pids())  # type: ignore[attr-defined]


def test_debug_options_are_validated() -> None:
    with pytest.raises(starburst.ConfigurationError, match="debug_keepalive"):
        starburst.Executor(debug=True, debug_keepalive=0)
    with pytest.raises(starburst.ConfigurationError, match="debug="):
        starburst.Executor(debug="yes")  # type: ignore[arg-type]


def test_failed_task_keeps_its_worker_alive(executor_factory: Any,
                                            capfd: pytest.CaptureFixture[str]) -> None:
    ex = executor_factory(workers=1, debug=True, debug_keepalive=KEEPALIVE)
    calls: list[dict[str, Any]] = []
    fargate = ex._options.backend == "fargate"
    if fargate:
        ex._client.backend.ecs.meta.events.register(
            "provide-client-params.ecs.RunTask",
            lambda params, **_: calls.append(dict(params)))
    with pytest.raises(ValueError, match="bad 1"):
        ex.submit(fail, 1).result(timeout=60)
    pids = wait_for(lambda: _pids(ex), timeout=10, what="the failed task's worker")
    (worker, pid), = pids.items()
    err = wait_for(lambda: capfd.readouterr().err or None, timeout=10,
                   what="the debug hint")
    if fargate:
        assert calls
        assert all(c.get("enableExecuteCommand") is True for c in calls)
        assert re.search(rf"aws ecs execute-command --cluster \S+ --task {re.escape(worker)} "
                         r'--container \S+ --interactive --command "/bin/sh"', err), err
    else:
        assert f"py-spy dump --pid {pid}" in err, err
    # Still alive shortly after the failure (it would take work otherwise)...
    assert alive(pid)
    # ...and gone once the keep-alive is over.
    wait_for(lambda: not alive(pid), timeout=KEEPALIVE + 15,
             what="the debug worker to exit after its keep-alive")


def test_closing_with_a_worker_kept_for_debugging_leaves_no_unreaped_process(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    # The kept worker outlives the executor: its process handle must go to a
    # reaper, not be dropped while it runs (a zombie, and a "subprocess is still
    # running" ResourceWarning failing whichever test runs at garbage collection).
    import gc
    import warnings

    monkeypatch.setenv("STARBURST_LOCAL_DIR", str(tmp_path))
    ex = starburst.Executor(workers=1, debug=True, debug_keepalive=KEEPALIVE, progress=False)
    with pytest.raises(ValueError, match="bad 2"):
        ex.submit(fail, 2).result(timeout=60)
    backend = ex._client.backend  # type: ignore[attr-defined]
    (pid,) = wait_for(backend.pids, timeout=10, what="the kept worker").values()
    del backend  # nothing here may keep the backend (and its handles) alive
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ex.shutdown()
        assert alive(pid)  # kept: shutdown leaves it to its keep-alive
        del ex
        gc.collect()
        wait_for(lambda: not alive(pid), timeout=KEEPALIVE + 15,
                 what="the kept worker to exit")
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)
                and "still running" in str(w.message)]
