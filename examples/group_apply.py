"""Split-apply-combine over many files: a pandas group-by per file on starburst workers.

The data set is one file of sales transactions per day (``store``,
``product``, ``quantity``, ``amount``). Each task reads one file and
reduces it with a pandas group-by to per-store partial sums; the client
adds the partial sums up and derives per-store totals and the average
basket. Only the small summaries travel back, never the rows.

The files are written first, as CSV or Parquet, into a temporary directory
(the default, removed at the end) or under an S3 prefix given with
``--s3 s3://bucket/prefix`` (written and read with boto3, deleted at the
end unless ``--keep``). Workers read the files themselves: local paths
suit the local backend; use ``--s3`` with a cloud backend.

Run it::

    python examples/group_apply.py --files 8 --rows 5000 --verify
    python examples/group_apply.py --backend fargate --s3 s3://my-bucket/sales --files 500

With ``--verify`` the client also reads every file itself and the exit
status is 1 unless both ways agree.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import starburst

STORES = [f"store-{i:02d}" for i in range(12)]
PRODUCTS = ["apples", "bread", "cheese", "coffee", "eggs", "milk", "rice", "tea"]


def make_day(day: int, rows: int, seed: int) -> pd.DataFrame:
    """One day's synthetic transactions (deterministic given ``day`` and ``seed``)."""
    rng = np.random.default_rng([seed, day])
    return pd.DataFrame({
        "day": day,
        "store": rng.choice(STORES, size=rows),
        "product": rng.choice(PRODUCTS, size=rows),
        "quantity": rng.integers(1, 6, size=rows),
        "amount": np.round(rng.gamma(2.0, 6.0, size=rows), 2),
    })


def _split_s3(url: str) -> tuple[str, str]:
    """``s3://bucket/key/prefix`` -> (bucket, key prefix without slashes at its ends)."""
    if not url.startswith("s3://"):
        raise ValueError(f"{url!r} is not an s3://bucket/prefix URL")
    bucket, _, key = url[len("s3://"):].partition("/")
    if not bucket:
        raise ValueError(f"{url!r} names no bucket")
    return bucket, key.strip("/")


def _s3() -> Any:
    import boto3  # only needed with --s3

    return boto3.client("s3")


def write_table(frame: pd.DataFrame, location: str, fmt: str) -> None:
    """Write ``frame`` as CSV or Parquet to a local path or an ``s3://`` URL."""
    buffer = io.BytesIO()
    if fmt == "parquet":
        frame.to_parquet(buffer, index=False)
    else:
        frame.to_csv(buffer, index=False)
    if location.startswith("s3://"):
        bucket, key = _split_s3(location)
        _s3().put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())
    else:
        Path(location).write_bytes(buffer.getvalue())


def read_table(location: str) -> pd.DataFrame:
    """Read a CSV or Parquet file (by its extension) from a local path or ``s3://`` URL."""
    if location.startswith("s3://"):
        bucket, key = _split_s3(location)
        data = _s3().get_object(Bucket=bucket, Key=key)["Body"].read()
    else:
        data = Path(location).read_bytes()
    if location.endswith(".parquet"):
        return pd.read_parquet(io.BytesIO(data))
    return pd.read_csv(io.BytesIO(data))


def summarize(location: str) -> pd.DataFrame:
    """The task: one file's per-store partial sums (rows, quantity, amount)."""
    frame = read_table(location)
    return frame.groupby("store").agg(rows=("amount", "size"), quantity=("quantity", "sum"),
                                      amount=("amount", "sum"))


def combine(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Add the partial sums per store; derive the average basket."""
    totals = pd.concat(parts).groupby(level=0).sum()
    totals["basket"] = totals["amount"] / totals["rows"]
    return totals.sort_values("amount", ascending=False)


@contextmanager
def dataset(s3: str | None, keep: bool) -> Iterator[str]:
    """Where the files go: a temporary directory, or the S3 prefix (emptied afterwards)."""
    if s3 is None:
        with tempfile.TemporaryDirectory(prefix="starburst-group-apply-") as directory:
            yield directory
        return
    bucket, prefix = _split_s3(s3)
    root = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    try:
        yield root
    finally:
        if not keep:
            client = _s3()
            listed = client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/day-")
            keys = [{"Key": item["Key"]} for item in listed.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys})


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, write the files, group-apply them on starburst, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="local", help="starburst backend (default: local)")
    parser.add_argument("--workers", type=int, default=None,
                        help="workers (default: one per core locally)")
    parser.add_argument("--files", type=int, default=30, help="files, one per day (default: 30)")
    parser.add_argument("--rows", type=int, default=20_000, help="rows per file (default: 20,000)")
    parser.add_argument("--format", choices=["parquet", "csv"], default="parquet",
                        help="file format (default: parquet)")
    parser.add_argument("--s3", metavar="s3://bucket/prefix", default=None,
                        help="write the files under this S3 prefix instead of a temp directory")
    parser.add_argument("--keep", action="store_true", help="leave the S3 files in place")
    parser.add_argument("--seed", type=int, default=7, help="seed of the data (default: 7)")
    parser.add_argument("--verify", action="store_true",
                        help="also read every file here and compare")
    args = parser.parse_args(argv)
    if args.files < 1 or args.rows < 1:
        parser.error("--files and --rows must be positive")

    with dataset(args.s3, args.keep) as root:
        locations = [f"{root}/day-{day:03d}.{args.format}" for day in range(args.files)]
        for day, location in enumerate(locations):
            write_table(make_day(day, args.rows, args.seed), location, args.format)
        print(f"wrote {args.files} {args.format} files of {args.rows:,} rows under {root}")

        started = time.perf_counter()
        with starburst.Executor(backend=args.backend, workers=args.workers) as ex:
            parts = list(ex.map(summarize, locations))
        totals = combine(parts)
        elapsed = time.perf_counter() - started
        print(f"combined {len(parts)} files, {int(totals['rows'].sum()):,} rows, "
              f"{len(totals)} stores in {elapsed:.2f} s")
        print(totals.head(3).round(2).to_string())

        if args.verify:
            everything = pd.concat([read_table(location) for location in locations])
            direct = everything.groupby("store").agg(
                rows=("amount", "size"), quantity=("quantity", "sum"), amount=("amount", "sum"))
            same = (direct.index.sort_values().equals(totals.index.sort_values())
                    and (direct["rows"] == totals["rows"].reindex(direct.index)).all()
                    and (direct["quantity"] == totals["quantity"].reindex(direct.index)).all()
                    and np.allclose(direct["amount"], totals["amount"].reindex(direct.index)))
            if not same:
                print("FAILED: the per-file results do not add up to the whole")
                return 1
            print("verified: per-file summaries add up to a direct group-by of all rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
