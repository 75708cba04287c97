"""An initializer defined in ``__main__`` sets globals that the tasks see, as with
ProcessPoolExecutor (both travel by value: without care each would get its own copy
of ``__main__``'s globals, and the initializer's assignments would be lost)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import sys
    import starburst

    G = None
    CACHE = {}

    def init(value):
        global G
        G = value
        CACHE["ready"] = value * 2

    def read(x):
        return (G, CACHE.get("ready"), x)

    if __name__ == "__main__":
        settings = starburst.Settings(lease=2.0, heartbeat=0.5, poll=0.05, idle_timeout=30,
                                      client_heartbeat=1.0, client_stale=600,
                                      timeout_grace=1.0)
        with starburst.Executor(backend=sys.argv[1], workers=1, initializer=init,
                                initargs=(42,), settings=settings, progress=False) as ex:
            print(list(ex.map(read, range(3))))
            G = "changed on the client"  # a global the initializer does not set travels as is
            print(ex.submit(read, 9).result())
""")


def test_an_initializer_in_main_sets_the_globals_its_tasks_read(backend, tmp_path: Path):
    script = tmp_path / "user_script.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "STARBURST_LOCAL_DIR": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    done = subprocess.run([sys.executable, str(script), backend.name], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "[(42, 84, 0), (42, 84, 1), (42, 84, 2)]", done.stdout
    # The initializer's own assignment wins in the worker process, as in a pool.
    assert lines[1] == "(42, 84, 9)", done.stdout
