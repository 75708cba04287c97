"""Reliability under faults: correct / lost / duplicated results and overhead vs a clean run.

Scenarios (every task naps NAP_S so that a run lasts long enough for faults
to land *during* it; each fault row is compared with the clean row of its
backend):

* ``local_sigkill``: a random live worker (up at least ``MIN_AGE_S``) is
  SIGKILLed every ``KILL_PERIOD_S`` for the whole run (local backend);
* ``local_disk_full``: the local store lives on a small tmpfs that a ballast
  file fills to the last byte for ``FILL_S`` every ``FILL_PERIOD_S``
  (needs root to mount the tmpfs; skipped with a note otherwise). A task the
  full disk made fail must fail with a clear error (ENOSPC / "No space left
  on device"), never silently (lost) nor as a wrong result;
* ``fargate_throttle_5xx``: 20 % throttling + 5 % 5xx injected into every AWS
  call of client and workers (emulated AWS, tests/chaos/_faults.py).

    .venv/bin/python bench/chaos_report.py [--tasks 10000] [--quick] [--json]
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "chaos"))
import _faults  # noqa: E402
import _report as report  # noqa: E402

import starburst  # noqa: E402

NAP_S = 0.002  # per task: 10,000 tasks on 4 workers last >= 5 s
WORKERS = 4
CHUNKSIZE = 20
KILL_PERIOD_S = 0.3
MIN_AGE_S = 0.5  # a worker killed before serving anything counts as "cannot start"
FILL_PERIOD_S = 0.5
FILL_S = 0.15
TMPFS_SIZE = "64m"
RESULT_TIMEOUT_S = 300.0  # plus 0.1 s a task: map()'s timeout is for the whole run


def nap_square(x: int) -> int:
    time.sleep(NAP_S)
    return x * x


def _settings() -> starburst.Settings:
    return starburst.Settings(lease=2.0, heartbeat=0.5, poll=0.05, idle_timeout=30,
                              client_heartbeat=1.0)


class _Killer(threading.Thread):
    """SIGKILLs a random live worker (up >= MIN_AGE_S) every KILL_PERIOD_S until stopped."""

    def __init__(self, ex: starburst.Executor, seed: int = 1) -> None:
        super().__init__(daemon=True, name="chaos-killer")
        self.ex, self.random = ex, random.Random(seed)
        self.stop = threading.Event()
        self.kills = 0
        self.ticks = 0

    def run(self) -> None:
        first_seen: dict[int, float] = {}
        while not self.stop.wait(KILL_PERIOD_S):
            self.ticks += 1
            now = time.monotonic()
            live = set(self.ex._client.backend.pids().values())
            for pid in live:
                first_seen.setdefault(pid, now)
            first_seen = {p: t for p, t in first_seen.items() if p in live}
            old = [p for p, t in first_seen.items() if now - t >= MIN_AGE_S]
            if not old:
                continue
            pid = self.random.choice(old)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            self.kills += 1
            first_seen.pop(pid, None)


class _DiskFiller(threading.Thread):
    """Fills ``mount`` to the last byte for FILL_S every FILL_PERIOD_S until stopped."""

    def __init__(self, mount: Path) -> None:
        super().__init__(daemon=True, name="chaos-disk-filler")
        self.ballast = mount / "ballast.bin"
        self.stop = threading.Event()
        self.fills = 0

    def _fill(self) -> None:
        block = b"\0" * (1 << 20)
        with open(self.ballast, "wb", buffering=0) as f:
            for size in (1 << 20, 1 << 12, 1):
                chunk = block[:size]
                while True:
                    try:
                        f.write(chunk)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break

    def run(self) -> None:
        while not self.stop.wait(FILL_PERIOD_S):
            try:
                self._fill()
                self.fills += 1
                self.stop.wait(FILL_S)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    self.ballast.unlink()


@contextlib.contextmanager
def _tmpfs() -> Iterator[Path | None]:
    """A small tmpfs, or None (with the reason in ``_tmpfs.why``) when it cannot be mounted."""
    mount = Path(tempfile.mkdtemp(prefix="starburst-chaos-disk-"))
    _tmpfs.why = ""
    if os.geteuid() != 0:
        _tmpfs.why = "not root: cannot mount a tmpfs"
        yield None
        shutil.rmtree(mount, ignore_errors=True)
        return
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs",
                           str(mount)], capture_output=True, check=False)
    if done.returncode != 0:
        _tmpfs.why = f"cannot mount a tmpfs: {done.stderr.decode().strip()}"
        yield None
        shutil.rmtree(mount, ignore_errors=True)
        return
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        shutil.rmtree(mount, ignore_errors=True)


_tmpfs.why = ""  # type: ignore[attr-defined]


def _disk_error(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc} {exc.__cause__!r}"
    return "No space left on device" in text or "ENOSPC" in text or "disk" in text.lower()


def _run(backend: str, n: int, fault: str = "") -> dict:
    """One run of ``n`` tasks; ``fault`` is "", "sigkill" or "disk_full"."""
    t0 = time.perf_counter()
    injector: threading.Thread | None = None
    out: dict = {"tasks": n}
    with starburst.Executor(backend=backend, workers=WORKERS, settings=_settings(),
                            progress=False, max_attempts=50) as ex:
        if fault == "sigkill":
            injector = _Killer(ex)
        elif fault == "disk_full":
            injector = _DiskFiller(Path(os.environ["STARBURST_LOCAL_DIR"]))
        if injector is not None:
            injector.start()
        try:
            if fault == "disk_full":
                # per-task outcomes: a task the full disk failed must fail clearly
                futures, submit_errors = [], []
                for chunk_start in range(0, n, CHUNKSIZE):
                    try:
                        futures.extend(ex.submit(nap_square, i) for i in
                                       range(chunk_start, min(n, chunk_start + CHUNKSIZE)))
                    except starburst.StarburstError as exc:
                        submit_errors.append(exc)
                done, not_done = concurrent.futures.wait(
                    futures, timeout=RESULT_TIMEOUT_S + 0.1 * n)
                correct = wrong = clear = unclear = 0
                for i, f in enumerate(futures):
                    if f not in done:
                        continue
                    exc = f.exception()
                    if exc is None:
                        correct += f.result() == i * i
                        wrong += f.result() != i * i
                    elif _disk_error(exc):
                        clear += 1
                    else:
                        unclear += 1
                        out.setdefault("unclear_errors", []).append(repr(exc)[:200])
                submitted = len(futures)
                out.update(correct=correct, wrong=wrong, failed_clearly=clear,
                           failed_unclearly=unclear, not_submitted=n - submitted,
                           submit_errors_clear=sum(_disk_error(e) for e in submit_errors),
                           hung=len(not_done))
                # lost: neither a correct result nor a clear error (refused at submit
                # with a clear error counts as a clear failure)
                refused_clearly = n - submitted if all(map(_disk_error, submit_errors)) else 0
                out["lost"] = n - correct - clear - refused_clearly
            else:
                results = list(ex.map(nap_square, range(n), chunksize=CHUNKSIZE,
                                      timeout=RESULT_TIMEOUT_S + 0.1 * n))
                out["correct"] = sum(r == i * i for i, r in enumerate(results))
                out["lost"] = n - len(results)
        finally:
            if injector is not None:
                injector.stop.set()
                injector.join()
        status = ex.status()
    out["seconds"] = time.perf_counter() - t0
    out["duplicates"] = max(0, status.tasks_done + status.tasks_failed - n)
    out["attempts"] = status.attempts
    out["chunks_done"] = status.chunks_done
    out["workers_launched"] = status.workers_launched
    if fault == "sigkill":
        out["kills"] = injector.kills  # type: ignore[union-attr]
        out["killer_ticks"] = injector.ticks  # type: ignore[union-attr]
    elif fault == "disk_full":
        out["disk_fills"] = injector.fills  # type: ignore[union-attr]
    return out


def _disk_full(n: int) -> tuple[dict | None, str]:
    with _tmpfs() as mount:
        if mount is None:
            return None, _tmpfs.why  # type: ignore[attr-defined]
        old = os.environ.get("STARBURST_LOCAL_DIR")
        os.environ["STARBURST_LOCAL_DIR"] = str(mount)
        try:
            return _run("local", n, "disk_full"), ""
        finally:
            if old is None:
                os.environ.pop("STARBURST_LOCAL_DIR", None)
            else:
                os.environ["STARBURST_LOCAL_DIR"] = old


def main() -> int:
    parser = report.bench_parser(__doc__, repeat=1)
    parser.add_argument("--tasks", type=int, default=10_000)
    args = parser.parse_args()
    n = min(args.tasks, 500) if args.quick else args.tasks
    out: dict = {}
    notes: list[str] = []
    started = time.perf_counter()
    out["local_clean"] = _run("local", n)
    out["local_sigkill"] = _run("local", n, "sigkill")
    disk, why = _disk_full(n)
    if disk is None:
        notes.append(f"local_disk_full skipped: {why}")
    else:
        out["local_disk_full"] = disk
    from starburst.testing import emulated_aws

    faults_dir = Path(tempfile.mkdtemp(prefix="starburst-chaos-"))
    with emulated_aws():
        out["fargate_clean"] = _run("fargate", n)
        _faults.write_sitecustomize(faults_dir, throttle=0.2, server_error=0.05, seed=3)
        _faults.put_first_on_path(faults_dir)
        inj = _faults.install(_faults.Injector(throttle=0.2, server_error=0.05, seed=3))
        try:
            out["fargate_throttle_5xx"] = _run("fargate", n)
        finally:
            _faults.uninstall()
            _faults.remove_from_path(faults_dir)
        out["fargate_throttle_5xx"]["client_faults"] = dict(inj.counts)
        out["fargate_throttle_5xx"]["worker_faults"] = _faults.worker_counts(faults_dir)
    rows = []
    for name, base in [("local_clean", None), ("local_sigkill", "local_clean"),
                       ("local_disk_full", "local_clean"), ("fargate_clean", None),
                       ("fargate_throttle_5xx", "fargate_clean")]:
        if name not in out:
            continue
        r = out[name]
        r["overhead"] = None if base is None else round(r["seconds"] / out[base]["seconds"], 3)
        if name == "local_sigkill":
            injected = f"{r['kills']} kills"
        elif name == "local_disk_full":
            injected = f"{r['disk_fills']} disk fills"
        elif name == "fargate_throttle_5xx":
            c, w = r["client_faults"], r["worker_faults"]
            injected = (f"{c['throttled'] + w.get('throttled', 0)} throttles + "
                        f"{c['server_error'] + w.get('server_error', 0)} 5xx")
        else:
            injected = "-"
        rows.append([name, f"{r['tasks']:,}", f"{r['correct']:,}", r["lost"], r["duplicates"],
                     injected, f"{r['seconds']:.1f}",
                     "-" if base is None else f"{r['overhead']:.2f}x"])
    report.print_table(f"Chaos: results under faults ({n:,} tasks of {NAP_S * 1000:g} ms nap, "
                       f"{WORKERS} workers, chunksize {CHUNKSIZE})",
                       ["fault", "tasks", "correct", "lost", "duplicates", "kills/faults injected",
                        "s", "overhead vs clean"], rows)
    if "local_disk_full" in out:
        d = out["local_disk_full"]
        notes.append(f"local_disk_full: {d['failed_clearly']:,} tasks failed with a clear "
                     f"disk-full error, {d['failed_unclearly']} with another error, "
                     f"{d['wrong']} wrong results, {d['hung']} hung, "
                     f"{d['not_submitted']} refused at submit; lost = neither correct nor "
                     "a clear error")
    notes.append(f"total {time.perf_counter() - started:.0f} s")
    for note in notes:
        print(f"note: {note}")
    if args.json:
        report.emit_json({"bench": "chaos_report", "environment": report.environment(),
                          "notes": notes, "scenarios": out})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
