"""The code archive end to end on the emulated Fargate: what ships, where it unpacks.

A user package with secrets beside its module: the task imports the module
from the archive, the secrets never reach the worker, the client says once
what it left out, and the worker unpacks into a private directory of its
own (0700, named for the session) that is gone when the worker is.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
from _support import wait_for

import starburst


def test_the_package_ships_without_its_secrets_into_a_private_directory(
        aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    project = tmp_path / "project"
    package = project / "shippedpkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("VALUE = 'from the archive'\n")
    (package / ".env").write_text("SECRET=1\n")
    (package / "id.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    monkeypatch.chdir(project)  # the working directory's modules are the user's code
    monkeypatch.syspath_prepend(str(project))
    monkeypatch.setitem(sys.modules, "shippedpkg", importlib.import_module("shippedpkg"))

    def probe() -> dict[str, object]:
        import os
        import stat

        import shippedpkg
        here = os.path.dirname(shippedpkg.__file__)
        code_dir = os.environ["STARBURST_CODE_DIR"]
        return {"value": shippedpkg.VALUE, "file": shippedpkg.__file__,
                "files": sorted(os.listdir(here)), "code_dir": code_dir,
                "mode": stat.S_IMODE(os.stat(code_dir).st_mode)}

    settings = starburst.Settings(lease=4.0, heartbeat=1.0, poll=0.05, idle_timeout=30,
                                  client_heartbeat=1.0, client_stale=600, timeout_grace=1.0)
    with starburst.Executor(backend="fargate", workers=1, settings=settings,
                            progress=False) as ex:
        got = ex.submit(probe).result(timeout=120)
        session = ex.session_id
    wait_for(lambda: not aws.runner.pids(), timeout=20,
             what="every task process to exit after shutdown")
    assert got["value"] == "from the archive"
    code_dir = Path(str(got["code_dir"]))
    assert Path(str(got["file"])).is_relative_to(code_dir)
    assert code_dir.name.startswith(f"starburst-code-{session}-")
    assert got["mode"] == 0o700
    assert ".env" not in got["files"]
    assert "id.pem" not in got["files"]
    assert not code_dir.exists()  # the worker removed it when it exited
    err = capfd.readouterr().err
    assert ("the code archive leaves out 2 private or git-ignored path(s): "
            "shippedpkg/.env, shippedpkg/id.pem") in err
    assert err.count("the code archive leaves out") == 1
