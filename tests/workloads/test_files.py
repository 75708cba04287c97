"""Tasks that read and write files, in a directory the test owns.

On the emulated Fargate the tasks are local processes too, so they see
the same filesystem.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import _plain_tasks as tasks
from ._harness import Workload, assert_identical

#: Input files, of a few thousand words each.
FILES, WORDS = 30, 4_000


def _write_inputs(directory: Path) -> list[Path]:
    rng = np.random.default_rng(11)
    vocabulary = [f"w{i}" for i in range(500)]
    directory.mkdir()
    paths = []
    for n in range(FILES):
        path = directory / f"part-{n:03d}.txt"
        words = rng.choice(vocabulary, WORDS + n)
        path.write_text("\n".join(" ".join(words[i:i + 12]) for i in range(0, len(words), 12)))
        paths.append(path)
    return paths


def test_tasks_read_and_write_files(workload: Workload, tmp_path: Path) -> None:
    inputs = _write_inputs(tmp_path / "in")
    (tmp_path / "serial").mkdir()
    (tmp_path / "parallel").mkdir()
    expected = [tasks.count_words(str(p), str(tmp_path / "serial" / p.name)) for p in inputs]
    with workload.executor() as ex:
        got = list(ex.map(tasks.count_words, map(str, inputs),
                          [str(tmp_path / "parallel" / p.name) for p in inputs]))
    assert_identical(got, expected, what="word counts")
    written = sorted(p.name for p in (tmp_path / "parallel").iterdir())
    assert written == sorted(p.name for p in inputs)
    for name in written:
        assert ((tmp_path / "parallel" / name).read_bytes()
                == (tmp_path / "serial" / name).read_bytes()), f"{name} differs"
