"""The scripts in ``examples/`` run, with small sizes, on the local backend.

Each runs as a user would run it (``python examples/x.py ...``) in a
subprocess, and must exit 0 and print the line that shows its point. The
S3 variant of ``group_apply.py`` talks to a moto S3 server on 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
#: Generous for a loaded 2-core machine; each run takes a few seconds here.
TIMEOUT = 120


def run_example(name: str, *args: str, cwd: Path,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``examples/<name>`` with ``args``; fail the test unless it exits 0."""
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=TIMEOUT,
                          env=env if env is not None else dict(os.environ), check=False)
    assert proc.returncode == 0, (
        f"{name} exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    return proc


def test_every_example_is_tested() -> None:
    scripts = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert scripts == ["grid_search.py", "group_apply.py", "large_array.py", "monte_carlo.py"]
    for script in scripts:
        text = (EXAMPLES / script).read_text()
        assert text.startswith('"""'), f"{script} has no module docstring"
        assert 'if __name__ == "__main__":' in text
        assert '"--backend"' in text


def test_monte_carlo_price_matches_black_scholes_and_the_seed(tmp_path) -> None:
    args = ("--tasks", "12", "--paths", "20000", "--seed", "11")
    two = run_example("monte_carlo.py", *args, "--workers", "2", cwd=tmp_path).stdout
    one = run_example("monte_carlo.py", *args, "--workers", "1", cwd=tmp_path).stdout
    price = re.search(r"^Monte Carlo price: (\S+) \+/- (\S+) \(240,000 paths", two, re.M)
    assert price, two
    assert re.search(r"^Black-Scholes price: 7\.128\d+$", two, re.M), two
    # seed=: the same price to the last digit, whatever the worker count.
    assert price.group(0) in one, one


def test_grid_search_through_joblib_matches_a_sequential_run(tmp_path) -> None:
    out = run_example("grid_search.py", "--n-jobs", "2", "--samples", "200", "--cv", "2",
                      "--verify", cwd=tmp_path).stdout
    assert "12 candidates x 2 folds = 24 fits on local workers (n_jobs=2)" in out
    assert re.search(r"^best params: \{'C': .+, 'gamma': .+\}$", out, re.M), out
    assert "verified: identical to the sequential run" in out


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_group_apply_over_local_files(tmp_path, fmt) -> None:
    out = run_example("group_apply.py", "--files", "5", "--rows", "400", "--workers", "2",
                      "--format", fmt, "--verify", cwd=tmp_path).stdout
    assert f"wrote 5 {fmt} files of 400 rows" in out
    assert re.search(r"^combined 5 files, 2,000 rows, 12 stores in ", out, re.M), out
    assert "verified: per-file summaries add up" in out
    # The temporary directory of the data is gone afterwards.
    where = re.search(r"rows under (\S+)$", out, re.M)
    assert where, out
    assert not Path(where.group(1)).exists()


@pytest.fixture
def moto_s3() -> Iterator[dict[str, str]]:
    """A moto S3 server on 127.0.0.1 with a bucket; yields the environment that reaches it."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        env = {**os.environ, "AWS_ENDPOINT_URL": f"http://{host}:{port}",
               "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}
        env.pop("AWS_PROFILE", None)
        s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        s3.create_bucket(Bucket="example-data")
        yield env
    finally:
        server.stop()


def test_group_apply_over_s3_files(tmp_path, moto_s3) -> None:
    s3 = boto3.client("s3", endpoint_url=moto_s3["AWS_ENDPOINT_URL"], region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    out = run_example("group_apply.py", "--files", "3", "--rows", "300", "--workers", "2",
                      "--s3", "s3://example-data/sales/", "--keep", "--verify", cwd=tmp_path,
                      env=moto_s3).stdout
    assert "under s3://example-data/sales" in out
    assert "verified: per-file summaries add up" in out
    listed = s3.list_objects_v2(Bucket="example-data", Prefix="sales/")
    assert sorted(o["Key"] for o in listed["Contents"]) == [
        f"sales/day-{d:03d}.parquet" for d in range(3)]
    # Without --keep the files are removed at the end.
    run_example("group_apply.py", "--files", "2", "--rows", "100", "--workers", "2",
                "--s3", "s3://example-data/other", cwd=tmp_path, env=moto_s3)
    assert "Contents" not in s3.list_objects_v2(Bucket="example-data", Prefix="other/")


def test_large_array_is_stored_once(tmp_path) -> None:
    out = run_example("large_array.py", "--mb", "4", "--tasks", "24", "--workers", "2",
                      cwd=tmp_path).stdout
    assert "array: 4.0 MB, 24 tasks" in out
    for label in ("map 1 (starts the workers, stores the array once): ",
                  "map 2 (same array, already stored): ", "map 3 (an equal copy"):
        assert label in out, out
    assert "24 of 24 tasks got a fresh copy of the array" in out, out
    assert "checked: block statistics match numpy; every task had its own copy" in out
