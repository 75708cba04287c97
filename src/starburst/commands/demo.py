"""``starburst demo``: a real parallel workload, end to end, on this machine."""

from __future__ import annotations

import time

import click

from ..demo import DEFAULT_SAMPLES, combine, fargate_estimate, pick_engine, task_for
from ..exceptions import StarburstError
from ..executor import Executor

__all__ = ["demo"]


@click.command()
@click.option("--tasks", type=click.IntRange(min=1), default=5_000, show_default=True,
              help="Number of tasks.")
@click.option("--samples", type=click.IntRange(min=1), default=None,
              help=f"Random points each task draws.  [default: {DEFAULT_SAMPLES['numpy']:,} "
                   f"with numpy, {DEFAULT_SAMPLES['random']:,} without]")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Local worker processes.  [default: one per core]")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the run; task i uses the stream (seed, i).")
def demo(tasks: int, samples: int | None, workers: int | None, seed: int) -> None:
    """Estimate pi by Monte Carlo on local worker processes.

    Runs TASKS independent tasks through starburst.Executor(...).map with
    a progress bar; each task counts how many of SAMPLES random points
    fall inside the quarter circle. Prints the estimate, the wall time,
    the throughput, how long the same tasks took in total (what one
    core would need without starburst), and what the same work would take
    and cost on Fargate (from the scale model; `starburst estimate`
    compares more options).
    """
    engine = pick_engine()
    samples = samples or DEFAULT_SAMPLES[engine]
    click.echo(f"Estimating pi with {tasks:,} tasks x {samples:,} random points "
               f"(generator: {engine}, seed {seed})")
    started = time.perf_counter()
    try:
        with Executor(backend="local", workers=workers, progress=True) as ex:
            used = ex.workers
            results = list(ex.map(task_for(samples=samples, seed=seed, engine=engine),
                                  range(tasks)))
    except StarburstError as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc
    wall = time.perf_counter() - started
    est = combine(results, samples)
    error = est.value - 3.141592653589793
    within = abs(error) / est.stderr if est.stderr else 0.0
    click.echo(f"pi ~ {est.value:.6f} +/- {est.stderr:.6f} (off by {error:+.6f}, "
               f"{within:.1f} standard errors)")
    click.echo(f"{est.samples:,} points in {tasks:,} tasks on {used} local worker"
               f"{'s' if used != 1 else ''}")
    click.echo(f"wall time  {wall:8.2f} s  {tasks / wall:,.0f} tasks/s "
               "(worker start-up and shutdown included)")
    click.echo(f"serial     {est.task_seconds:8.2f} s  sum of the tasks' own run times "
               "(one core, no starburst)")
    click.echo(f"speed-up   {est.task_seconds / wall:8.2f} x")
    click.echo(fargate_estimate(tasks, est.task_seconds / tasks, local_cores=used,
                                local_wall=wall))
