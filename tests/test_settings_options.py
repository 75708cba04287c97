"""Settings and Executor options: validated before anything starts.

Every invalid value raises :class:`starburst.ConfigurationError` whose
message names the value, so the user sees what to fix.
"""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import starburst
from starburst.backends import known_backends
from starburst.exceptions import ConfigurationError
from starburst.options import ExecutorOptions, parse_memory
from starburst.settings import Settings

NAN = float("nan")
INF = float("inf")


# -- Settings -------------------------------------------------------------------


def test_settings_defaults_are_consistent():
    s = starburst.Settings()
    assert s.heartbeat < s.lease
    assert s.heartbeat <= s.lease / 4  # three heartbeats may be lost


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(starburst.Settings)])
@pytest.mark.parametrize("value", [0, -1.5, True, "1", None])
def test_settings_reject_non_positive_or_non_numbers(field, value):
    with pytest.raises(starburst.ConfigurationError, match=re.escape(f"{field}={value!r}")):
        starburst.Settings(**{field: value})


def test_settings_heartbeat_must_be_shorter_than_lease():
    with pytest.raises(starburst.ConfigurationError, match=r"heartbeat \(5.0s\).*lease \(5.0s\)"):
        starburst.Settings(lease=5.0, heartbeat=5.0)


@pytest.mark.parametrize("field", ["lease", "poll", "idle_timeout"])
def test_settings_reject_nan(field):
    with pytest.raises(starburst.ConfigurationError, match=field):
        starburst.Settings(**{field: NAN})


def test_settings_from_env_reads_starburst_variables():
    s = starburst.Settings.from_env({"STARBURST_POLL": "0.5", "STARBURST_MAX_RECEIVES": "7"})
    assert (s.poll, s.max_receives) == (0.5, 7)
    assert isinstance(s.max_receives, int)


def test_settings_from_env_derives_heartbeat_from_a_lease_alone():
    s = starburst.Settings.from_env({"STARBURST_LEASE": "8"})
    assert (s.lease, s.heartbeat) == (8.0, 2.0)
    s = starburst.Settings.from_env({"STARBURST_LEASE": "8", "STARBURST_HEARTBEAT": "1"})
    assert s.heartbeat == 1.0


def test_settings_from_env_overrides_win():
    s = starburst.Settings.from_env({"STARBURST_POLL": "0.5"}, poll=0.1)
    assert s.poll == 0.1


@pytest.mark.parametrize(("name", "raw"), [("STARBURST_LEASE", "soon"),
                                           ("STARBURST_MAX_RECEIVES", "1.5")])
def test_settings_from_env_rejects_what_is_not_a_number(name, raw):
    with pytest.raises(starburst.ConfigurationError, match=re.escape(f"{name}={raw!r}")):
        starburst.Settings.from_env({name: raw})


def test_settings_from_env_reads_the_process_environment(monkeypatch):
    monkeypatch.setenv("STARBURST_IDLE_TIMEOUT", "3")
    assert starburst.Settings.from_env().idle_timeout == 3.0


_positive = st.floats(min_value=1e-3, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(deadline=None, max_examples=100)
@given(lease=_positive, fraction=st.floats(0.01, 0.99), poll=_positive, idle=_positive,
       client_heartbeat=_positive, stale=_positive, grace=_positive,
       receives=st.integers(1, 1000), linger=_positive)
def test_settings_travel_to_workers_unchanged(lease, fraction, poll, idle, client_heartbeat,
                                              stale, grace, receives, linger):
    original = starburst.Settings(
        lease=lease, heartbeat=lease * fraction, poll=poll, idle_timeout=idle,
        client_heartbeat=client_heartbeat, client_stale=stale, timeout_grace=grace,
        max_receives=receives, linger=linger)
    env = original.to_env()
    assert all(k.startswith("STARBURST_") for k in env)
    assert starburst.Settings.from_env(env) == original


# -- memory sizes -----------------------------------------------------------------


@pytest.mark.parametrize(("value", "mib"), [
    ("8GB", 8192), ("8 GiB", 8192), ("8g", 8192), (" 8 gb ", 8192), ("512MB", 512),
    ("512 MiB", 512), ("100m", 100), ("1.5GB", 1536), ("2", 2048), (0.5, 512), (4, 4096),
])
def test_parse_memory_uses_fargate_units(value, mib):
    assert parse_memory(value) == mib


@pytest.mark.parametrize("value", ["lots", "", "8TB", "-1GB", "0GB", "1.5MB", "0.0001GB",
                                   0, -2, True, 1e-9])
def test_parse_memory_rejects_what_is_not_a_size(value):
    with pytest.raises(starburst.ConfigurationError, match=re.escape(f"memory={value!r}")):
        parse_memory(value)


@pytest.mark.parametrize("value", [NAN, INF])
def test_parse_memory_rejects_non_finite_numbers(value):
    with pytest.raises(starburst.ConfigurationError, match="memory="):
        parse_memory(value)


@settings(deadline=None, max_examples=100)
@given(st.integers(1, 1 << 20))
def test_parse_memory_round_trips_whole_mib(mib):
    assert parse_memory(f"{mib}MB") == mib
    assert parse_memory(f"{mib} MiB") == mib
    if mib % 1024 == 0:
        assert parse_memory(f"{mib // 1024}GB") == mib


# -- Executor options -------------------------------------------------------------


_BAD_OPTIONS = [
    ("workers", 0), ("workers", -3), ("workers", 1.5), ("workers", True), ("workers", "2"),
    ("cpu", 0), ("cpu", -1), ("cpu", True), ("cpu", "4"),
    ("memory", "lots"), ("memory", 0),
    ("chunksize", 0), ("chunksize", -1), ("chunksize", 2.5), ("chunksize", False),
    ("max_attempts", 0), ("max_attempts", 1.5), ("max_attempts", True),
    ("task_timeout", 0), ("task_timeout", -1), ("task_timeout", "10"), ("task_timeout", True),
    ("idle_timeout", 0), ("idle_timeout", -5), ("idle_timeout", "1m"),
]


@pytest.mark.parametrize(("name", "value"), _BAD_OPTIONS)
def test_executor_options_name_the_bad_value(name, value):
    with pytest.raises(starburst.ConfigurationError, match=re.escape(f"{name}={value!r}")):
        ExecutorOptions.build(**{name: value})


@pytest.mark.parametrize(("name", "value"), [("workers", 0), ("cpu", -1), ("memory", "x"),
                                             ("max_attempts", 0), ("task_timeout", -1)])
def test_executor_rejects_bad_options_before_starting(name, value, tmp_path, monkeypatch):
    monkeypatch.setenv("STARBURST_LOCAL_DIR", str(tmp_path))
    with pytest.raises(starburst.ConfigurationError, match=re.escape(f"{name}={value!r}")):
        starburst.Executor(**{name: value})
    assert list(tmp_path.iterdir()) == []  # nothing was created


@pytest.mark.parametrize("name", ["cpu", "task_timeout", "idle_timeout"])
def test_executor_options_reject_nan(name):
    with pytest.raises(starburst.ConfigurationError, match=name):
        ExecutorOptions.build(**{name: NAN})


def test_unknown_backend_names_it_and_the_choices():
    with pytest.raises(starburst.ConfigurationError) as info:
        starburst.Executor(backend="nope")
    assert "'nope'" in str(info.value)
    for name in known_backends():
        assert name in str(info.value)


def test_backend_must_be_a_name():
    with pytest.raises(starburst.ConfigurationError, match="backend=3"):
        ExecutorOptions.build(backend=3)


def test_local_backend_rejects_cloud_options():
    with pytest.raises(starburst.ConfigurationError, match="region"):
        starburst.Executor(backend="local", region="us-east-1")


def test_configuration_error_is_a_value_error():
    assert issubclass(starburst.ConfigurationError, ValueError)
    assert issubclass(starburst.ConfigurationError, starburst.StarburstError)


def test_options_keep_valid_values():
    s = starburst.Settings(lease=4.0, heartbeat=1.0)
    o = ExecutorOptions.build(workers=3, cpu=0.25, memory="512MB", chunksize=7, max_attempts=1,
                              task_timeout=2, idle_timeout=9, settings=s)
    assert (o.workers, o.cpu, o.memory_mib, o.chunksize, o.max_attempts) == (3, 0.25, 512, 7, 1)
    assert o.task_timeout == 2.0
    assert isinstance(o.task_timeout, float)
    assert o.settings.idle_timeout == 9.0
    assert o.settings.lease == 4.0
    assert math.isclose(o.settings.heartbeat, 1.0)


@pytest.mark.parametrize("receives", [1001, 10**6])
def test_max_receives_above_what_sqs_accepts_is_refused(receives):
    with pytest.raises(ConfigurationError, match=r"at most 1000.*maxReceiveCount"):
        Settings(max_receives=receives)
    assert Settings(max_receives=1000).max_receives == 1000


def test_the_backend_names_options_accept_are_the_registered_backends():
    from starburst.backends import known_backends
    from starburst.options import BACKEND_NAMES

    assert list(BACKEND_NAMES) == known_backends()
