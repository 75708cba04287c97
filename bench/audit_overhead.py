"""What the emulated AWS's request audit costs per request.

Inside ``starburst.testing.emulated_aws()``, a client with the task role's
credentials (what a worker has) makes rounds of S3 PutObject, GetObject
and SQS SendMessage requests in three modes, interleaved round by round so
that machine noise hits each alike: the audit removed (moto alone),
recording only, and recording plus enforcement (the default). Prints the
median seconds per request of each mode and the difference to moto alone.

    .venv/bin/python bench/audit_overhead.py [--rounds 15] [--requests 60]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import boto3

from starburst.testing import emulated_aws
from starburst.testing.emulator import EmulatedAws

#: Modes compared: the audit uninstalled, recording only, recording and enforcing.
_MODES = ("moto alone", "record", "record+enforce")


def _task_role_clients(aws: EmulatedAws) -> tuple[Any, Any, str]:
    sts = boto3.client("sts", endpoint_url=aws.endpoint, region_name=aws.region)
    creds = sts.assume_role(RoleArn=aws.shared.roles.task,
                            RoleSessionName="bench")["Credentials"]
    keys: dict[str, Any] = {"aws_access_key_id": creds["AccessKeyId"],
            "aws_secret_access_key": creds["SecretAccessKey"],
            "aws_session_token": creds["SessionToken"], "endpoint_url": aws.endpoint,
            "region_name": aws.region}
    queue = boto3.client("sqs", endpoint_url=aws.endpoint, region_name=aws.region).create_queue(
        QueueName="starburst-bench-audit")["QueueUrl"]
    return boto3.client("s3", **keys), boto3.client("sqs", **keys), queue


def _round(aws: EmulatedAws, s3: Any, sqs: Any, queue: str, requests: int) -> float:
    key = f"{aws.shared.prefix.strip('/')}/sessions/bench/x"
    start = time.perf_counter()
    for i in range(requests // 3):
        s3.put_object(Bucket=aws.shared.bucket, Key=key, Body=b"x" * 64)
        s3.get_object(Bucket=aws.shared.bucket, Key=key)["Body"].read()
        sqs.send_message(QueueUrl=queue, MessageBody=str(i))
    return (time.perf_counter() - start) / (requests // 3 * 3)


def main() -> None:
    """Run the comparison and print it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=60, help="requests per round")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with emulated_aws() as aws:
        s3, sqs, queue = _task_role_clients(aws)
        seconds: dict[str, list[float]] = {mode: [] for mode in _MODES}
        _round(aws, s3, sqs, queue, args.requests)  # warm-up: connections, caches
        for _ in range(args.rounds):
            for mode in _MODES:
                if mode == "moto alone":
                    aws.audit.uninstall()
                else:
                    aws.audit.install()
                    aws.audit.enforce = mode == "record+enforce"
                seconds[mode].append(_round(aws, s3, sqs, queue, args.requests))
        aws.audit.install()
        aws.audit.enforce = True
        denied = aws.audit.denied
    medians = {mode: statistics.median(values) for mode, values in seconds.items()}
    base = medians["moto alone"]
    if args.json:
        print(json.dumps({"median_s_per_request": medians, "denied": denied}))
        return
    print(f"{args.rounds} rounds x {args.requests} requests (S3 Put/Get, SQS Send), "
          "task role credentials; median per request:")
    for mode, value in medians.items():
        print(f"  {mode:15} {value * 1e3:7.3f} ms  ({(value - base) * 1e3:+.3f} ms, "
              f"x{value / base:.2f})")
    print(f"  requests denied: {denied}")


if __name__ == "__main__":
    main()
