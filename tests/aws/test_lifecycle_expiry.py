"""S3 lifecycle expiry in the emulated AWS (``StrictRules.lifecycle_day_s``), and the
product's one retention rule holding under it.

moto stores a bucket's lifecycle rules and never applies them; the emulator
expires objects, time-scaled, so a test proves both that data the product
still needs outlives its rule and that data past the rule is really gone.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from _support import wait_for

import starburst
from starburst.admin import ops
from starburst.aws import inventory, retention
from starburst.aws.clients import client
from starburst.exceptions import ConfigurationError

_DAY = 24 * 3600
#: A lifecycle day in the rule tests: long enough for a dozen requests to land
#: well inside one day, short enough that waiting a day costs half a second.
_TEST_DAY_S = 0.5
_BUCKET = "starburst-lifecycle-test"


def _keys(s3, bucket: str, prefix: str = "") -> set[str]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"] for o in listed}


def _rule(rule_id: str, filter_: dict, days: int = 1, **extra) -> dict:
    return {"ID": rule_id, "Status": "Enabled", "Filter": filter_,
            "Expiration": {"Days": days}, **extra}


def test_objects_past_their_rules_days_expire_and_the_others_stay(aws, monkeypatch):
    monkeypatch.setattr(aws.rules, "lifecycle_day_s", _TEST_DAY_S)
    s3 = client("s3")
    s3.create_bucket(Bucket=_BUCKET)
    s3.put_bucket_lifecycle_configuration(Bucket=_BUCKET, LifecycleConfiguration={"Rules": [
        _rule("old", {"Prefix": "old/"},
              AbortIncompleteMultipartUpload={"DaysAfterInitiation": 1}),
        _rule("tagged", {"Tag": {"Key": "expire", "Value": "yes"}}),
        _rule("debug-logs", {"And": {"Prefix": "logs/",
                                     "Tags": [{"Key": "kind", "Value": "debug"}]}}),
        {**_rule("off", {"Prefix": "off/"}), "Status": "Disabled"},
        _rule("later", {"Prefix": "later/"}, days=30)]})
    expired, aborted = aws.rules.objects_expired, aws.rules.uploads_aborted
    for key, tags in [("old/a", ""), ("older/b", ""), ("tagged", "expire=yes"),
                      ("untagged", "expire=no"), ("logs/debug", "kind=debug"),
                      ("logs/info", "kind=info"), ("off/c", ""), ("later/d", "")]:
        s3.put_object(Bucket=_BUCKET, Key=key, Body=b"x", Tagging=tags)
    s3.create_multipart_upload(Bucket=_BUCKET, Key="old/upload")
    kept_upload = s3.create_multipart_upload(Bucket=_BUCKET, Key="keep/upload")["UploadId"]
    # Timed from the last write: on a loaded machine the writes above take a while,
    # and the upload made last must be a day old too (the flake of CI).
    written = time.monotonic()
    assert len(_keys(s3, _BUCKET)) == 8  # nothing is a day old yet
    time.sleep(max(0.0, written + _TEST_DAY_S * 1.2 - time.monotonic()))
    s3.put_object(Bucket=_BUCKET, Key="old/new", Body=b"x")  # written after the others
    assert _keys(s3, _BUCKET) == {"older/b", "untagged", "logs/info", "off/c", "later/d",
                                  "old/new"}
    assert aws.rules.objects_expired - expired == 3
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=_BUCKET, Key="old/a")
    uploads = s3.list_multipart_uploads(Bucket=_BUCKET).get("Uploads", [])
    assert [u["UploadId"] for u in uploads] == [kept_upload]
    assert aws.rules.uploads_aborted - aborted == 1


def test_expiry_is_off_at_a_zero_day_and_applies_at_the_next_request(aws, monkeypatch):
    s3 = client("s3")
    s3.create_bucket(Bucket=_BUCKET)
    s3.put_bucket_lifecycle_configuration(Bucket=_BUCKET, LifecycleConfiguration={
        "Rules": [_rule("all", {"Prefix": ""})]})
    s3.put_object(Bucket=_BUCKET, Key="a", Body=b"x")
    monkeypatch.setattr(aws.rules, "lifecycle_day_s", 0.0)
    expired = aws.rules.objects_expired
    aws.rules.advance_lifecycle(days=10)  # no calendar while expiry is off
    assert _keys(s3, _BUCKET) == {"a"}
    monkeypatch.setattr(aws.rules, "lifecycle_day_s", _TEST_DAY_S)
    aws.rules.advance_lifecycle(days=1)
    assert _keys(s3, _BUCKET) == set()
    assert aws.rules.objects_expired - expired == 1


def test_an_expired_object_of_a_versioned_bucket_gets_a_delete_marker(aws, monkeypatch):
    monkeypatch.setattr(aws.rules, "lifecycle_day_s", _TEST_DAY_S)
    s3 = client("s3")
    s3.create_bucket(Bucket=_BUCKET)
    s3.put_bucket_versioning(Bucket=_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_lifecycle_configuration(Bucket=_BUCKET, LifecycleConfiguration={
        "Rules": [_rule("all", {"Prefix": ""})]})
    version = s3.put_object(Bucket=_BUCKET, Key="a", Body=b"x")["VersionId"]
    aws.rules.advance_lifecycle(days=1)
    assert _keys(s3, _BUCKET) == set()
    listed = s3.list_object_versions(Bucket=_BUCKET)
    assert [v["VersionId"] for v in listed["Versions"]] == [version]  # kept, noncurrent
    assert [m["IsLatest"] for m in listed["DeleteMarkers"]] == [True]


# -- the product's rule under expiry -------------------------------------------

def _stall_first_run(directory: str, x: int) -> int:
    """Hold the first worker on task 0 (the test kills it there); a later run returns."""
    marker = Path(directory, "ran-0")
    if x == 0 and not marker.exists():
        marker.touch()
        time.sleep(60)
    return -x


def _settings() -> starburst.Settings:
    """A killed worker's chunk is visible again within 2 s."""
    return starburst.Settings(lease=2.0, heartbeat=0.5, poll=0.05, idle_timeout=30,
                              client_heartbeat=0.5, client_stale=600, timeout_grace=1.0)


def _detached(*args_list: tuple) -> starburst.Executor:
    """A detached session allowed to run as long as any may (a week)."""
    ex = starburst.Executor(backend="fargate", workers=1, detached=True,
                            session_timeout=retention.MAX_SESSION_TIMEOUT,
                            settings=_settings(), progress=False)
    for args in args_list:
        ex.submit(*args)
    return ex


def test_work_the_queue_still_holds_finds_its_data_when_a_worker_gets_to_it(
        aws, tmp_path: Path):
    # A detached session's worker is lost mid-chunk; its task messages wait in SQS
    # for as long as SQS keeps them (14 days); then attach launches a worker: the
    # payloads, code bundle, manifests and record it needs must still be in S3.
    ex = _detached(*[(_stall_first_run, str(tmp_path), x) for x in range(3)])
    wait_for((tmp_path / "ran-0").exists, timeout=30, what="the worker to start task 0")
    ex.shutdown()
    aws.runner.kill_all()
    expired = aws.rules.objects_expired
    aws.rules.advance_lifecycle(days=retention.QUEUE_RETENTION_S / _DAY)
    with starburst.attach(ex.session_id, backend="fargate", progress=False,
                          settings=_settings()) as handle:
        assert handle.results(timeout=60) == [0, -1, -2]
        assert handle.status().workers_launched == 1  # the work really ran after the wait
    assert aws.rules.objects_expired == expired
    wait_for(lambda: not aws.runner.pids(), timeout=20, what="the attached worker to stop")


def test_a_finished_sessions_data_lasts_its_longest_run_and_two_weeks_then_expires(aws):
    s3 = client("s3")
    bucket, prefix = aws.shared.bucket, aws.shared.prefix.strip("/") + "/"
    s3.put_object(Bucket=bucket, Key="elsewhere/keep", Body=b"x")  # outside the rule
    ex = _detached(*[(abs, -x) for x in range(3)])
    ex.shutdown()
    session = ex.session_id
    wait_for(lambda: any(k.endswith("/commit") for k in _keys(s3, bucket, prefix)),
             timeout=30, what="the session's results")
    aws.runner.kill_all()  # the session ended; nobody writes its data again
    written = _keys(s3, bucket, prefix)
    place = inventory.Place.from_config()
    expired = aws.rules.objects_expired
    # The longest session (a week), then two weeks to attach: everything is there.
    collected = retention.MAX_SESSION_TIMEOUT / _DAY + 14
    aws.rules.advance_lifecycle(days=collected)
    assert _keys(s3, bucket, prefix) == written
    record = ops.read_record(place, session, strict=True)
    assert record is not None
    assert record.state == "submitted"
    assert aws.rules.objects_expired == expired
    # Past the rule's days, the session's data is gone, and only it.
    aws.rules.advance_lifecycle(days=retention.RUN_DATA_DAYS - collected)
    assert _keys(s3, bucket, prefix) == set()
    assert aws.rules.objects_expired - expired == len(written)
    assert _keys(s3, bucket, "elsewhere/") == {"elsewhere/keep"}
    with pytest.raises(ConfigurationError, match=f"no Fargate session {session}"):
        starburst.attach(session, backend="fargate", progress=False)
