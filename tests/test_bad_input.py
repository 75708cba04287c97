"""Bad input: every mistake a user can make raises a named exception whose
message names the cause and the fix.

Cases elsewhere (not duplicated here), counted in the list of the issue
"Reliability and security figures":

* unpicklable argument / keyword / closure / result, segfault, bare SIGKILL
  (reported as SIGKILL, not OOM), ``os._exit``, ``sys.exit``, KeyboardInterrupt
  in a task: tests/test_crash_matrix.py;
* never-returning task (``task_timeout``): tests/test_settings_options.py;
* missing/expired credentials, missing bucket/cluster, AccessDenied (real
  botocore calls): tests/aws/test_errors.py; malformed/unknown/wrong-type
  config file keys: tests/aws/test_config.py.

The 30+ cases below are in this file.
"""

from __future__ import annotations

import os
import threading

import pytest
from _support import TEST_KEY
from _tasks import call_sys_exit, double, kill_self, nap, segfault
from botocore.exceptions import ClientError, NoCredentialsError

import starburst
from starburst.aws.errors import translate_errors
from starburst.exceptions import CloudError, ProtocolError, VersionMismatchError
from starburst.wire import messages as protocol

# -- options: (kwargs, words the message must hold: cause ... fix) ------------------

OPTION_CASES = [
    ({"workers": 0}, ["workers=0", "positive integer"]),
    ({"workers": -3}, ["workers=-3", "positive integer"]),
    ({"workers": 2.5}, ["workers=2.5", "positive integer"]),
    ({"workers": True}, ["workers=True", "positive integer"]),
    ({"cpu": 0}, ["cpu=0", "positive number of vCPUs"]),
    ({"cpu": "lots"}, ["cpu='lots'", "vCPUs"]),
    ({"memory": "lots"}, ["memory='lots'", "memory='8GB'"]),
    ({"memory": float("inf")}, ["memory=inf", "memory='8GB'"]),
    ({"memory": -1}, ["memory=-1", "positive"]),
    ({"chunksize": 0}, ["chunksize=0", "positive integer or None"]),
    ({"max_attempts": 0}, ["max_attempts=0", ">= 1"]),
    ({"task_timeout": -1}, ["task_timeout=-1", "positive number of seconds"]),
    ({"task_timeout": 0}, ["task_timeout=0", "positive number of seconds"]),
    ({"idle_timeout": "soon"}, ["idle_timeout='soon'", "positive number of seconds"]),
    ({"max_cost": -5}, ["max_cost=-5", "positive number of dollars"]),
    ({"seed": -1}, ["seed=-1", "non-negative integer"]),
    ({"session_timeout": 0}, ["session_timeout=0", "positive number of seconds"]),
    ({"backend": "nope"}, ["unknown backend 'nope'", "fargate", "local"]),
    ({"bogus": 1}, ["bogus", "not an option of any backend", "check the spelling"]),
    ({"backend": "fargate", "cpu": 3}, ["cpu=3", "0.25, 0.5, 1, 2, 4, 8, 16"]),
    ({"backend": "fargate", "cpu": 1, "memory": "100GB"}, ["cpu=1", "'2GB' to '8GB'"]),
]


@pytest.mark.parametrize(("kwargs", "words"), OPTION_CASES,
                         ids=[repr(k) for k, _ in OPTION_CASES])
def test_invalid_option_names_cause_and_fix(kwargs, words):
    with pytest.raises(starburst.ConfigurationError) as info:
        starburst.Executor(progress=False, **kwargs).shutdown()
    for word in words:
        assert word in str(info.value), (word, str(info.value))


SETTING_CASES = [
    ({"lease": -1}, ["lease=-1", "positive, finite number of seconds"]),
    ({"heartbeat": float("nan")}, ["heartbeat=nan", "positive, finite"]),
    ({"lease": 4, "heartbeat": 4}, ["heartbeat (4s) must be shorter than lease (4s)",
                                    "lease / 4"]),
    ({"max_receives": 0}, ["max_receives=0", "positive whole number"]),
]


@pytest.mark.parametrize(("kwargs", "words"), SETTING_CASES,
                         ids=[repr(k) for k, _ in SETTING_CASES])
def test_invalid_setting_names_cause_and_fix(kwargs, words):
    with pytest.raises(starburst.ConfigurationError) as info:
        starburst.Settings(**kwargs)
    for word in words:
        assert word in str(info.value)


def test_setting_from_environment_that_is_not_a_number():
    with pytest.raises(starburst.ConfigurationError,
                       match=r"STARBURST_LEASE='abc' is not a number"):
        starburst.Settings.from_env({"STARBURST_LEASE": "abc"})


def test_malformed_configuration_file(tmp_path, monkeypatch):
    path = tmp_path / "config.toml"
    path.write_text("image = [unclosed\n")
    monkeypatch.setenv("STARBURST_CONFIG", str(path))
    with pytest.raises(starburst.ConfigurationError) as info:
        starburst.Executor(backend="fargate", region="us-east-1", progress=False)
    message = str(info.value)
    assert str(path) in message
    assert "line 1" in message
    assert "not valid TOML" in message
    assert 'region = "eu-west-1"' in message  # the fix: how a value is written


def test_missing_credentials_say_how_to_configure(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(CloudError) as info:
        starburst.Executor(backend="fargate", region="us-east-1", progress=False)
    message = str(info.value)
    assert "no usable AWS credentials" in message
    assert "aws configure" in message
    assert "AWS_PROFILE" in message


@pytest.mark.parametrize(("code", "words"), [
    ("ExpiredToken", ["credentials have expired"]),
    ("NoSuchBucket", ["bucket does not exist", "starburst setup"]),
    ("InvalidClientTokenId", ["InvalidClientTokenId"]),
])
def test_cloud_errors_name_cause_and_fix(code, words):
    with pytest.raises(CloudError) as info, translate_errors("S3 GetObject s3://b/k"):
        raise ClientError({"Error": {"Code": code, "Message": "details"}}, "GetObject")
    for word in words:
        assert word in str(info.value)


def test_no_credentials_error_is_translated():
    with pytest.raises(CloudError, match="aws sso login"), translate_errors("STS call"):
        raise NoCredentialsError()


def test_attach_to_a_session_that_does_not_exist(tmp_path, monkeypatch):
    monkeypatch.setenv("STARBURST_LOCAL_DIR", str(tmp_path))
    with pytest.raises(starburst.ConfigurationError) as info:
        starburst.attach("sb-nope")
    assert "no local session sb-nope" in str(info.value)
    assert "STARBURST_LOCAL_DIR" in str(info.value)


# -- messages on the wire -------------------------------------------------------------


def test_payload_from_a_different_version():
    frame = bytearray(protocol.encode(protocol.TaskMessage(session="s", chunk=0, n=1,
                                                           checksum="x"), TEST_KEY))
    frame[3] = protocol.PROTOCOL_VERSION + 1
    with pytest.raises(VersionMismatchError) as info:
        protocol.decode(bytes(frame), TEST_KEY)
    assert "different starburst versions" in str(info.value)
    assert "use the same version" in str(info.value)


@pytest.mark.parametrize("garbage", [b"", b"hello world", b"SBM\x01\xff\xff\xff\xff{}",
                                     b"SBM\x01\x02\x00\x00\x00[]"])
def test_garbage_message_is_a_protocol_error(garbage):
    with pytest.raises(ProtocolError):
        protocol.decode(garbage, TEST_KEY)


# -- running: one task fails, clearly; the executor goes on --------------------------


@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_task_timeout_names_the_limit(executor_factory):
    ex = executor_factory(task_timeout=0.5)
    with pytest.raises(starburst.TaskTimeoutError) as info:
        ex.submit(nap, 30).result(timeout=60)
    assert "0.5" in str(info.value)
    assert ex.submit(double, 2).result(timeout=30) == 4


@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_malformed_queue_message_goes_to_the_dead_letter_queue(executor_factory, caplog):
    ex = executor_factory(workers=1)
    assert ex.submit(double, 1).result(timeout=60) == 2  # a worker is serving
    transport = ex._client.transport
    transport.tasks.send([b"this is not a starburst message"])
    assert ex.submit(double, 3).result(timeout=60) == 6  # the worker keeps serving
    from _support import wait_for

    dead = wait_for(lambda: transport.dead.receive(max_messages=10, wait_seconds=0.1,
                                                   visibility=30), timeout=30,
                    what="the garbage to reach the dead-letter queue")
    assert dead[0].body == b"this is not a starburst message"


@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_corrupted_payload_in_the_store_fails_its_tasks_clearly(executor_factory):
    ex = executor_factory(workers=1)
    transport = ex._client.transport
    put = transport.store.put

    def corrupt(key, data):  # the payload is written, then damaged in the store
        put(key, data[: len(data) // 2] if "/objects/" in key else data)

    transport.store.put = corrupt
    big = os.urandom(2 << 20)  # too large to ride inline: goes through the store
    with pytest.raises(starburst.StarburstError) as info:
        ex.submit(len, big).result(timeout=60)
    assert "checksum" in str(info.value) or "corrupt" in str(info.value)


@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_unpicklable_argument_names_its_position(executor_factory):
    ex = executor_factory()
    with pytest.raises(starburst.SerializationError, match="argument 0"):
        ex.submit(double, threading.Lock()).result(timeout=30)


@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_sys_exit_in_a_task_says_return_instead(executor_factory):
    ex = executor_factory(max_attempts=1)
    with pytest.raises(starburst.TaskError) as info:
        ex.submit(call_sys_exit, 4).result(timeout=30)
    assert "sys.exit(4)" in str(info.value)
    assert "return a value or raise an exception instead" in str(info.value)


@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_bare_sigkill_is_not_called_oom(executor_factory):
    ex = executor_factory(max_attempts=1)
    with pytest.raises(starburst.WorkerLostError) as info:
        ex.submit(kill_self).result(timeout=60)
    assert "SIGKILL" in str(info.value)
    assert "max_attempts=1" in str(info.value)
    assert "out of memory" not in str(info.value).lower()


@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_segfault_is_reported_as_sigsegv(executor_factory):
    ex = executor_factory(max_attempts=1)
    with pytest.raises(starburst.WorkerLostError, match="SIGSEGV"):
        ex.submit(segfault).result(timeout=60)
