"""The progress bar, driven by the executor from all outstanding work.

Because the executor counts completions itself, the bar moves whether
the user iterates ``map``, calls ``result()``, or uses the standard
library's ``as_completed``/``wait``. Worker output is printed through the
same console so it scrolls above the bar instead of tearing it.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

__all__ = ["ProgressDisplay"]


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} tasks/s" if speed else "", style="progress.data.speed")


class ProgressDisplay:
    """A rich progress bar (or nothing) plus a console for worker output.

    Args:
        enabled: True/False forces it; None shows it only on a terminal.
        description: label at the left of the bar.
    """

    def __init__(self, enabled: bool | None, description: str) -> None:
        self.console = Console(stderr=True)
        self.enabled = self.console.is_terminal if enabled is None else bool(enabled)
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        self._task: Any = None
        self._description = description
        self._started = False

    def _start(self) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            _RateColumn(), TextColumn("{task.fields[workers]} workers"),
            TextColumn("{task.fields[extra]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=self.console, transient=False, refresh_per_second=8,
        )
        self._task = self._progress.add_task(self._description, total=0, workers=0, extra="")
        self._progress.start()
        self._started = True

    def update(self, *, completed: int, total: int | None, workers: int, extra: str = "") -> None:
        """Move the bar (starts it on first use)."""
        if not self.enabled:
            return
        with self._lock:
            if not self._started:
                self._start()
            assert self._progress is not None
            self._progress.update(self._task, completed=completed, total=total,
                                  workers=workers, extra=extra)

    def print(self, line: str, *, stream: str = "stdout") -> None:
        """Print worker output above the bar (or plainly when there is no bar)."""
        if self.enabled and self._started:
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            target = sys.stdout if stream == "stdout" else sys.stderr
            print(line, file=target, flush=True)

    def close(self) -> None:
        """Stop the bar, leaving its last state on screen."""
        with self._lock:
            if self._progress is not None and self._started:
                # In Jupyter, Live.stop() skips its last refresh: draw the final
                # count first, or the bar keeps whatever was last drawn.
                self._progress.refresh()
                self._progress.stop()
                self._started = False
