"""Workload tasks that need only the standard library: files, tiny tasks, output.

A module of their own (as ``tests/_tasks.py``), one per dependency: a
worker unpickles a task by reference and imports only its small module
(never pandas or scipy for a task that needs neither, never a test
module with pytest behind it). Each test also calls them serially, in its
own process, for the result they must match.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

# -- files and tiny tasks ------------------------------------------------------


def count_words(source: str, target: str) -> int:
    """Count the words of ``source``, write them as JSON to ``target``; return how many."""
    words = Path(source).read_text().split()
    counts: dict[str, int] = {}
    for word in words:
        counts[word] = counts.get(word, 0) + 1
    Path(target).write_text(json.dumps(dict(sorted(counts.items()))))
    return len(words)


def square(i: int) -> int:
    """A tiny task."""
    return i * i


# -- output --------------------------------------------------------------------


#: The logger the chatty task writes to; the test listens on it.
LOGGER = "workloads.chatty"


def chatty(i: int) -> int:
    """Print to stdout and stderr and log a warning, then return ``2 * i``."""
    print(f"processing item {i}")
    print(f"item {i} looks odd", file=sys.stderr)
    logging.getLogger(LOGGER).warning("item %d needs a second look", i)
    return 2 * i


# -- a result that cannot be unpickled on the client ---------------------------


class UnpicklableOnLoad(Exception):
    """Raised while the client unpickles :class:`Poison` (never on the worker)."""


def _refuse(reason: str) -> None:
    raise UnpicklableOnLoad(reason)


class Poison:
    """A value that pickles on the worker and fails to unpickle on the client."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return _refuse, ("this result cannot be rebuilt",)


def maybe_poison(i: int, bad: int) -> Any:
    """``i * 3``, except a :class:`Poison` for ``i == bad``."""
    return Poison() if i == bad else i * 3
