"""Reliability under faults: correct / lost / duplicated results and overhead vs a clean run.

Scenarios: SIGKILL of a random worker at a steady rate (local backend);
20 % throttling + 5 % 5xx injected into every AWS call of client and
workers (emulated AWS, tests/chaos/_faults.py).

    .venv/bin/python bench/chaos_report.py [--tasks 10000] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "chaos"))
import _faults  # noqa: E402
from _report import add_common_args, emit_json, environment, print_table  # noqa: E402

import starburst  # noqa: E402


def square(x: int) -> int:
    return x * x


def _run(backend: str, n: int, killer_period: float = 0.0) -> dict:
    settings = starburst.Settings(lease=2.0, heartbeat=0.5, poll=0.05, idle_timeout=30,
                                  client_heartbeat=1.0)
    stop, kills = threading.Event(), [0]
    t0 = time.perf_counter()
    with starburst.Executor(backend=backend, workers=4, settings=settings, progress=False,
                            max_attempts=50) as ex:
        def kill() -> None:
            rng, seen = random.Random(1), {}
            while not stop.wait(killer_period):
                now = time.monotonic()
                for pid in ex._client.backend.pids().values():
                    seen.setdefault(pid, now)
                old = [p for p, t in seen.items() if now - t > 0.5]
                if old:
                    try:
                        os.kill(rng.choice(old), signal.SIGKILL)
                        kills[0] += 1
                    except ProcessLookupError:
                        pass
                    seen = {p: t for p, t in seen.items() if p in
                            ex._client.backend.pids().values()}
        thread = threading.Thread(target=kill, daemon=True) if killer_period else None
        if thread:
            thread.start()
        results = list(ex.map(square, range(n), chunksize=20))
        stop.set()
        status = ex.status()
    seconds = time.perf_counter() - t0
    correct = sum(r == i * i for i, r in enumerate(results))
    return {"tasks": n, "correct": correct, "lost": n - len(results),
            "duplicates": max(0, status.tasks_done - n), "seconds": seconds, "kills": kills[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, repeat=1)
    parser.add_argument("--tasks", type=int, default=10_000)
    args = parser.parse_args()
    n = min(args.tasks, 500) if args.quick else args.tasks
    rows, out = [], {}
    clean = _run("local", n)
    chaos = _run("local", n, killer_period=0.3)
    out["local_clean"], out["local_sigkill"] = clean, chaos
    from starburst.testing import emulated_aws

    faults_dir = Path(tempfile.mkdtemp(prefix="starburst-chaos-"))
    with emulated_aws():
        out["fargate_clean"] = _run("fargate", n)
        _faults.write_sitecustomize(faults_dir, throttle=0.2, server_error=0.05, seed=3)
        sys.path.insert(0, str(faults_dir))
        inj = _faults.install(_faults.Injector(throttle=0.2, server_error=0.05, seed=3))
        out["fargate_throttle_5xx"] = _run("fargate", n)
        _faults.uninstall()
        out["fargate_throttle_5xx"]["client_faults"] = dict(inj.counts)
    for name, base in [("local_clean", None), ("local_sigkill", "local_clean"),
                       ("fargate_clean", None), ("fargate_throttle_5xx", "fargate_clean")]:
        r = out[name]
        overhead = "-" if base is None else f"{r['seconds'] / out[base]['seconds']:.2f}x"
        r["overhead"] = None if base is None else round(r["seconds"] / out[base]["seconds"], 3)
        rows.append([name, f"{r['tasks']:,}", f"{r['correct']:,}", r["lost"], r["duplicates"],
                     f"{r['seconds']:.1f}", overhead])
    print_table("Chaos: results under faults", ["fault", "tasks", "correct", "lost",
                                                "duplicates", "s", "overhead vs clean"], rows)
    if args.json:
        emit_json({"bench": "chaos_report", "environment": environment(), "scenarios": out})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
