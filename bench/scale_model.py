"""Scale model: the real scheduler on a simulated Fargate, at 1,000 and 10,000 tasks.

For each workload (tasks x task seconds x workers) it prints the makespan
and cost of starburst's scheduler against the lower bound (the earliest
finish any scheduler could reach under the same launch pacing and cold
starts, tasks kept whole) and against the seed's design (one container
per task, serial submission at ``--submit-rate`` tasks/s, waves as
barriers). Prices: us-east-1 x86_64, 1 vCPU / 2 GiB workers.

Targets (issue "Quotas, waves, cost..."): makespan <= 1.05 x bound for
tasks of 60 s or more and for 10,000 tasks of 1 s on 50 workers; cost <=
1.05 x its bound.

    .venv/bin/python bench/scale_model.py [--seeds 5] [--json]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _report as report  # the bench directory is not a package

from starburst.simulate import FargateModel, Workload, simulate, simulate_seed_design

TASKS = (1_000, 10_000)
SECONDS = (1.0, 60.0, 600.0)
WORKERS = (10, 50, 100, 1_000)
LIMIT = 1.05


def gated(tasks: int, seconds: float, workers: int) -> bool:
    """Whether the makespan target applies to this workload."""
    return seconds >= 60 or (tasks == 10_000 and seconds == 1.0 and workers == 50)


def main() -> int:
    parser = report.bench_parser(__doc__, repeat=5)
    parser.add_argument("--seeds", type=int, default=None,
                        help="random seeds per workload; medians are reported (default 5)")
    parser.add_argument("--submit-rate", type=float, default=1.5,
                        help="seed design: tasks submitted per second (R measured ~1.5)")
    args = parser.parse_args()
    seeds = args.seeds or (1 if args.quick else 5)
    model = FargateModel()
    rows, figures, failures = [], [], []
    started = time.perf_counter()
    for tasks in TASKS:
        for seconds in SECONDS:
            for workers in WORKERS:
                if args.quick and (tasks, workers) != (1_000, 50):
                    continue
                wl = Workload(tasks, seconds, workers)
                ours = [simulate(wl, model, seed=s) for s in range(seeds)]
                seed_runs = [simulate_seed_design(wl, model, seed=s,
                                                  submit_rate=args.submit_rate)
                             for s in range(seeds)]
                mk = statistics.median(r.makespan for r in ours)
                lb = statistics.median(r.lower_bound_makespan for r in ours)
                mk_ratio = statistics.median(r.makespan_ratio for r in ours)
                cost = statistics.median(r.cost for r in ours)
                lb_cost = statistics.median(r.lower_bound_cost for r in ours)
                cost_ratio = statistics.median(r.cost_ratio for r in ours)
                seed_mk = statistics.median(r.makespan for r in seed_runs)
                seed_cost = statistics.median(r.cost for r in seed_runs)
                gate = gated(tasks, seconds, workers)
                ok_mk = mk_ratio <= LIMIT or not gate
                ok_cost = cost_ratio <= LIMIT
                if not ok_mk:
                    failures.append(f"makespan {tasks}x{seconds:g}s/{workers}w")
                if not ok_cost:
                    failures.append(f"cost {tasks}x{seconds:g}s/{workers}w")
                rows.append([f"{tasks:,} x {seconds:g}s", f"{workers:,}", f"{mk:,.0f}",
                             f"{lb:,.0f}", f"{mk_ratio:.3f}{'' if ok_mk else ' !'}"
                             + ("" if gate else " -"),
                             f"${cost:,.2f}", f"${lb_cost:,.2f}",
                             f"{cost_ratio:.3f}{'' if ok_cost else ' !'}",
                             f"{seed_mk:,.0f}", f"${seed_cost:,.2f}", f"{ours[0].chunks:,}"])
                figures.append({
                    "tasks": tasks, "task_seconds": seconds, "workers": workers,
                    "makespan_s": round(mk, 1), "lower_bound_s": round(lb, 1),
                    "makespan_ratio": round(mk_ratio, 4), "makespan_gated": gate,
                    "cost_usd": round(cost, 4), "lower_bound_cost_usd": round(lb_cost, 4),
                    "cost_ratio": round(cost_ratio, 4),
                    "seed_design_makespan_s": round(seed_mk, 1),
                    "seed_design_cost_usd": round(seed_cost, 4), "chunks": ours[0].chunks,
                })
    report.print_table(
        f"Scale model (median of {seeds} seeds; cold start {model.cold_start_min:g}-"
        f"{model.cold_start_max:g} s; '-' = makespan target not applicable; '!' = above "
        f"{LIMIT}x)",
        ["workload", "workers", "makespan s", "bound s", "ratio", "cost", "cost bound",
         "ratio", "seed design s", "seed design $", "chunks"], rows)
    print(f"simulated {len(rows)} workloads x {seeds} seeds in "
          f"{time.perf_counter() - started:.1f} s")
    print("targets: " + ("all met" if not failures else "MISSED: " + ", ".join(failures)))
    if args.json:
        report.emit_json({"bench": "scale_model", "environment": report.environment(),
                          "seeds": seeds, "limit": LIMIT, "workloads": figures,
                          "missed": failures})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
