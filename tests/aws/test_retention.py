"""One retention rule: a detached session never outlives its queue messages or run data."""

from __future__ import annotations

import pytest

import starburst
from starburst.aws import retention
from starburst.exceptions import ConfigurationError

_DAY = 24 * 3600


def test_the_longest_session_fits_inside_queue_and_run_data_retention():
    assert retention.MAX_SESSION_TIMEOUT < retention.QUEUE_RETENTION_S <= 14 * _DAY
    # After the longest session, two weeks remain to attach and collect results.
    assert retention.RUN_DATA_DAYS * _DAY >= retention.MAX_SESSION_TIMEOUT + 14 * _DAY
    rule = retention.lifecycle_rule("/starburst/")
    assert rule["Filter"] == {"Prefix": "starburst/"}
    assert rule["Expiration"] == {"Days": retention.RUN_DATA_DAYS}


def test_a_session_timeout_past_a_week_is_refused_at_construction():
    with pytest.raises(ConfigurationError, match=r"longer than a week.*14 days"):
        starburst.Executor(detached=True, session_timeout=8 * _DAY, progress=False)


def test_first_use_provisioning_writes_the_setup_rule(aws):
    from starburst.aws.clients import client

    rules = client("s3").get_bucket_lifecycle_configuration(Bucket=aws.shared.bucket)["Rules"]
    assert rules == [retention.lifecycle_rule(aws.shared.prefix)]
