"""DataFrames: starburst's frames on the local backend and over S3, against plain pickle.

For a pandas DataFrame of ``--rows`` rows (default 10,000,000) with mixed
columns (int64, float64, a string column, a categorical, a datetime), it
times each way of turning the frame into bytes and back:

* ``pickle``: ``pickle.dumps(protocol=5)`` / ``pickle.loads``, in band, no
  compression: the baseline every ratio is against;
* ``pickle+zstd``: the same bytes through zstd level 1 (one pass);
* ``local``: :func:`starburst.wire.serialization.dumps` / ``loads`` with the
  local backend's codec (``none``): pickle 5, out-of-band buffers, each
  rebuilt in writable 64-byte-aligned memory;
* ``s3``: the same with the S3 codec, zstd at ``NETWORK_ZSTD_LEVEL`` per
  segment, kept where it pays at ``NETWORK_THROUGHPUT``;
* ``s3 zstd-1`` / ``s3 zstd3``: the candidates the S3 level was chosen
  against (the same code at another level).

in both directions a frame travels:

* ``to worker``: the frame as an argument; the client stores it once as a
  shared object (``dumps(frame)``) and the worker reads it (``loads``);
* ``to client``: the frame as a task's result, one part of the worker's
  outcome frame (``dumps_parts([(task, "ok", frame, "", None)])``), read
  by the client with ``loads_parts``.

starburst's messages also carry a checksum of each frame, computed by the
sender and verified by the receiver (over S3 the whole frame's BLAKE2b; on
the local backend the frame's structure, :func:`starburst.wire.serialization.frame_checksum`):
it is timed on its own
(``checksum s``, both sides) and shown beside the frame's own time. The
S3 table adds a modelled transfer: the encoded bytes go up once and down
once at ``NETWORK_THROUGHPUT`` (printed), so ``total`` = encode + decode
+ 2 x bytes / throughput, the figure the codec is chosen on (pickle has no
checksum to compare with), and ``+checksum`` adds starburst's checksum.
Times are medians over ``--repeat`` runs, methods interleaved within each
run; ratios are against plain pickle (``> 1x`` = faster than pickle).
Every method's decoded frame is checked equal to the original, and
writable, once.

Usage (from the repository root)::

    nice -n 10 .venv/bin/python bench/dataframes.py [--rows 10000000] [--repeat 3] [--json]
    .venv/bin/python bench/dataframes.py --rows 50000 --repeat 1 --json   # smoke test
"""

from __future__ import annotations

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
import _report as report  # the bench directory is not a package

METHODS = ("pickle", "pickle_zstd", "local", "s3", "s3_zstd-1", "s3_zstd3")
DIRECTIONS = ("to_worker", "to_client")
_LABELS = {
    "pickle": "pickle protocol 5, uncompressed",
    "pickle_zstd": "pickle+zstd (level 1)",
    "local": "starburst local (codec none)",
    "s3": "starburst s3 (chosen)",
    "s3_zstd-1": "starburst s3 at zstd -1",
    "s3_zstd3": "starburst s3 at zstd 3",
}
#: The zstd level each S3 candidate runs at (None: the shipped NETWORK_ZSTD_LEVEL).
_LEVELS: dict[str, int | None] = {"s3": None, "s3_zstd-1": -1, "s3_zstd3": 3}
# The level pickle+zstd runs at: the level starburst's frames used before.
_PICKLE_ZSTD_LEVEL = 1

Codec = tuple[Callable[[Any], bytes], Callable[[bytes], Any], Callable[[bytes], float]]


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
def _level(level: int | None) -> Iterator[None]:
    """Run starburst's S3 codec at another zstd level (None: as shipped)."""
    from starburst.wire import serialization

    saved = serialization.NETWORK_ZSTD_LEVEL
    if level is not None:
        serialization.NETWORK_ZSTD_LEVEL = level
    try:
        yield
    finally:
        serialization.NETWORK_ZSTD_LEVEL = saved


def _codec(method: str, direction: str) -> Codec:
    """(encode, decode, checksum seconds of one frame) of a method in a direction."""
    import zstandard

    from starburst.wire.serialization import dumps, dumps_parts, frame_checksum, loads, loads_parts

    def no_checksum(_data: bytes) -> float:
        return 0.0

    if method == "pickle":
        return (lambda obj: pickle.dumps(obj, protocol=5)), pickle.loads, no_checksum
    if method == "pickle_zstd":
        def encode_z(obj: Any) -> bytes:
            raw = pickle.dumps(obj, protocol=5)
            return zstandard.ZstdCompressor(level=_PICKLE_ZSTD_LEVEL).compress(raw)

        def decode_z(data: bytes) -> Any:
            return pickle.loads(zstandard.ZstdDecompressor().decompress(data))

        return encode_z, decode_z, no_checksum

    codec = "none" if method == "local" else "zstd"
    # The digest the message carries on that transport (the structure on local:,
    # the whole frame's BLAKE2b over S3): what a sender computes and a receiver checks.
    spec = "local:/bench" if method == "local" else "aws:bench"

    def timed_checksum(data: bytes) -> float:
        t0 = time.perf_counter()
        frame_checksum(data, spec)
        return time.perf_counter() - t0

    if direction == "to_worker":
        return (lambda obj: dumps(obj, codec=codec)), loads, timed_checksum
    return ((lambda obj: dumps_parts(obj, codec=codec)),
            (lambda data: [v for v, _ in loads_parts(data)]), timed_checksum)


def _wrap(direction: str, frame: Any) -> Any:
    """What is encoded in that direction: the frame itself, or a one-task outcome list."""
    return frame if direction == "to_worker" else [(0, "ok", frame, "", None)]


def _unwrap(direction: str, obj: Any) -> Any:
    return obj if direction == "to_worker" else obj[0][2]


def _check(back: Any, frame: Any, method: str) -> None:
    """Fail the bench if a method did not give the frame back, or not writable.

    ``DataFrame.equals`` is vectorised; ``assert_frame_equal`` would take
    minutes on 10M rows.
    """
    if not (type(back) is type(frame) and back.equals(frame)
            and list(back.dtypes) == list(frame.dtypes)
            and back.index.equals(frame.index) and back.columns.equals(frame.columns)):
        raise AssertionError(f"{method}: the decoded frame differs from the original")
    back.loc[0, "value"] = 1.0  # raises where a method gives read-only columns


def measure(frame: Any, repeat: int, log: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    """``{direction: {method: figures}}``; methods interleaved within each run."""
    rows = len(frame)
    out: dict[str, dict[str, Any]] = {
        d: {m: {"encode": report.Timing(rows), "decode": report.Timing(rows),
                "checksum": report.Timing(rows), "sizes": []} for m in METHODS}
        for d in DIRECTIONS}
    for direction in DIRECTIONS:
        for run in range(repeat):
            for method in METHODS:
                encode, decode, check = _codec(method, direction)
                f = out[direction][method]
                with _level(_LEVELS.get(method)):
                    obj = _wrap(direction, frame)
                    gc.collect()
                    t0 = time.perf_counter()
                    data = encode(obj)
                    f["encode"].add(time.perf_counter() - t0)
                    del obj
                    f["sizes"].append(len(data))
                    f["checksum"].add(check(data) + check(data))  # sender and receiver
                    gc.collect()
                    t0 = time.perf_counter()
                    back = decode(data)
                    f["decode"].add(time.perf_counter() - t0)
                    del data
                if run == 0:
                    _check(_unwrap(direction, back), frame, method)
                del back
        for method in METHODS:
            f = out[direction][method]
            f["bytes"] = int(sorted(f["sizes"])[len(f["sizes"]) // 2])
            log(f"  {direction:9} {method:11} encode {f['encode'].median_s:7.3f}s  "
                f"decode {f['decode'].median_s:7.3f}s  checksum {f['checksum'].median_s:6.3f}s"
                f"  {f['bytes'] / 2**20:9.1f} MiB")
    return out


def _ratio(base: float, value: float) -> float:
    return base / value if value > 0 and not math.isnan(base) else math.nan


def _round(x: float, digits: int = 3) -> float | None:
    return None if math.isnan(x) or math.isinf(x) else round(x, digits)


def _timing(t: report.Timing) -> dict[str, Any]:
    return {"median_s": _round(t.median_s, 4), "runs_s": [_round(s, 4) for s in t.runs],
            "rows_per_s": _round(t.rate, 0)}


def _times(f: dict[str, Any], throughput: float) -> dict[str, float]:
    """A method's frame, checksum and modelled S3 round-trip times in seconds."""
    frame = f["encode"].median_s + f["decode"].median_s
    check = f["checksum"].median_s
    transfer = 2 * f["bytes"] / throughput
    return {"frame": frame, "with_checksum": frame + check, "transfer": transfer,
            "s3_total": frame + transfer, "s3_with_checksum": frame + transfer + check}


def main(argv: list[str] | None = None) -> int:
    parser = report.bench_parser(__doc__)
    parser.add_argument("--rows", type=int, default=None,
                        help="rows of the frame (default 10,000,000; 200,000 with --quick)")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 when a gating target fails")
    report.add_common_args(parser, repeat=3)
    args = parser.parse_args(argv)
    rows = args.rows if args.rows is not None else (200_000 if args.quick else 10_000_000)
    if rows < 1:
        parser.error("--rows must be >= 1")
    repeat = report.resolve_repeat(args)

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    from starburst.wire.serialization import NETWORK_THROUGHPUT, NETWORK_ZSTD_LEVEL
    from starburst.wire.tables import nbytes

    log(f"dataframes: {rows:,} rows, median of {repeat}")
    t0 = time.perf_counter()
    frame = make_frame(rows)
    memory = nbytes(frame)
    log(f"  frame built in {time.perf_counter() - t0:.1f}s: {memory / 2**20:,.1f} MiB in memory")
    figures = measure(frame, repeat, log)
    mbps = NETWORK_THROUGHPUT / 1e6

    times = {d: {m: _times(figures[d][m], NETWORK_THROUGHPUT) for m in METHODS}
             for d in DIRECTIONS}
    ratios: dict[str, dict[str, Any]] = {}
    for direction in DIRECTIONS:
        base = times[direction]["pickle"]
        ratios[direction] = {}
        local_rows, s3_rows = [], []
        for method in METHODS:
            f, t = figures[direction][method], times[direction][method]
            r = {"frame": _ratio(base["frame"], t["frame"]),
                 "with_checksum": _ratio(base["frame"], t["with_checksum"]),
                 "s3_total": _ratio(base["s3_total"], t["s3_total"]),
                 "s3_with_checksum": _ratio(base["s3_total"], t["s3_with_checksum"]),
                 "size": f["bytes"] / figures[direction]["pickle"]["bytes"]}
            ratios[direction][method] = r
            mib = f"{f['bytes'] / 2**20:,.1f}"
            if method in ("pickle", "local"):
                local_rows.append([_LABELS[method], f"{f['encode'].median_s:.3f}",
                                   f"{f['decode'].median_s:.3f}",
                                   f"{f['checksum'].median_s:.3f}", mib,
                                   f"{r['frame']:.2f}x", f"{r['with_checksum']:.2f}x"])
            if method != "local":
                s3_rows.append([_LABELS[method], f"{t['frame']:.3f}", mib,
                                f"{t['transfer']:.3f}", f"{t['s3_total']:.3f}",
                                f"{r['s3_total']:.2f}x", f"{t['s3_with_checksum']:.3f}",
                                f"{r['s3_with_checksum']:.2f}x", f"{r['size']:.2f}"])
        where = ("argument: client dumps, worker loads" if direction == "to_worker"
                 else "result: worker dumps, client loads")
        title = f"{direction.replace('_', ' ')} ({where}): {rows:,} rows, " \
                f"{memory / 2**20:,.0f} MiB in memory, median of {repeat}"
        report.print_table(f"local backend, {title} (ratios vs plain pickle; > 1x = faster)",
                           ["method", "encode s", "decode s", "checksum s", "MiB", "frame",
                            "+checksum"], local_rows)
        report.print_table(f"S3 at {mbps:g} MB/s per worker, up + down, {title}",
                           ["method", "enc+dec s", "MiB", "transfer s", "total s", "vs pickle",
                            "+checksum s", "vs pickle", "size"], s3_rows)
    print(f"assumption: S3 moves {mbps:g} MB/s per worker each way "
          f"(NETWORK_THROUGHPUT); the s3 codec is zstd level {NETWORK_ZSTD_LEVEL} per segment")

    targets = []
    for d in DIRECTIONS:
        name = d.replace("_", " ")
        targets += [
            report.Target(f"local frame vs plain pickle, {name}", ratios[d]["local"]["frame"], 0.9),
            report.Target(f"local frame + checksum vs plain pickle, {name} (goal)",
                          ratios[d]["local"]["with_checksum"], 0.9, gating=False),
            report.Target(f"s3 total vs plain pickle at {mbps:g} MB/s, {name}",
                          ratios[d]["s3"]["s3_total"], 1.0),
            report.Target(f"s3 total vs pickle+zstd at {mbps:g} MB/s, {name}",
                          _ratio(times[d]["pickle_zstd"]["s3_total"], times[d]["s3"]["s3_total"]),
                          1.0),
            report.Target(f"s3 total + checksum vs plain pickle at {mbps:g} MB/s, {name} (goal)",
                          ratios[d]["s3"]["s3_with_checksum"], 1.0, gating=False),
        ]
    report.print_targets(targets)

    if args.json:
        report.emit_json({
            "bench": "dataframes",
            "rows": rows,
            "frame_mib": round(memory / 2**20, 1),
            "repeat": repeat,
            "quick": bool(args.quick),
            "throughput_bytes_per_s": NETWORK_THROUGHPUT,
            "s3_zstd_level": NETWORK_ZSTD_LEVEL,
            "env": report.environment(),
            "figures": {
                d: {m: {"encode": _timing(f["encode"]), "decode": _timing(f["decode"]),
                        "checksum": _timing(f["checksum"]), "bytes": f["bytes"],
                        "seconds": {k: _round(v, 4) for k, v in times[d][m].items()}}
                    for m, f in figures[d].items()}
                for d in DIRECTIONS
            },
            "ratios_vs_pickle": {d: {m: {k: _round(v) for k, v in r.items()}
                                     for m, r in ratios[d].items()} for d in DIRECTIONS},
            "targets": {t.name: t.as_dict() for t in targets},
        })
    failed = not report.gating_passed(targets)
    return 1 if (args.strict and failed) else 0


if __name__ == "__main__":
    sys.exit(main())
