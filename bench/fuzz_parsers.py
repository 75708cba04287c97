"""Fuzz the strict parsers (protocol.decode, SessionRecord.from_bytes, load_manifests).

Random and mutated inputs; any exception other than ProtocolError is a bug.

    .venv/bin/python bench/fuzz_parsers.py [--cases 100000] [--json] [--quick]
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _report as report  # the bench directory is not a package

from starburst.exceptions import ProtocolError
from starburst.session import SessionRecord, load_manifests
from starburst.wire import messages as protocol


class _Store(dict):
    def get(self, key):  # type: ignore[override]
        return self[key]


def main() -> int:
    parser = report.bench_parser(__doc__, repeat=1)
    parser.add_argument("--cases", type=int, default=100_000)
    args = parser.parse_args()
    cases = min(args.cases, 5_000) if args.quick else args.cases
    rng = random.Random(0)
    valid = protocol.encode(protocol.TaskMessage(session="s", chunk=1, n=2, checksum="h"))
    record = SessionRecord(session="s", backend="local", transport="x").to_bytes()
    rows, figures = [], {}
    for name, seed_input, parse in [
        ("protocol.decode", valid, protocol.decode),
        ("SessionRecord.from_bytes", record, SessionRecord.from_bytes),
        ("load_manifests", b"[[0,[1,2]]]",
         lambda d: load_manifests(_Store({"sessions/s/chunks/0": d}), "s")),
    ]:
        ok = rejected = crashed = 0
        examples: list[str] = []
        t0 = time.perf_counter()
        for _ in range(cases):
            data = bytearray(seed_input)
            kind = rng.random()
            if kind < 0.3:
                data = bytearray(rng.randbytes(rng.randint(0, 200)))
            else:
                for _ in range(rng.randint(1, 4)):
                    if data and rng.random() < 0.7:
                        data[rng.randrange(len(data))] = rng.randrange(256)
                    elif data:
                        del data[rng.randrange(len(data)):]
            try:
                parse(bytes(data))
                ok += 1
            except ProtocolError:
                rejected += 1
            except Exception as exc:
                crashed += 1
                if len(examples) < 3:
                    examples.append(f"{type(exc).__name__}: {exc} <- {bytes(data)[:60]!r}")
        seconds = time.perf_counter() - t0
        rows.append([name, f"{cases:,}", f"{ok:,}", f"{rejected:,}", f"{crashed:,}",
                     f"{seconds:.2f}", f"{cases / seconds:,.0f}"])
        figures[name] = {"cases": cases, "parsed": ok, "rejected": rejected,
                         "crashed": crashed, "seconds": round(seconds, 3),
                         "examples": examples}
    report.print_table("Parser fuzzing (crashed = an exception other than ProtocolError)",
                       ["parser", "cases", "parsed", "ProtocolError", "crashed", "s", "cases/s"],
                       rows)
    for name, fig in figures.items():
        for ex in fig["examples"]:
            print(f"CRASH {name}: {ex}")
    if args.json:
        report.emit_json({"bench": "fuzz_parsers", "environment": report.environment(),
                          "parsers": figures})
    return 1 if any(f["crashed"] for f in figures.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
