"""AWS requests per task, end-to-end throughput and latency on the emulated AWS.

Runs ``Executor(backend="fargate")`` inside ``starburst.testing.emulated_aws()``
(moto on 127.0.0.1 plus the ECS task runner that starts each Fargate task
as a local worker process) and counts every HTTP request botocore sends,
retries included, in the client and in every worker, by service and
operation (a ``before-send`` event hook, installed in the workers through
a ``sitecustomize`` module on the path the task runner gives them).

Figures (issue "The Fargate path"):

* requests per task for N no-op tasks on W workers, a whole session
  (queues created to queues deleted): target <= 0.05;
* end-to-end tasks/s of that run (goal >= 1,000 on this machine), and apart:
  the time to its first result (the session's opening: queues, key secret,
  own role, task definition, first worker) and the tasks/s after it;
* time to first result on an already-running worker: target <= 0.5 s;
* a 1 GiB object round trip through the S3 store (multipart, parallel).

    .venv/bin/python bench/aws_requests.py [--tasks 10000] [--workers 8] [--json]
"""

from __future__ import annotations

import collections
import json
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _report as report  # the bench directory is not a package

_COUNTER = textwrap.dedent('''
    """Counts botocore HTTP requests of this process (installed by bench/aws_requests.py)."""
    import atexit, collections, json, os, threading

    COUNTS = collections.Counter()
    EMULATOR = collections.Counter()
    _OUT = {out!r}
    # Threads of the emulator itself (the ECS agent and task runner stand in
    # for AWS's own machinery: role credentials, awslogs, task state).
    _EMULATOR_THREADS = ("starburst-ecs-", "starburst-task-")

    def _count(event_name, **kwargs):
        # event_name: before-send.<service>.<Operation>
        op = event_name.split(".", 1)[1]
        if threading.current_thread().name.startswith(_EMULATOR_THREADS):
            EMULATOR[op] += 1
        else:
            COUNTS[op] += 1

    def _install():
        try:
            import botocore.session
        except ImportError:
            return
        original = botocore.session.Session.create_client

        def create_client(self, *args, **kwargs):
            made = original(self, *args, **kwargs)
            made.meta.events.register("before-send.*.*", _count)
            return made

        botocore.session.Session.create_client = create_client

    def _dump():
        if COUNTS and os.environ.get("STARBURST_SESSION"):
            path = os.path.join(_OUT, f"worker-{{os.getpid()}}.json")
            with open(path, "w") as fh:
                json.dump(dict(COUNTS), fh)

    _install()
    atexit.register(_dump)
''')


def _install_counter(directory: Path) -> object:
    """Write the counting sitecustomize, put it first on sys.path, import it here."""
    (directory / "sitecustomize.py").write_text(_COUNTER.format(out=str(directory)))
    sys.path.insert(0, str(directory))
    import importlib

    return importlib.import_module("sitecustomize")


def noop(x: int) -> int:
    """The task: nothing, so the protocol's own cost shows."""
    return x


def main() -> int:
    parser = report.bench_parser(__doc__, repeat=5)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--gib", type=float, default=1.0,
                        help="size of the S3 round-trip object in GiB (0 skips it)")
    args = parser.parse_args()
    repeat = report.resolve_repeat(args)
    if args.quick:
        args.tasks, args.gib = min(args.tasks, 500), min(args.gib, 0.05)
    counts_dir = Path(tempfile.mkdtemp(prefix="starburst-bench-requests-"))
    counter = _install_counter(counts_dir)

    import starburst
    from starburst.testing import emulated_aws
    from starburst.transport.s3 import S3Store

    settings = starburst.Settings(lease=30.0, heartbeat=7.5, poll=0.1, idle_timeout=60,
                                  client_heartbeat=10.0)
    figures: dict[str, object] = {}
    with emulated_aws() as aws:
        # 1. A whole session of N no-op tasks: every request of client and workers.
        client_counts: collections.Counter[str] = counter.COUNTS  # type: ignore[attr-defined]
        client_counts.clear()
        counter.EMULATOR.clear()  # type: ignore[attr-defined]
        started = time.perf_counter()
        with starburst.Executor(backend="fargate", workers=args.workers, settings=settings,
                                progress=False) as ex:
            first_result_at = None
            for i, value in enumerate(ex.map(noop, range(args.tasks))):
                if first_result_at is None:
                    first_result_at = time.perf_counter() - started
                assert value == i
            run_s = time.perf_counter() - started
            session_id = ex.session_id
        session_s = time.perf_counter() - started
        deadline = time.monotonic() + 30
        while aws.runner.pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        total: collections.Counter[str] = collections.Counter(client_counts)
        worker_files = sorted(counts_dir.glob("worker-*.json"))
        for path in worker_files:
            total.update(json.loads(path.read_text()))
            path.unlink()
        requests = sum(total.values())
        emulator = dict(counter.EMULATOR)  # type: ignore[attr-defined]
        per_task = requests / args.tasks
        by_service: collections.Counter[str] = collections.Counter()
        for key, n in total.items():
            by_service[key.split(".", 1)[0]] += n

        # 2. Time to first result on warm workers: a small job on running workers.
        latencies = []
        with starburst.Executor(backend="fargate", workers=1, settings=settings,
                                progress=False) as ex:
            ex.submit(noop, 0).result(timeout=120)  # the worker is up and serving
            for i in range(repeat * 4):
                t0 = time.perf_counter()
                ex.submit(noop, i).result(timeout=60)
                latencies.append(time.perf_counter() - t0)
        first_warm = statistics.median(latencies)

        # 3. A 1 GiB round trip through the S3 store.
        round_trip = None
        if args.gib > 0:
            store = S3Store(aws.shared.bucket, f"bench/{session_id}")
            payload = os.urandom(1 << 20) * int(args.gib * 1024)
            t0 = time.perf_counter()
            store.put("big", payload)
            up = time.perf_counter() - t0
            t0 = time.perf_counter()
            back = store.get("big")
            down = time.perf_counter() - t0
            assert back == payload
            store.delete_prefix("")
            round_trip = {"bytes": len(payload), "upload_s": round(up, 2),
                          "download_s": round(down, 2),
                          "upload_mib_s": round(len(payload) / up / 2**20, 1),
                          "download_mib_s": round(len(payload) / down / 2**20, 1)}
            del payload, back

    rows = [[op, f"{n:,}", f"{n / args.tasks:.4f}"] for op, n in total.most_common()]
    report.print_table(f"AWS requests of a whole session: {args.tasks:,} no-op tasks on "
                       f"{args.workers} workers (client + {len(worker_files)} workers)",
                       ["service.operation", "requests", "per task"], rows)
    report.print_table("Summary", ["figure", "value"], [
        ["requests, all services", f"{requests:,}"],
        ["requests per task", f"{per_task:.4f}"],
        ["(not counted: the emulator's own ECS agent / awslogs / task-state calls)",
         f"{sum(emulator.values()):,}"],
        ["by service", ", ".join(f"{s} {n:,}" for s, n in by_service.most_common())],
        ["end-to-end tasks/s (map, first chunk to last result)",
         f"{args.tasks / run_s:,.0f}"],
        ["session wall time incl. start and cleanup (s)", f"{session_s:.2f}"],
        ["time to first result of the cold session (s)", f"{first_result_at or 0:.2f}"],
        ["tasks/s after the first result",
         f"{(args.tasks - 1) / max(run_s - (first_result_at or 0.0), 1e-9):,.0f}"],
        [f"time to first result on a warm worker (median of {len(latencies)}) (s)",
         f"{first_warm:.3f}"],
        *([[f"S3 round trip of {round_trip['bytes'] / 2**30:.2f} GiB: up / down (s)",
            f"{round_trip['upload_s']} / {round_trip['download_s']} "
            f"({round_trip['upload_mib_s']} / {round_trip['download_mib_s']} MiB/s)"]]
          if round_trip else []),
    ])
    targets = [
        report.Target("requests per task <= 0.05 (shown as 0.05 / value)", 0.05 / per_task, 1.0),
        report.Target("warm time to first result <= 0.5 s (shown as 0.5 / value)",
                      0.5 / first_warm, 1.0),
        report.Target("end-to-end tasks/s >= 1,000 (goal)", args.tasks / run_s, 1000, gating=False),
    ]
    report.print_targets(targets)
    figures.update({
        "bench": "aws_requests", "environment": report.environment(), "tasks": args.tasks,
        "workers": args.workers, "requests": requests, "requests_per_task": round(per_task, 5),
        "by_operation": dict(total.most_common()), "by_service": dict(by_service),
        "emulator_requests_not_counted": emulator,
        "tasks_per_s": round(args.tasks / run_s, 1), "session_s": round(session_s, 3),
        # The session's opening (queues, key secret, role, definitions, first
        # worker) apart from the tasks that follow it.
        "cold_first_result_s": round(first_result_at or 0.0, 3),
        "after_first_result_tasks_per_s": round(
            (args.tasks - 1) / max(run_s - (first_result_at or 0.0), 1e-9), 1),
        "warm_first_result_s": round(first_warm, 4),
        "warm_first_result_runs_s": [round(x, 4) for x in latencies],
        "s3_round_trip": round_trip,
        "targets": {t.name: t.as_dict() for t in targets},
    })
    if args.json:
        report.emit_json(figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
