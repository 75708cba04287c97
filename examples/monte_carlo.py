"""Price a European call option by Monte Carlo simulation on starburst workers.

Each task simulates ``--paths`` terminal prices of the underlying under
geometric Brownian motion and returns the sum (and sum of squares) of the
discounted payoffs; the client combines them into a price with a standard
error and compares it with the Black-Scholes closed form.

The executor is created with ``seed=``: every task draws from its own
random stream, derived from the seed and the task's position
(``starburst.task_rng()``), so the price printed is identical whatever the
number of workers, the chunking or the backend; change ``--seed`` for an
independent run.

Run it locally (the default) or on Fargate::

    python examples/monte_carlo.py --tasks 40 --paths 100000
    python examples/monte_carlo.py --backend fargate --workers 50 --tasks 2000

The exit status is 1 when the estimate is more than six standard errors
away from the closed form (which a correct simulation essentially never is).
"""

from __future__ import annotations

import argparse
import functools
import math
import time
from dataclasses import dataclass

import numpy as np

import starburst


@dataclass(frozen=True)
class Call:
    """A European call option and its Black-Scholes market.

    Attributes:
        spot: price of the underlying today.
        strike: price at which the option may buy it at maturity.
        rate: continuously compounded risk-free rate per year.
        volatility: annualised volatility of the underlying's log returns.
        maturity: years until the option can be exercised.
    """

    spot: float = 100.0
    strike: float = 105.0
    rate: float = 0.03
    volatility: float = 0.2
    maturity: float = 1.0

    def black_scholes(self) -> float:
        """The closed-form price, the value the simulation must converge to."""
        sd = self.volatility * math.sqrt(self.maturity)
        d1 = (math.log(self.spot / self.strike)
              + (self.rate + 0.5 * self.volatility ** 2) * self.maturity) / sd
        d2 = d1 - sd

        def cdf(x: float) -> float:
            return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))

        return (self.spot * cdf(d1)
                - self.strike * math.exp(-self.rate * self.maturity) * cdf(d2))


def simulate(task: int, *, option: Call, paths: int) -> tuple[float, float]:
    """One task: ``paths`` discounted payoffs, as (sum, sum of squares).

    ``task`` only positions the task in the map; its random numbers come
    from :func:`starburst.task_rng`, the stream the executor's ``seed=``
    assigned to that position.
    """
    del task
    rng = starburst.task_rng()
    z = rng.standard_normal(paths)
    drift = (option.rate - 0.5 * option.volatility ** 2) * option.maturity
    terminal = option.spot * np.exp(drift + option.volatility * math.sqrt(option.maturity) * z)
    payoff = np.maximum(terminal - option.strike, 0.0) * math.exp(-option.rate * option.maturity)
    return float(payoff.sum()), float(np.square(payoff).sum())


@dataclass(frozen=True)
class Estimate:
    """The combined Monte Carlo price."""

    price: float
    stderr: float
    paths: int


def combine(sums: list[tuple[float, float]], paths_per_task: int) -> Estimate:
    """Merge the tasks' (sum, sum of squares) into a price and its standard error."""
    n = paths_per_task * len(sums)
    total = math.fsum(s for s, _ in sums)
    squares = math.fsum(q for _, q in sums)
    mean = total / n
    variance = max(squares / n - mean * mean, 0.0) * n / (n - 1)
    return Estimate(price=mean, stderr=math.sqrt(variance / n), paths=n)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the simulation, print and check the price."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="local", help="starburst backend (default: local)")
    parser.add_argument("--workers", type=int, default=None,
                        help="workers (default: one per core locally)")
    parser.add_argument("--tasks", type=int, default=200, help="tasks (default: 200)")
    parser.add_argument("--paths", type=int, default=200_000,
                        help="simulated paths per task (default: 200,000)")
    parser.add_argument("--seed", type=int, default=2024, help="seed of the run (default: 2024)")
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.paths < 2:
        parser.error("--tasks must be >= 1 and --paths >= 2")

    option = Call()
    task = functools.partial(simulate, option=option, paths=args.paths)
    started = time.perf_counter()
    with starburst.Executor(backend=args.backend, workers=args.workers, seed=args.seed) as ex:
        sums = list(ex.map(task, range(args.tasks)))
        workers = ex.workers
    elapsed = time.perf_counter() - started

    estimate = combine(sums, args.paths)
    exact = option.black_scholes()
    errors = abs(estimate.price - exact) / estimate.stderr
    print(f"Monte Carlo price: {estimate.price:.6f} +/- {estimate.stderr:.6f} "
          f"({estimate.paths:,} paths in {args.tasks} tasks on {workers} {args.backend} "
          f"worker{'s' if workers != 1 else ''}, {elapsed:.2f} s)")
    print(f"Black-Scholes price: {exact:.6f}")
    print(f"difference: {errors:.2f} standard errors")
    if errors > 6:
        print("FAILED: the simulation disagrees with the closed form")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
