"""What a task role of its own adds to a session's open and close, in the emulated AWS.

Inside ``starburst.testing.emulated_aws()`` (moto), each round opens what a
session opens in AWS before its first worker (its three queues), then
creates its role (:func:`starburst.aws.session_role.create_session_role`:
CreateRole, PutRolePolicy, the GetRole/GetRolePolicy read-back; the first
round also creates the boundary policy), then deletes both. Prints the
median seconds of each step over the rounds, and a JSON line last.

These are moto's figures: moto answers IAM at once and consistently. On
AWS, the role also has to propagate before ECS accepts it; that wait is paid
at RegisterTaskDefinition/RunTask (``retry_while_propagating``), not here,
and AWS gives no bound for it (see the module docstring of
starburst.aws.session_role).

    .venv/bin/python bench/session_role.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from starburst.aws import session_role
from starburst.testing import emulated_aws
from starburst.testing.strict import StrictRules
from starburst.transport.aws import create_session_queues, delete_session_queues


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    steps: dict[str, list[float]] = {"queues (today's open)": [], "create role": [],
                                     "delete role": [], "delete queues": []}
    first_with_boundary = 0.0
    with emulated_aws(rules=StrictRules(describe_missing_s=0, empty_log_pages=0)) as aws:
        for n in range(args.rounds + 1):
            sid = f"sb-bench-{n:04d}"
            began = time.perf_counter()
            create_session_queues(sid, region=aws.region, max_receives=10)
            queues = time.perf_counter()
            session_role.create_session_role(sid, region=aws.region, bucket=aws.shared.bucket,
                                             prefix=aws.shared.prefix)
            role = time.perf_counter()
            session_role.delete_session_role(sid, region=aws.region)
            deleted = time.perf_counter()
            delete_session_queues(sid, region=aws.region)
            done = time.perf_counter()
            if n == 0:  # the boundary policy is created once per bucket
                first_with_boundary = role - queues
                continue
            steps["queues (today's open)"].append(queues - began)
            steps["create role"].append(role - queues)
            steps["delete role"].append(deleted - role)
            steps["delete queues"].append(done - deleted)
    medians = {name: statistics.median(values) for name, values in steps.items()}
    print(f"moto (emulated AWS), median of {args.rounds} rounds:")
    for name, value in medians.items():
        print(f"  {name:<24} {value * 1000:8.1f} ms")
    print(f"  {'first role (+boundary)':<24} {first_with_boundary * 1000:8.1f} ms")
    print(json.dumps({"bench": "session_role", "rounds": args.rounds, "backend": "moto",
                      "median_s": medians, "first_role_with_boundary_s": first_with_boundary}))


if __name__ == "__main__":
    main()
