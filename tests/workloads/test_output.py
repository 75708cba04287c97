"""Tasks that print and log: the output comes back with the results.

docs/ecosystem.md promises that ``logging`` records reach the client's
logger of the same name (with ``starburst_task``) and that ``print()``
output is shown prefixed ``[task N]``; docs/architecture.md that stderr
goes to stderr. Locally lines arrive live; on Fargate with the results.
"""

from __future__ import annotations

import logging
import re

import pytest
from _support import wait_for

from . import _plain_tasks as tasks
from ._harness import Workload, assert_identical

#: Enough tasks to span several chunks on two workers.
ITEMS = 24


def _lines(pattern: str, text: str) -> list[int]:
    """The item numbers of the lines of ``text`` that match ``[task N] <pattern>``."""
    regex = re.compile(r"^\[task \d+\] " + pattern + r"$")
    return sorted(int(m.group(1)) for line in text.splitlines() if (m := regex.match(line)))


def test_print_and_log_output_comes_back(workload: Workload, capsys: pytest.CaptureFixture[str],
                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with workload.executor() as ex:
        got = list(ex.map(tasks.chatty, range(ITEMS)))
    assert_identical(got, [2 * i for i in range(ITEMS)], what="chatty results")
    out, err = "", ""

    def all_lines_arrived() -> bool:
        nonlocal out, err
        captured = capsys.readouterr()
        out, err = out + captured.out, err + captured.err
        return len(_lines(r"processing item (\d+)", out)) >= ITEMS

    wait_for(all_lines_arrived, timeout=10, what="every task's printed line")
    assert _lines(r"processing item (\d+)", out) == list(range(ITEMS))
    assert _lines(r"item (\d+) looks odd", err) == list(range(ITEMS))
    records = [r for r in caplog.records if r.name == tasks.LOGGER]
    assert sorted(r.getMessage() for r in records) == sorted(
        f"item {i} needs a second look" for i in range(ITEMS))
    assert all(isinstance(getattr(r, "starburst_task", None), int) for r in records)
