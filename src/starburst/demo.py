"""The ``starburst demo`` workload: a Monte Carlo estimate of pi.

Each task draws ``samples`` random points in the unit square and counts
those inside the quarter circle; pi is four times the fraction inside.
Every task has its own seed derived from ``(seed, task index)``, so a run
is reproducible whatever the number of workers or the chunking, and no
two tasks share a random stream.

The functions live at module level so they pickle by reference: workers
import ``starburst.demo`` (starburst is installed wherever a worker runs)
instead of receiving the function's code.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import math
import random
import time
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["DEFAULT_SAMPLES", "Engine", "PiEstimate", "combine", "count_inside",
           "fargate_estimate", "pick_engine", "task_for"]

Engine = Literal["numpy", "random"]

#: Points per task by default: about 6 ms of work per task with either
#: generator (numpy is ~5x faster per point), long enough that the run
#: shows parallel speed-up rather than per-task overhead, short enough
#: that 5,000 tasks take ~30 s on one core.
DEFAULT_SAMPLES: dict[Engine, int] = {"numpy": 200_000, "random": 40_000}

# numpy draws in blocks of this many points, so a task of many millions of
# samples needs ~32 MiB of memory (two float64 arrays of 2**21) at a time.
_NUMPY_BLOCK = 1 << 21


def pick_engine() -> Engine:
    """``"numpy"`` when numpy is installed here, else the standard library's ``random``.

    The client picks once and passes the choice to every task, so all
    tasks of a run use the same generator.
    """
    return "numpy" if importlib.util.find_spec("numpy") is not None else "random"


def count_inside(index: int, *, samples: int, seed: int, engine: Engine) -> tuple[int, float]:
    """Run task ``index``: count random points that land inside the quarter circle.

    Args:
        index: task number; with ``seed`` it determines the random stream.
        samples: points to draw.
        seed: seed of the whole run.
        engine: ``"numpy"`` (vectorised) or ``"random"`` (pure Python).

    Returns:
        (points inside, seconds this task computed), the latter for the
        serial-time estimate.
    """
    started = time.perf_counter()
    if engine == "numpy":
        # Imported by name: numpy is optional, and not installed where the
        # type checker runs in CI.
        np: Any = importlib.import_module("numpy")
        rng = np.random.default_rng([seed, index])
        inside = 0
        left = samples
        while left > 0:
            n = min(left, _NUMPY_BLOCK)
            x = rng.random(n)
            y = rng.random(n)
            inside += int(np.count_nonzero(x * x + y * y <= 1.0))
            left -= n
    else:
        draw = random.Random(f"{seed}:{index}").random
        inside = 0
        for _ in range(samples):
            u = draw()
            v = draw()
            inside += u * u + v * v <= 1.0
    return inside, time.perf_counter() - started


def task_for(*, samples: int, seed: int, engine: Engine) -> functools.partial[tuple[int, float]]:
    """The one-argument task function that ``Executor.map`` calls with each index."""
    return functools.partial(count_inside, samples=samples, seed=seed, engine=engine)


@dataclass(frozen=True)
class PiEstimate:
    """The combined result of a run.

    Attributes:
        value: the estimate of pi.
        stderr: its standard error (binomial), i.e. the expected size of
            ``value - math.pi``.
        inside: points inside the quarter circle, over all tasks.
        samples: points drawn, over all tasks.
        task_seconds: the sum of every task's compute time: how long the
            same work would take on one core, without starburst.
    """

    value: float
    stderr: float
    inside: int
    samples: int
    task_seconds: float


def combine(results: list[tuple[int, float]], samples_per_task: int) -> PiEstimate:
    """Combine the tasks' ``(inside, seconds)`` into one estimate."""
    inside = sum(hits for hits, _ in results)
    total = samples_per_task * len(results)
    if total == 0:
        raise ValueError("no samples to combine")
    p = inside / total
    return PiEstimate(value=4.0 * p, stderr=4.0 * math.sqrt(p * (1.0 - p) / total),
                      inside=inside, samples=total,
                      task_seconds=sum(seconds for _, seconds in results))


def fargate_estimate(tasks: int, task_seconds: float, *, local_cores: int | None = None,
                     local_wall: float | None = None) -> str:
    """What the run's work would take and cost on Fargate, in one line.

    ``task_seconds`` is the measured mean time of one task; ``local_wall``
    the run's measured wall time on ``local_cores`` workers, so the line
    says whether staying local is faster (the verdict of ``starburst
    estimate``). The figures come from :func:`starburst.estimate.demo_line`
    (scale model, price table in use: fetched prices when cached, else the
    shipped table); the line never stops the demo.
    """
    from .estimate import demo_line
    from .exceptions import StarburstError
    from .pricing_cache import table_in_use

    try:
        return demo_line(tasks, task_seconds, table=table_in_use(), local_cores=local_cores,
                         local_wall=local_wall)
    except StarburstError as exc:
        return f"On Fargate: no estimate ({exc})"
