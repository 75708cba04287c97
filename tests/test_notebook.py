"""starburst in a Jupyter notebook: a real kernel (ipykernel) driven by nbclient.

The notebooks are built here with nbformat (no binary file in the repo).
Functions and classes defined in notebook cells live in the kernel's
``__main__``, so they reach the workers by value (cloudpickle): that is
what these tests exercise, together with the progress bar, which rich
renders in Jupyter into an ipywidgets ``Output`` widget. nbclient records
that widget's outputs in the notebook's widget state, where the tests read
the rendered bar.

The kernel listens on 127.0.0.1 only (jupyter_client's default, checked),
and nbclient shuts it down when the notebook ends.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client import KernelManager
from nbclient import NotebookClient

#: Generous: a kernel and two worker processes start on a loaded 2-core machine.
CELL_TIMEOUT = 240
STARTUP_TIMEOUT = 120

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def run_notebook(cells: list[str], directory: Path) -> Any:
    """Execute a notebook of code ``cells`` in a fresh kernel; return it, outputs filled in.

    A cell that raises makes nbclient raise ``CellExecutionError`` (with the
    cell's traceback), failing the test.
    """
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, startup_timeout=STARTUP_TIMEOUT,
                            kernel_name="python3", store_widget_state=True,
                            resources={"metadata": {"path": str(directory)}})
    client.execute()
    return nb


def texts(outputs: list[Any]) -> list[str]:
    """The plain text of a list of cell (or widget) outputs, ANSI colours removed."""
    found = []
    for output in outputs:
        if output.get("output_type") == "stream":
            found.append(output["text"])
        elif output.get("output_type") == "error":
            found.append("\n".join(output.get("traceback", [])))
        elif "text/plain" in output.get("data", {}):
            found.append(output["data"]["text/plain"])
    return [_ANSI.sub("", text) for text in found]


def widget_texts(nb: Any, cell: Any) -> list[str]:
    """The text rendered into each ``Output`` widget a cell displayed, in display order."""
    state = nb.metadata.get("widgets", {}).get(_WIDGET_STATE, {}).get("state", {})
    rendered = []
    for output in cell.outputs:
        view = output.get("data", {}).get(_WIDGET_VIEW)
        if view is not None:
            model = state[view["model_id"]]
            assert model["model_name"] == "OutputModel", model["model_name"]
            rendered.append("".join(texts(model["state"]["outputs"])))
    return rendered


def test_kernel_listens_on_loopback_only() -> None:
    assert KernelManager(kernel_name="python3").ip == "127.0.0.1"


DEFINITIONS = [
    "import starburst",
    "def square(x):\n"
    "    return x * x",
    "class Polynomial:\n"
    "    '''a*x**2 + b*x + c, as a callable instance defined in the notebook.'''\n"
    "\n"
    "    def __init__(self, a, b, c):\n"
    "        self.a, self.b, self.c = a, b, c\n"
    "\n"
    "    def __call__(self, x):\n"
    "        return self.a * x * x + self.b * x + self.c\n"
    "\n"
    "\n"
    "class Point:\n"
    "    '''Built on the workers, returned to the notebook.'''\n"
    "\n"
    "    def __init__(self, x):\n"
    "        self.x = x",
]


def test_notebook_functions_and_classes_run_on_workers_with_a_progress_bar(tmp_path) -> None:
    work = (
        "with starburst.Executor(workers=2, progress=True) as ex:\n"
        "    squares = list(ex.map(square, range(20)))\n"
        "    values = list(ex.map(Polynomial(1, 2, 3), range(20)))\n"
        "    points = list(ex.map(Point, range(5)))\n"
        "assert squares == [x * x for x in range(20)]\n"
        "assert values == [x * x + 2 * x + 3 for x in range(20)]\n"
        "assert all(type(p) is Point for p in points), [type(p) for p in points]\n"
        "assert [p.x for p in points] == list(range(5))\n"
        "print('results ok', sum(squares), sum(values))"
    )
    nb = run_notebook([*DEFINITIONS, work], tmp_path)
    cell = nb.cells[-1]
    printed = "\n".join(texts(cell.outputs))
    assert "results ok 2470 2910" in printed
    for every in nb.cells:
        for text in texts(every.outputs):
            assert "Traceback" not in text, text
            # rich warns this (and draws nothing) when ipywidgets is missing.
            assert "ipywidgets" not in text, text

    bars = widget_texts(nb, cell)
    assert len(bars) == 1, f"expected one progress widget, got {bars!r}"
    bar = bars[0]
    assert "starburst" in bar
    assert "\u2501" in bar  # the bar itself (rich's heavy horizontal line)
    counts = [(int(done), int(total)) for done, total in re.findall(r"(\d+)/(\d+)", bar)]
    # The widget holds the bar's last drawing: its total counts the maps
    # called by then, 20, 20 + 20 or 20 + 20 + 5 tasks.
    assert len(counts) == 1, bar
    done, total = counts[0]
    assert total in (20, 40, 45), bar
    assert 0 <= done <= total, bar


def test_notebook_progress_bar_ends_on_the_final_count(tmp_path) -> None:
    # Whether rich's refresh thread happens to draw between the last update and
    # close() is a race (it usually loses on the first executor of a kernel);
    # silencing that thread makes the outcome depend on close() alone.
    silence = (
        "import rich.live\n"
        "rich.live._RefreshThread.run = lambda self: None"
    )
    work = (
        "with starburst.Executor(workers=2, progress=True) as ex:\n"
        "    squares = list(ex.map(square, range(20)))\n"
        "assert squares == [x * x for x in range(20)]"
    )
    nb = run_notebook([*DEFINITIONS, silence, work], tmp_path)
    bars = widget_texts(nb, nb.cells[-1])
    assert len(bars) == 1, bars
    assert "20/20" in bars[0], bars[0]
