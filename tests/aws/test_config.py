"""Configuration: arguments > STARBURST_* environment > config file > defaults."""

from __future__ import annotations

from pathlib import Path

import platformdirs
import pytest

from starburst.aws.clients import resolve_region
from starburst.aws.config import FIELDS, AwsConfig, config_path, load_config
from starburst.exceptions import ConfigurationError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_defaults_without_file_or_environment(tmp_path):
    config = load_config(path=tmp_path / "absent.toml", environ={})
    assert config == AwsConfig()
    assert config.prefix == "starburst"
    assert config.cluster == "starburst"
    assert config.assign_public_ip is True
    assert set(config.sources.values()) == {"default"}


def test_each_level_overrides_the_one_below(tmp_path):
    path = _write(tmp_path, 'region = "eu-west-1"\nbucket = "from-file"\ncluster = "file"\n'
                            'subnets = ["subnet-a", "subnet-b"]\nassign_public_ip = false\n')
    env = {"STARBURST_BUCKET": "from-env", "STARBURST_CLUSTER": "env",
           "STARBURST_SECURITY_GROUPS": "sg-1, sg-2"}
    config = load_config({"cluster": "arg", "image": None}, path=path, environ=env)
    assert config.region == "eu-west-1"
    assert config.bucket == "from-env"
    assert config.cluster == "arg"
    assert config.subnets == ("subnet-a", "subnet-b")
    assert config.security_groups == ("sg-1", "sg-2")
    assert config.assign_public_ip is False
    assert config.image is None  # None means "not given", not "unset it"
    assert config.sources["region"] == str(path)
    assert config.sources["bucket"] == "environment"
    assert config.sources["cluster"] == "argument"
    assert config.sources["image"] == "default"


def test_booleans_and_lists_from_the_environment(tmp_path):
    config = load_config(path=tmp_path / "absent.toml",
                         environ={"STARBURST_ASSIGN_PUBLIC_IP": "No",
                                  "STARBURST_SUBNETS": "subnet-1,subnet-2,"})
    assert config.assign_public_ip is False
    assert config.subnets == ("subnet-1", "subnet-2")
    with pytest.raises(ConfigurationError, match=r"STARBURST_ASSIGN_PUBLIC_IP.*true or false"):
        load_config(path=tmp_path / "absent.toml", environ={"STARBURST_ASSIGN_PUBLIC_IP": "?"})


def test_malformed_file_names_the_file_and_line(tmp_path):
    path = _write(tmp_path, 'region = "eu-west-1"\n\nbucket = my-bucket\n')
    with pytest.raises(ConfigurationError) as info:
        load_config(path=path, environ={})
    assert f"{path}, line 3" in str(info.value)
    assert "not valid TOML" in str(info.value)


def test_unknown_key_in_file_names_the_file_line_and_valid_keys(tmp_path):
    path = _write(tmp_path, 'region = "eu-west-1"\nbuckett = "typo"\n')
    with pytest.raises(ConfigurationError) as info:
        load_config(path=path, environ={})
    message = str(info.value)
    assert f"{path}, line 2" in message
    assert "'buckett'" in message
    assert all(name in message for name in FIELDS)


def test_wrong_type_in_file_names_the_line(tmp_path):
    path = _write(tmp_path, 'region = "eu-west-1"\nsubnets = 5\n')
    with pytest.raises(ConfigurationError, match=r"line 2: subnets must be a list of strings"):
        load_config(path=path, environ={})


def test_unknown_argument_lists_the_valid_ones(tmp_path):
    with pytest.raises(ConfigurationError, match=r"unknown option.*regoin.*valid: region"):
        load_config({"regoin": "x"}, path=tmp_path / "absent.toml", environ={})


def test_config_path_honours_starburst_config():
    assert config_path({"STARBURST_CONFIG": "/etc/sb.toml"}) == Path("/etc/sb.toml")
    default = Path(platformdirs.user_config_dir("starburst")) / "config.toml"
    assert config_path({}) == default


def test_the_default_file_is_read_when_no_path_is_given(tmp_path, monkeypatch):
    path = _write(tmp_path, 'cluster = "from-default-file"\n')
    monkeypatch.setenv("STARBURST_CONFIG", str(path))
    assert load_config().cluster == "from-default-file"


def test_region_resolution_order(tmp_path, monkeypatch):
    for name in ("STARBURST_REGION", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    with pytest.raises(ConfigurationError,
                       match=r"no AWS region is set: on the command line pass --region.*"
                             r"STARBURST_REGION"):
        resolve_region()
    assert resolve_region(None, "eu-west-1") == "eu-west-1"  # the config file's
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-2")
    assert resolve_region(None, "eu-west-1") == "eu-west-2"
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    assert resolve_region() == "eu-west-3"
    monkeypatch.setenv("STARBURST_REGION", "eu-north-1")
    assert resolve_region() == "eu-north-1"
    assert resolve_region("ap-south-1") == "ap-south-1"


def test_region_from_the_aws_profile(tmp_path, monkeypatch):
    for name in ("STARBURST_REGION", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    aws_config = tmp_path / "aws-config"
    aws_config.write_text("[default]\nregion = ap-south-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(aws_config))
    assert resolve_region() == "ap-south-1"


def test_a_region_argument_beats_aws_region_but_a_file_region_does_not(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_REGION", "eu-west-2")
    path = _write(tmp_path, 'region = "eu-west-1"\n')
    monkeypatch.setenv("STARBURST_CONFIG", str(path))
    given = load_config({"region": "eu-west-3"})
    assert resolve_region(given.region_given, given.region) == "eu-west-3"
    from_file = load_config()
    assert from_file.region_given is None
    assert resolve_region(from_file.region_given, from_file.region) == "eu-west-2"
    monkeypatch.setenv("STARBURST_REGION", "eu-north-1")
    from_env = load_config()
    assert resolve_region(from_env.region_given, from_env.region) == "eu-north-1"


def test_an_unknown_region_is_refused_at_construction_with_did_you_mean(aws, monkeypatch):
    """`region="mars-1"` failed after 11-18 s with an HTTP 500 that never named it: the
    region is now checked against botocore's endpoint data first (no network)."""
    import time

    import starburst

    started = time.monotonic()
    with pytest.raises(ConfigurationError) as caught:
        starburst.Executor(backend="fargate", region="mars-1", progress=False)
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "region 'mars-1' is not an AWS region" in message
    assert "STARBURST_EXTRA_REGIONS" in message  # the way out for a region newer than botocore
    with pytest.raises(ConfigurationError, match=r"'us-east-l'.*did you mean 'us-east-1'"):
        resolve_region("us-east-l")
    monkeypatch.setenv("STARBURST_REGION", "eu-centrl-1")
    with pytest.raises(ConfigurationError, match=r"\(set by STARBURST_REGION\): did you "
                                                 r"mean 'eu-central-1'"):
        resolve_region()
    monkeypatch.delenv("STARBURST_REGION")
    assert resolve_region("cn-north-1") == "cn-north-1"  # other partitions count too
    monkeypatch.setenv("STARBURST_EXTRA_REGIONS", "mars-1, mars-2")
    assert resolve_region("mars-2") == "mars-2"
