"""The policy linter over what starburst really writes in the emulated AWS.

tests/test_policies.py lints every document the policy functions produce;
this lints what lands in IAM and S3: the role policies of a session that
found no setup, and of `starburst setup` with and without ``--gpu``,
``--private`` and ``--kms-key``, plus the bucket policies and the policy
``--print-policy`` prints. Any grant on a wildcard resource must be listed,
with its reason, in ``policy_lint.WILDCARD_GRANTS``.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from starburst.aws import policy_lint, provision
from starburst.aws.clients import client
from starburst.cli import main


@pytest.fixture
def config_file(aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(aws.config_path.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setenv("STARBURST_CONFIG", str(path))
    return path


def _run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _written() -> dict[str, object]:
    """Every inline and attached role policy in IAM and every bucket policy in S3."""
    iam, s3 = client("iam"), client("s3")
    found: dict[str, object] = {}
    for role in iam.list_roles()["Roles"]:
        name = role["RoleName"]
        for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
            found[f"{name}/{policy}"] = iam.get_role_policy(
                RoleName=name, PolicyName=policy)["PolicyDocument"]
        assert not iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"], name
    for managed in iam.list_policies(Scope="Local")["Policies"]:
        version = iam.get_policy_version(PolicyArn=managed["Arn"],
                                         VersionId=managed["DefaultVersionId"])
        found[managed["Arn"]] = version["PolicyVersion"]["Document"]
    for bucket in s3.list_buckets()["Buckets"]:
        with contextlib.suppress(s3.exceptions.ClientError):  # a bucket without a policy
            found[f"s3://{bucket['Name']}"] = s3.get_bucket_policy(
                Bucket=bucket["Name"])["Policy"]
    return found


def _lint(found: dict[str, object]) -> dict[str, list[str]]:
    return {name: problems for name, doc in found.items()
            if (problems := policy_lint.unjustified_wildcards(doc))}  # type: ignore[arg-type]


def test_what_a_session_without_setup_writes_passes_the_linter(aws):
    # What sessions wrote before: the execution role's inline policy on "*".
    assert policy_lint.unjustified_wildcards(provision._LEGACY_EXECUTION_POLICY)
    found = _written()  # the emulator provisioned as a session does
    assert any(name.startswith("starburst-execution/") for name in found)
    assert _lint(found) == {}


@pytest.mark.parametrize("flags", [(), ("--private",), ("--gpu", "nvidia-t4"),
                                   ("--kms-key", "KMS")])
def test_what_setup_writes_passes_the_linter(config_file, flags):
    if "KMS" in flags:
        key = client("kms").create_key()["KeyMetadata"]["Arn"]
        flags = ("--kms-key", key)
    _run("setup", "--yes", *flags)
    found = _written()
    assert [name for name in found if name.startswith("starburst-task/starburst-data-")]
    assert [name for name in found if "policy/starburst-session-boundary-" in name]
    printed = _run("setup", "--print-policy", *[f for f in flags if f != "--private"])
    found["--print-policy"] = json.loads(printed)
    assert _lint(found) == {}
