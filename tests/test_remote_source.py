"""Remote tracebacks show the user's file, line and source text for code shipped by value.

A function defined in ``__main__``, in a notebook cell or as a closure
travels by value (cloudpickle): the worker has no module to import it
from, and may have no copy of its file at all (Fargate, or a notebook
cell, which exists only in the kernel's ``linecache``). The client ships
the source lines with the function, so the traceback formatted on the
worker carries them. Each test makes the file unreadable on the worker
(deleted, or never on disk) where it can, so only shipped lines can pass.
"""

from __future__ import annotations

import linecache
import os
import subprocess
import sys
import textwrap
import traceback
from pathlib import Path

import pytest
from test_notebook import run_notebook, texts

from starburst.wire.serialization import dumps, loads

#: The source text of the line that raises, in every test below: unique, so
#: finding it in a traceback proves the line's text came along.
RAISING_LINE = 'raise ValueError(f"deliberate failure {x}")'

SCRIPT = textwrap.dedent(f"""
    import linecache, os, sys
    import starburst

    def explode(x):
        y = x + 1
        {RAISING_LINE}

    if __name__ == "__main__":
        # Read this file into linecache, then delete it: a worker can only
        # show its lines if the client shipped them.
        linecache.getlines(__file__)
        os.unlink(__file__)
        settings = starburst.Settings(lease=2.0, heartbeat=0.5, poll=0.05, idle_timeout=30,
                                      client_heartbeat=1.0, client_stale=600,
                                      timeout_grace=1.0)
        with starburst.Executor(backend=sys.argv[1], workers=1, settings=settings,
                                progress=False) as ex:
            try:
                ex.submit(explode, 3).result()
            except ValueError as exc:
                print(exc.__cause__)
""")


def _assert_shows_source(traceback_text: str, filename: str, line: int) -> None:
    assert "<dynamic-code>" not in traceback_text, traceback_text
    assert f'File "{filename}", line {line}' in traceback_text, traceback_text
    assert RAISING_LINE in traceback_text, traceback_text


def test_main_script_traceback_shows_file_line_and_source(backend, tmp_path: Path) -> None:
    script = tmp_path / "user_script.py"
    script.write_text(SCRIPT)
    line = SCRIPT.splitlines().index(f"    {RAISING_LINE}") + 1
    env = {**os.environ, "STARBURST_LOCAL_DIR": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    done = subprocess.run([sys.executable, str(script), backend.name], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert not script.exists()
    _assert_shows_source(done.stdout, str(script), line)


def test_closure_traceback_shows_file_line_and_source(executor_factory) -> None:
    offset = 10

    def explode(x: int) -> int:
        y = x + offset
        raise ValueError(f"deliberate failure {x}")  # the RAISING_LINE, by value
        return y

    with executor_factory(workers=1) as ex, pytest.raises(ValueError) as info:
        ex.submit(explode, 3).result()
    line = explode.__code__.co_firstlineno + 2
    _assert_shows_source(str(info.value.__cause__), __file__, line)


def test_notebook_cell_traceback_shows_cell_line_and_source(backend, tmp_path: Path,
                                                            monkeypatch) -> None:
    monkeypatch.setenv("STARBURST_LOCAL_DIR", str(tmp_path))
    cells = [
        "import linecache, starburst",
        f"def explode(x):\n    y = x + 1\n    {RAISING_LINE}",
        "settings = starburst.Settings(lease=2.0, heartbeat=0.5, poll=0.05, idle_timeout=30,\n"
        "                              client_heartbeat=1.0, client_stale=600,\n"
        "                              timeout_grace=1.0)\n"
        f"with starburst.Executor(backend={backend.name!r}, workers=1, settings=settings,\n"
        "                        progress=False) as ex:\n"
        "    try:\n"
        "        ex.submit(explode, 3).result()\n"
        "    except ValueError as exc:\n"
        "        print(exc.__cause__)\n"
        "print('CELL-FILE', explode.__code__.co_filename)\n"
        "print('ON-DISK', __import__('os').path.exists(explode.__code__.co_filename))",
    ]
    nb = run_notebook(cells, tmp_path)
    printed = "\n".join(texts(nb.cells[-1].outputs))
    filename = printed.split("CELL-FILE ", 1)[1].split("\n", 1)[0]
    assert "ON-DISK False" in printed, printed  # the cell exists only in the kernel
    _assert_shows_source(printed, filename, 3)


def test_nested_code_keeps_its_file_and_lines_through_a_frame(monkeypatch) -> None:
    def outer(x: int) -> int:
        def inner(x: int) -> int:
            raise ValueError(f"deliberate failure {x}")  # the RAISING_LINE, nested

        return inner(x)

    frame = dumps(outer)
    # As on a worker without this file: nothing cached, nothing on disk to read.
    monkeypatch.setattr(linecache, "cache", {})
    monkeypatch.setattr(linecache, "updatecache", lambda *a, **k: [])
    rebuilt = loads(frame)
    assert rebuilt is not outer
    with pytest.raises(ValueError) as info:
        rebuilt(3)
    text = "".join(traceback.format_exception(info.value))
    inner_line = outer.__code__.co_firstlineno + 2
    _assert_shows_source(text, __file__, inner_line)
