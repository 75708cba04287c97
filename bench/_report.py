"""Shared output conventions of the starburst benchmarks.

Every bench script:

* takes ``--repeat``, ``--quick`` and ``--json`` (:func:`bench_parser`,
  :func:`add_common_args`) and is described in ``--help`` by the first
  paragraph of its docstring;
* times each measurement ``--repeat`` times and reports the median
  (:class:`Timing`), so one noisy run does not decide a figure;
* prints readable tables (rich when installed, aligned text otherwise) and
  PASS/FAIL lines for its targets (:func:`print_table`, :class:`Target`,
  :func:`gating_passed`);
* with ``--json``, prints one JSON object of all figures as the **last**
  line of stdout (:func:`emit_json`), so a harness can ``splitlines()[-1]``.

Run a bench from the repository root, e.g. ``.venv/bin/python bench/local_throughput.py``.
A bench imports this module as ``import _report as report`` (the bench directory
is not a package: each puts it first on ``sys.path``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Target", "Timing", "add_common_args", "bench_parser", "emit_json", "environment",
           "fmt_rate", "gating_passed", "print_table", "print_targets", "resolve_repeat"]


@dataclass
class Timing:
    """Wall-clock seconds of repeated runs of ``tasks`` tasks each."""

    tasks: int
    runs: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.runs.append(seconds)

    @property
    def median_s(self) -> float:
        return statistics.median(self.runs) if self.runs else math.nan

    @property
    def rate(self) -> float:
        """Median tasks per second (tasks / median seconds)."""
        m = self.median_s
        return self.tasks / m if m and m > 0 else math.nan

    def as_dict(self) -> dict[str, Any]:
        rates = [self.tasks / s for s in self.runs if s > 0]
        return {
            "tasks": self.tasks,
            "median_tasks_per_s": _r(self.rate),
            "median_s": _r(self.median_s, 5),
            "min_tasks_per_s": _r(min(rates)) if rates else None,
            "max_tasks_per_s": _r(max(rates)) if rates else None,
            "runs_s": [_r(s, 5) for s in self.runs],
        }


@dataclass
class Target:
    """A figure that must reach ``threshold`` (value >= threshold passes)."""

    name: str
    value: float
    threshold: float
    gating: bool = True  # False: an aspiration, reported but not a failure

    @property
    def passed(self) -> bool:
        return not math.isnan(self.value) and self.value >= self.threshold

    def as_dict(self) -> dict[str, Any]:
        return {"value": _r(self.value, 3), "threshold": self.threshold,
                "pass": self.passed, "gating": self.gating}


def _r(x: float | None, digits: int = 1) -> float | None:
    if x is None or (isinstance(x, float) and (math.isnan(x) or math.isinf(x))):
        return None
    return round(x, digits)


def fmt_rate(x: float) -> str:
    """Tasks/s with thousands separators (``nan`` shows as ``-``)."""
    return "-" if math.isnan(x) else f"{x:,.0f}"


def bench_parser(doc: str | None, *, repeat: int | None = None) -> argparse.ArgumentParser:
    """A bench's parser, described by the first paragraph of its docstring ``doc``.

    Given ``repeat``, the common flags come first (:func:`add_common_args`); a
    bench that lists its own flags first adds them itself, after those.
    """
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    if repeat is not None:
        add_common_args(parser, repeat=repeat)
    return parser


def add_common_args(parser: argparse.ArgumentParser, *, repeat: int = 5) -> None:
    """``--repeat``, ``--quick`` and ``--json``: the flags every bench takes."""
    parser.add_argument("--repeat", type=int, default=None,
                        help=f"runs per measurement; the median is reported (default {repeat}, "
                             "2 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: fewer repeats and smaller inputs")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object of all figures as the last line of stdout")
    parser.set_defaults(_default_repeat=repeat)


def resolve_repeat(args: argparse.Namespace) -> int:
    """The runs per measurement: ``--repeat``, else 2 with ``--quick``, else the bench's default."""
    if args.repeat is not None:
        if args.repeat < 1:
            raise SystemExit("--repeat must be >= 1")
        return int(args.repeat)
    return 2 if args.quick else int(args._default_repeat)


def environment() -> dict[str, Any]:
    """Where the figures were taken (they only compare within one machine)."""
    try:
        from starburst import __version__ as sb_version
    except ImportError:  # pragma: no cover - the bench runs with starburst installed
        sb_version = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "starburst": sb_version,
    }


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A table on stdout; first column left-aligned, the rest right-aligned."""
    cells = [[str(c) for c in row] for row in rows]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich is a dependency of starburst
        _plain_table(title, headers, cells)
        return
    print(title)
    table = Table()
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i == 0 else "right", no_wrap=True)
    for row in cells:
        table.add_row(*row)
    # A fixed width and no colour: identical output in a terminal, a pipe or a log.
    Console(file=sys.stdout, width=max(100, _width(headers, cells) + 8), no_color=True,
            highlight=False, soft_wrap=False).print(table)


def _width(headers: Sequence[str], cells: list[list[str]]) -> int:
    cols = list(zip(headers, *cells, strict=False)) if cells else [(h,) for h in headers]
    return sum(max(len(c) for c in col) + 3 for col in cols)


def _plain_table(title: str, headers: Sequence[str], cells: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths, strict=True)))

    print(title)
    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print(line(row))
    print()


def print_targets(targets: Sequence[Target]) -> None:
    """One ``PASS``/``FAIL`` (or ``GOAL met``/``GOAL missed``) line per target."""
    for t in targets:
        if t.gating:
            verdict = "PASS" if t.passed else "FAIL"
        else:
            verdict = "GOAL met" if t.passed else "GOAL missed"
        value = "n/a" if math.isnan(t.value) else f"{t.value:.2f}"
        print(f"{verdict:<11} {t.name}: {value} (needs >= {t.threshold:g})")


def gating_passed(targets: Sequence[Target]) -> bool:
    """Whether every gating target passed (a goal missed fails nothing)."""
    return all(t.passed for t in targets if t.gating)


def emit_json(obj: dict[str, Any]) -> None:
    """Print ``obj`` as one line; call it last, after every pool is shut down."""
    sys.stdout.flush()
    print(json.dumps(obj, sort_keys=False, separators=(",", ":")), flush=True)
