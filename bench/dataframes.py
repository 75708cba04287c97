"""DataFrames: starburst's Arrow IPC frames against plain pickle, both directions.

For a pandas DataFrame of ``--rows`` rows (default 10,000,000) with mixed
columns (int64, float64, a string column, a categorical, a datetime), it
times three ways of turning the frame into bytes and back:

* ``starburst``: :func:`starburst.serialization.dumps` / ``loads`` as they
  run now (a frame of at least 1 MiB travels as an Arrow IPC stream with
  zstd-compressed buffers, outside the frame's own zstd pass);
* ``pickle5+zstd``: the same functions with the Arrow path switched off,
  i.e. the previous starburst frame: cloudpickle protocol 5 with
  out-of-band buffers, then zstd level 1 over the whole frame;
* ``pickle``: ``pickle.dumps(protocol=5)`` / ``pickle.loads``, no compression.

in both directions a frame travels:

* ``to worker``: the frame as an argument; the client stores it once as a
  shared object (``dumps(frame)``) and the worker reads it (``loads``);
* ``to client``: the frame as a task's result, inside the worker's outcome
  list (``dumps([(task, "ok", frame, "", None)])``) read by the client.

Each starburst encode and decode includes the BLAKE2b checksum the message
carries (it is part of the real path); ``pickle`` has none. Encode time,
decode time and encoded size are medians over ``--repeat`` runs; ratios are
against plain pickle (``> 1x`` time ratio = faster than pickle). Every
method's decoded frame is checked equal to the original once.

Usage (from the repository root)::

    .venv/bin/python bench/dataframes.py [--rows 10000000] [--repeat 3] [--json]
    .venv/bin/python bench/dataframes.py --rows 50000 --repeat 1 --json   # smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import os
import pickle
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _report import (  # the bench directory is not a package
    Target,
    Timing,
    add_common_args,
    emit_json,
    environment,
    print_table,
    print_targets,
    resolve_repeat,
)

METHODS = ("starburst", "pickle5_zstd", "pickle")
DIRECTIONS = ("to_worker", "to_client")
_LABELS = {
    "starburst": "starburst (Arrow IPC + zstd)",
    "pickle5_zstd": "pickle5 + zstd (previous frame)",
    "pickle": "pickle protocol 5, uncompressed",
}


def make_frame(rows: int, seed: int = 0) -> Any:
    """The benchmark frame: int64, float64, string, categorical and datetime columns.

    The strings repeat (10,000 distinct user names), as real keys do; the
    categorical has 12 categories; timestamps are seconds apart with jitter.
    """
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    names = pd.Categorical.from_codes(rng.integers(0, 10_000, rows),
                                      [f"user-{i:05d}" for i in range(10_000)])
    months = pd.Categorical.from_codes(
        rng.integers(0, 12, rows),
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])
    start = np.datetime64("2024-01-01T00:00:00", "ns")
    offsets = np.arange(rows, dtype="int64") * 1_000_000_000 + rng.integers(0, 999, rows)
    return pd.DataFrame({
        "id": np.arange(rows, dtype="int64"),
        "value": rng.standard_normal(rows),
        "user": pd.Series(names).astype(str),  # the string dtype of this pandas
        "month": months,
        "when": start + offsets.astype("timedelta64[ns]"),
    })


@contextlib.contextmanager
def _arrow_off() -> Iterator[None]:
    """starburst's serialization as it was before Arrow IPC: no table is large enough."""
    from starburst import tables

    saved = tables.IPC_THRESHOLD
    tables.IPC_THRESHOLD = sys.maxsize
    try:
        yield
    finally:
        tables.IPC_THRESHOLD = saved


def _codecs(method: str) -> tuple[Callable[[Any], bytes], Callable[[bytes], Any],
                                  Callable[[], contextlib.AbstractContextManager[None]]]:
    """(encode, decode, context) of one method; the context wraps both timings."""
    from starburst.serialization import checksum, dumps, loads

    if method == "pickle":
        return (lambda obj: pickle.dumps(obj, protocol=5)), pickle.loads, contextlib.nullcontext

    def encode(obj: Any) -> bytes:
        frame = dumps(obj)
        checksum(frame)
        return frame

    def decode(frame: bytes) -> Any:
        checksum(frame)
        return loads(frame)

    return encode, decode, (_arrow_off if method == "pickle5_zstd" else contextlib.nullcontext)


def _wrap(direction: str, frame: Any) -> Any:
    """What dumps() sees in that direction: the frame itself, or an outcome list."""
    return frame if direction == "to_worker" else [(0, "ok", frame, "", None)]


def _unwrap(direction: str, obj: Any) -> Any:
    return obj if direction == "to_worker" else obj[0][2]


def _is_arrow(data: bytes) -> bool:
    """Whether a starburst frame carries packed Arrow IPC buffers (its PACKED flag)."""
    return data[:3] == b"SBF" and bool(data[4] & 2)


def _check_equal(back: Any, frame: Any, method: str) -> None:
    """Fail the bench if a method did not give the frame back (values, dtypes, index).

    ``DataFrame.equals`` is vectorised; ``assert_frame_equal`` would take
    minutes on 10M rows.
    """
    if not (type(back) is type(frame) and back.equals(frame)
            and list(back.dtypes) == list(frame.dtypes)
            and back.index.equals(frame.index) and back.columns.equals(frame.columns)):
        raise AssertionError(f"{method}: the decoded frame differs from the original")


def measure(frame: Any, repeat: int, log: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    """``{direction: {method: figures}}`` for every method and direction."""
    rows = len(frame)
    out: dict[str, dict[str, Any]] = {d: {} for d in DIRECTIONS}
    for direction in DIRECTIONS:
        for method in METHODS:
            encode, decode, context = _codecs(method)
            enc, dec, sizes = Timing(rows), Timing(rows), []
            arrow = False
            with context():
                for run in range(repeat):
                    obj = _wrap(direction, frame)
                    gc.collect()
                    t0 = time.perf_counter()
                    data = encode(obj)
                    enc.add(time.perf_counter() - t0)
                    sizes.append(len(data))
                    arrow = _is_arrow(data)
                    del obj
                    gc.collect()
                    t0 = time.perf_counter()
                    back = decode(data)
                    dec.add(time.perf_counter() - t0)
                    del data
                    if run == 0:
                        _check_equal(_unwrap(direction, back), frame, method)
                    del back
            out[direction][method] = {"encode": enc, "decode": dec,
                                      "bytes": int(sorted(sizes)[len(sizes) // 2]),
                                      "arrow": arrow}
            log(f"  {direction:9} {method:13} encode {enc.median_s:7.3f}s  "
                f"decode {dec.median_s:7.3f}s  {out[direction][method]['bytes'] / 2**20:9.1f} MiB")
    return out


def _ratio(base: float, value: float) -> float:
    return base / value if value > 0 and not math.isnan(base) else math.nan


def _round(x: float, digits: int = 3) -> float | None:
    return None if math.isnan(x) or math.isinf(x) else round(x, digits)


def _timing(t: Timing) -> dict[str, Any]:
    return {"median_s": _round(t.median_s, 4), "runs_s": [_round(s, 4) for s in t.runs],
            "rows_per_s": _round(t.rate, 0)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=None,
                        help="rows of the frame (default 10,000,000; 200,000 with --quick)")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 when a gating target fails")
    add_common_args(parser, repeat=3)
    args = parser.parse_args(argv)
    rows = args.rows if args.rows is not None else (200_000 if args.quick else 10_000_000)
    if rows < 1:
        parser.error("--rows must be >= 1")
    repeat = resolve_repeat(args)

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    from starburst.tables import IPC_THRESHOLD, nbytes

    log(f"dataframes: {rows:,} rows, median of {repeat}")
    t0 = time.perf_counter()
    frame = make_frame(rows)
    memory = nbytes(frame)
    log(f"  frame built in {time.perf_counter() - t0:.1f}s: {memory / 2**20:,.1f} MiB in memory"
        + ("" if memory >= IPC_THRESHOLD else
           f" (below the {IPC_THRESHOLD / 2**20:g} MiB Arrow threshold: pickled)"))
    figures = measure(frame, repeat, log)

    ratios: dict[str, dict[str, Any]] = {}
    for direction in DIRECTIONS:
        base = figures[direction]["pickle"]
        base_total = base["encode"].median_s + base["decode"].median_s
        rows_out = []
        ratios[direction] = {}
        for method in METHODS:
            f = figures[direction][method]
            enc, dec = f["encode"].median_s, f["decode"].median_s
            r = {"encode": _ratio(base["encode"].median_s, enc),
                 "decode": _ratio(base["decode"].median_s, dec),
                 "round_trip": _ratio(base_total, enc + dec),
                 "size": f["bytes"] / base["bytes"]}
            ratios[direction][method] = r
            rows_out.append([_LABELS[method], "Arrow IPC" if f["arrow"] else "pickle",
                             f"{enc:.3f}", f"{dec:.3f}", f"{enc + dec:.3f}",
                             f"{f['bytes'] / 2**20:,.1f}", f"{r['encode']:.2f}x",
                             f"{r['decode']:.2f}x", f"{r['round_trip']:.2f}x",
                             f"{r['size']:.2f}"])
        where = ("argument: client dumps, worker loads" if direction == "to_worker"
                 else "result: worker dumps, client loads")
        print_table(f"{direction.replace('_', ' ')} ({where}): {rows:,} rows, "
                    f"{memory / 2**20:,.0f} MiB in memory, median of {repeat} "
                    "(ratios vs plain pickle; time ratio > 1x = faster)",
                    ["method", "path", "encode s", "decode s", "total s", "MiB", "enc", "dec",
                     "total", "size"], rows_out)

    arrow_used = all(figures[d]["starburst"]["arrow"] for d in DIRECTIONS)
    targets = [
        Target(f"starburst round trip vs previous frame, {d.replace('_', ' ')} (goal)",
               _ratio(figures[d]["pickle5_zstd"]["encode"].median_s
                      + figures[d]["pickle5_zstd"]["decode"].median_s,
                      figures[d]["starburst"]["encode"].median_s
                      + figures[d]["starburst"]["decode"].median_s), 1.0, gating=False)
        for d in DIRECTIONS
    ]
    print_targets(targets)
    if not arrow_used:
        print(f"note: the frame is below the Arrow threshold ({IPC_THRESHOLD:,} bytes); "
              "starburst pickled it")

    if args.json:
        emit_json({
            "bench": "dataframes",
            "rows": rows,
            "frame_mib": round(memory / 2**20, 1),
            "repeat": repeat,
            "quick": bool(args.quick),
            "arrow_threshold_bytes": IPC_THRESHOLD,
            "arrow_used": arrow_used,
            "env": environment(),
            "figures": {
                d: {m: {"encode": _timing(f["encode"]), "decode": _timing(f["decode"]),
                        "bytes": f["bytes"], "arrow": f["arrow"]}
                    for m, f in figures[d].items()}
                for d in DIRECTIONS
            },
            "ratios_vs_pickle": {d: {m: {k: _round(v) for k, v in r.items()}
                                     for m, r in ratios[d].items()} for d in DIRECTIONS},
            "targets": {t.name: t.as_dict() for t in targets},
        })
    failed = any(t.gating and not t.passed for t in targets)
    return 1 if (args.strict and failed) else 0


if __name__ == "__main__":
    sys.exit(main())
