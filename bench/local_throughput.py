"""Local throughput: starburst's local backend against the usual process pools.

On this machine, with ``--workers`` (default 2) worker processes each, it
times N no-op tasks (a module-level function returning its argument):

* ``map``: starburst, ``ProcessPoolExecutor`` with ``chunksize=1`` and with
  a tuned ``chunksize = ceil(N / (4 * workers))``, loky (``chunksize=1`` and
  tuned) and dask.distributed (``Client.map`` + ``gather``);
* ``submit``: submit all N, then ``result()`` each (dask: ``Client.submit``
  + ``Future.result``).

Every pool is started and warmed with one task before timing, measured
``--repeat`` times (median reported) and shut down before the next pool
starts, so idle pools do not steal the two cores. Ratios are against
``ProcessPoolExecutor(chunksize=1)`` for ``map`` and against
``ProcessPoolExecutor.submit`` for ``submit``.

Then, in fresh subprocesses, the client's peak RSS (``ru_maxrss``) for a
starburst ``map`` over a 1,000,000-item generator (consumed and summed),
against the same subprocess mapping over 10 items: the difference is what
the streaming map costs in client memory (it must stay bounded).

Targets: starburst map >= 5x PPE(chunksize=1) map; starburst submit >= 0.5x
PPE submit (goal 1x).

Usage (from the repository root)::

    .venv/bin/python bench/local_throughput.py [--tasks 10000] [--repeat 5] [--json]
    .venv/bin/python bench/local_throughput.py --quick --tasks 200 --json   # smoke test
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import gc
import importlib.util
import json
import logging
import math
import os
import resource
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _report as report  # the bench directory is not a package

POOLS = ("starburst", "ppe", "loky", "dask")
BASELINE_ITEMS = 10


def noop(x: Any) -> Any:
    """The task: return the argument (module-level, so every pool can pickle it)."""
    return x


# -- measurements ---------------------------------------------------------------

def _timed(run: Callable[[], list[Any]], expected: list[Any], timing: report.Timing) -> None:
    gc.collect()
    t0 = time.perf_counter()
    out = run()
    timing.add(time.perf_counter() - t0)
    if out != expected:
        raise AssertionError(f"wrong results: got {len(out)} items, first {out[:5]!r}")


def _submit_all(submit: Callable[..., Any], n: int) -> list[Any]:
    futures = [submit(noop, i) for i in range(n)]
    return [f.result() for f in futures]


def bench_cf_pool(start: Callable[[], cf.Executor], n: int, repeat: int,
                  map_chunksizes: dict[str, int],
                  stop: Callable[[cf.Executor], None] | None = None) -> dict[str, Any]:
    """A concurrent.futures-style executor: map with each chunksize, and submit."""
    expected = list(range(n))
    t0 = time.perf_counter()
    ex = start()
    try:
        ex.submit(noop, 0).result()  # started and warm
        startup = time.perf_counter() - t0
        maps = {label: report.Timing(n) for label in map_chunksizes}
        sub = report.Timing(n)
        for _ in range(repeat):
            for label, cs in map_chunksizes.items():
                _timed(lambda cs=cs: list(ex.map(noop, range(n), chunksize=cs)), expected,
                       maps[label])
            _timed(lambda: _submit_all(ex.submit, n), expected, sub)
    finally:
        if stop is not None:
            stop(ex)
        else:
            ex.shutdown(wait=True)
    return {"startup_s": startup, "map": maps, "submit": sub}


def bench_starburst(n: int, repeat: int, workers: int) -> dict[str, Any]:
    import starburst

    expected = list(range(n))
    t0 = time.perf_counter()
    ex = starburst.Executor(workers=workers, progress=False)
    try:
        ex.submit(noop, 0).result()
        startup = time.perf_counter() - t0
        mp, sub = report.Timing(n), report.Timing(n)
        for _ in range(repeat):
            _timed(lambda: list(ex.map(noop, range(n))), expected, mp)
            _timed(lambda: _submit_all(ex.submit, n), expected, sub)
    finally:
        ex.shutdown(wait=True)
    return {"startup_s": startup, "map": {"starburst": mp}, "submit": sub}


@contextlib.contextmanager
def _quiet_dask() -> Iterator[None]:
    """Keep dask's logging and warnings off the bench output."""
    names = ("distributed", "tornado", "asyncio", "bokeh")
    saved = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            for name, level in saved.items():
                logging.getLogger(name).setLevel(level)


def bench_dask(n: int, repeat: int, workers: int) -> dict[str, Any]:
    with _quiet_dask():
        from distributed import Client, LocalCluster

        expected = list(range(n))
        t0 = time.perf_counter()
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                             dashboard_address=None, silence_logs=logging.CRITICAL) as cluster, \
                Client(cluster) as client:
            client.submit(noop, 0, pure=False).result()
            startup = time.perf_counter() - t0
            mp, sub = report.Timing(n), report.Timing(n)

            def run_map() -> list[Any]:
                futures = client.map(noop, range(n), pure=False)
                return list(client.gather(futures))

            def run_submit() -> list[Any]:
                return _submit_all(lambda fn, x: client.submit(fn, x, pure=False), n)

            for _ in range(repeat):
                _timed(run_map, expected, mp)
                _timed(run_submit, expected, sub)
    return {"startup_s": startup, "map": {"dask": mp}, "submit": sub}


def run_pools(pools: list[str], n: int, repeat: int, workers: int,
              log: Callable[[str], None]) -> tuple[dict[str, report.Timing],
                                                   dict[str, report.Timing],
                                                   dict[str, float], int]:
    tuned = max(1, math.ceil(n / (4 * workers)))
    maps: dict[str, report.Timing] = {}
    submits: dict[str, report.Timing] = {}
    startup: dict[str, float] = {}
    for pool in pools:
        log(f"  {pool} ...")
        if pool == "starburst":
            got = bench_starburst(n, repeat, workers)
        elif pool == "ppe":
            got = bench_cf_pool(lambda: cf.ProcessPoolExecutor(workers), n, repeat,
                                {"ppe_cs1": 1, "ppe_cs_tuned": tuned})
        elif pool == "loky":
            from loky import get_reusable_executor

            got = bench_cf_pool(lambda: get_reusable_executor(max_workers=workers), n, repeat,
                                {"loky_cs1": 1, "loky_cs_tuned": tuned},
                                stop=lambda ex: ex.shutdown(wait=True, kill_workers=True))
        elif pool == "dask":
            got = bench_dask(n, repeat, workers)
        else:  # pragma: no cover - argparse restricts the choices
            raise ValueError(pool)
        maps.update(got["map"])
        submits[pool] = got["submit"]
        startup[pool] = got["startup_s"]
    return maps, submits, startup, tuned


# -- client memory over a long generator (child process) ---------------------------

def _rss_mib() -> float:
    """Current resident set size in MiB (Linux /proc; NaN elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return math.nan


def _maxrss_mib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def _hwm_mib() -> float:
    """This address space's peak RSS (Linux VmHWM, reset by exec; NaN elsewhere)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return math.nan


# ru_maxrss survives fork + exec on Linux: a child started straight from this
# (large, dask-laden) process would report *our* peak. A small launcher process
# in between gives the measured child a fresh maximum.
_LAUNCHER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


def child_memory(mode: str, items: int, workers: int) -> dict[str, Any]:
    """Runs in a fresh process: start an executor, map, report peak client RSS."""
    t_import = time.perf_counter()
    import starburst

    import_s = time.perf_counter() - t_import
    count = BASELINE_ITEMS if mode == "baseline" else items
    t0 = time.perf_counter()
    with starburst.Executor(workers=workers, progress=False) as ex:
        started_rss = _rss_mib()
        samples: list[tuple[int, float]] = []
        step = max(1, count // 10)
        total = 0
        t_map = time.perf_counter()
        for done, value in enumerate(ex.map(noop, (i for i in range(count))), start=1):
            total += value
            if done % step == 0:
                samples.append((done, round(_rss_mib(), 1)))
        map_s = time.perf_counter() - t_map
    total_s = time.perf_counter() - t0
    expected = count * (count - 1) // 2
    return {
        "mode": mode, "items": count, "sum_ok": total == expected,
        "maxrss_mib": round(_maxrss_mib(), 1),
        "vmhwm_mib": round(_hwm_mib(), 1),
        "rss_after_start_mib": round(started_rss, 1),
        "rss_samples_mib": samples,
        "map_s": round(map_s, 3),
        "tasks_per_s": round(count / map_s, 1) if map_s > 0 else None,
        "total_s": round(total_s, 3),
        "import_s": round(import_s, 3),
    }


def measure_memory(items: int, workers: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in ("baseline", "generator"):
        cmd = [sys.executable, "-c", _LAUNCHER,
               sys.executable, os.path.abspath(__file__), "--child-memory", mode,
               "--memory-items", str(items), "--workers", str(workers)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"memory child ({mode}) failed with exit code {proc.returncode}:"
                               f"\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        result["process_wall_s"] = round(wall, 3)
        out[mode] = result
    out["growth_mib"] = round(out["generator"]["maxrss_mib"] - out["baseline"]["maxrss_mib"], 1)
    return out


# -- report ---------------------------------------------------------------------

_MAP_LABELS = {
    "starburst": "starburst map",
    "ppe_cs1": "ProcessPool map chunksize=1",
    "ppe_cs_tuned": "ProcessPool map chunksize={tuned}",
    "loky_cs1": "loky map chunksize=1",
    "loky_cs_tuned": "loky map chunksize={tuned}",
    "dask": "dask Client.map + gather",
}
_SUBMIT_LABELS = {
    "starburst": "starburst submit + result",
    "ppe": "ProcessPool submit + result",
    "loky": "loky submit + result",
    "dask": "dask Client.submit + result",
}


def _ratio(a: report.Timing | None, b: report.Timing | None) -> float:
    if a is None or b is None:
        return math.nan
    return a.rate / b.rate


def main(argv: list[str] | None = None) -> int:
    parser = report.bench_parser(__doc__)
    parser.add_argument("--tasks", type=int, default=10_000, help="no-op tasks per run")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per pool")
    parser.add_argument("--pools", default=",".join(POOLS),
                        help=f"comma-separated subset of {','.join(POOLS)}")
    parser.add_argument("--memory-items", type=int, default=None,
                        help="generator length of the memory test (default 1,000,000; "
                             "100,000 with --quick; 0 skips it)")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 when a gating target fails")
    parser.add_argument("--child-memory", choices=("baseline", "generator"),
                        help=argparse.SUPPRESS)
    report.add_common_args(parser, repeat=5)
    args = parser.parse_args(argv)
    mem_items = (args.memory_items if args.memory_items is not None
                 else (100_000 if args.quick else 1_000_000))

    if args.child_memory:
        print(json.dumps(child_memory(args.child_memory, mem_items, args.workers)))
        return 0

    if args.tasks < 1 or args.workers < 1:
        parser.error("--tasks and --workers must be >= 1")
    pools = [p.strip() for p in args.pools.split(",") if p.strip()]
    unknown = sorted(set(pools) - set(POOLS))
    if unknown:
        parser.error(f"unknown pool(s) {', '.join(unknown)}; choose from {', '.join(POOLS)}")
    repeat = report.resolve_repeat(args)
    n, workers = args.tasks, args.workers

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    for pool, module in (("loky", "loky"), ("dask", "distributed")):
        if pool in pools and importlib.util.find_spec(module) is None:
            log(f"  skipping {pool}: {module} is not installed (pip install -e '.[bench]')")
            pools.remove(pool)

    log(f"local_throughput: {n:,} no-op tasks, {workers} workers, median of {repeat}")
    maps, submits, startup, tuned = run_pools(pools, n, repeat, workers, log)

    memory: dict[str, Any] | None = None
    if mem_items > 0 and "starburst" in pools:
        log(f"  starburst map over a {mem_items:,}-item generator (fresh processes) ...")
        memory = measure_memory(mem_items, workers)

    # -- tables
    base_map, base_sub = maps.get("ppe_cs1"), submits.get("ppe")
    map_rows = []
    for key, timing in maps.items():
        map_rows.append([_MAP_LABELS[key].format(tuned=tuned), report.fmt_rate(timing.rate),
                         f"{timing.median_s * 1000:,.1f}", f"{_ratio(timing, base_map):.2f}x"])
    report.print_table(f"map: {n:,} no-op tasks, {workers} workers, median of {repeat} "
                       "(ratio vs ProcessPool chunksize=1)",
                       ["pool", "tasks/s", "ms/run", "ratio"], map_rows)
    sub_rows = []
    for key, timing in submits.items():
        sub_rows.append([_SUBMIT_LABELS[key], report.fmt_rate(timing.rate),
                         f"{timing.median_s * 1000:,.1f}", f"{_ratio(timing, base_sub):.2f}x"])
    report.print_table(f"submit all, then result each: {n:,} tasks, median of {repeat} "
                       "(ratio vs ProcessPool submit)",
                       ["pool", "tasks/s", "ms/run", "ratio"], sub_rows)
    report.print_table("pool start + one warm-up task (s)", ["pool", "seconds"],
                       [[k, f"{v:.2f}"] for k, v in startup.items()])
    if memory is not None:
        b, g = memory["baseline"], memory["generator"]
        report.print_table(
            f"starburst client peak RSS (ru_maxrss), fresh process, {workers} workers",
            ["run", "items", "peak RSS MiB", "map s", "tasks/s", "process s"],
            [["baseline: map over 10 items", f"{b['items']:,}", f"{b['maxrss_mib']:.1f}",
              f"{b['map_s']:.2f}", "-", f"{b['process_wall_s']:.2f}"],
             ["generator, consumed and summed", f"{g['items']:,}",
              f"{g['maxrss_mib']:.1f}", f"{g['map_s']:.2f}",
              report.fmt_rate(g["tasks_per_s"] or math.nan), f"{g['process_wall_s']:.2f}"]])
        print(f"VmHWM cross-check (MiB): baseline {b['vmhwm_mib']:.1f}, "
              f"generator {g['vmhwm_mib']:.1f}")
        samples = ", ".join(f"{k // 1000:,}k:{v:.0f}" for k, v in g["rss_samples_mib"])
        print(f"growth over baseline: {memory['growth_mib']:+.1f} MiB; sum correct: "
              f"{g['sum_ok']}; RSS (MiB) while consuming: {samples}")
        print()

    sb_map, sb_sub = maps.get("starburst"), submits.get("starburst")
    targets = [
        report.Target("starburst map >= 5x ProcessPool(chunksize=1) map",
                      _ratio(sb_map, base_map), 5.0),
        report.Target("starburst submit >= 0.5x ProcessPool submit", _ratio(sb_sub, base_sub), 0.5),
        report.Target("starburst submit >= 1x ProcessPool submit (goal)", _ratio(sb_sub, base_sub),
                      1.0, gating=False),
    ]
    report.print_targets(targets)

    failed = not report.gating_passed(targets)
    if args.json:
        report.emit_json({
            "bench": "local_throughput",
            "tasks": n,
            "workers": workers,
            "repeat": repeat,
            "quick": bool(args.quick),
            "tuned_chunksize": tuned,
            "env": report.environment(),
            "map": {k: t.as_dict() for k, t in maps.items()},
            "submit": {k: t.as_dict() for k, t in submits.items()},
            "ratios": {
                "map_vs_ppe_cs1": {k: _round(_ratio(t, base_map)) for k, t in maps.items()},
                "submit_vs_ppe": {k: _round(_ratio(t, base_sub)) for k, t in submits.items()},
            },
            "startup_s": {k: round(v, 3) for k, v in startup.items()},
            "memory": memory,
            "targets": {
                "map_5x_ppe_cs1": targets[0].as_dict(),
                "submit_0_5x_ppe": targets[1].as_dict(),
                "submit_1x_ppe_goal": targets[2].as_dict(),
            },
            "pass": not failed,
        })
    return 1 if (failed and args.strict) else 0


def _round(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 3)


if __name__ == "__main__":
    sys.exit(main())
