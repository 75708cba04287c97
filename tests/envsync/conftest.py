"""Fixtures of the environment sync tests: two real registries on 127.0.0.1 and an ECR.

* ``ecr_server``: the CNCF distribution registry (Debian ``docker-registry``)
  behind htpasswd Basic auth with user ``AWS`` and the password that moto's
  ECR ``GetAuthorizationToken`` decodes to, so ECR-style auth is exercised
  end to end; reached through :func:`ecr_registry` with the URL overridden
  (moto's ``proxyEndpoint`` names real AWS).
* ``public_server``: an anonymous registry playing the public source of the
  synthetic base image (a multi-platform index), so base layers are copied
  across registries.

uv runs offline and installs from local ``--find-links`` directories: the
tests download nothing. Every server started here is stopped here.
"""

from __future__ import annotations

import base64
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from _envsync_support import PYTHON, Traffic, push_synthetic_base
from moto import mock_aws

from starburst.envsync.cache import LayerCache
from starburst.envsync.ecrauth import ecr_registry
from starburst.envsync.registry import Registry
from starburst.envsync.selfwheel import self_layer
from starburst.envsync.target import Target
from starburst.testing.registry import LocalRegistry, registry_binary

REGION = "us-east-1"
# Small chunks so that every test blob upload takes several PATCH requests.
CHUNK = 64 * 1024


@pytest.fixture(autouse=True)
def _envsync_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # uv must never reach an index from the tests.
    monkeypatch.setenv("UV_OFFLINE", "1")
    for name in ("STARBURST_REGISTRY_URL", "STARBURST_CACHE_DIR", "AWS_ENDPOINT_URL",
                 "AWS_ENDPOINT_URL_ECR", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


def _need_registry() -> None:
    if registry_binary() is None:
        pytest.skip("the distribution registry is not installed (apt-get install "
                    "docker-registry)")


@pytest.fixture(scope="session")
def ecr_password() -> str:
    """What moto's ECR token decodes to, checked to be ``AWS:<password>``."""
    with mock_aws():
        token = boto3.client("ecr", region_name=REGION, aws_access_key_id="testing",
                             aws_secret_access_key="testing").get_authorization_token()
    decoded = base64.b64decode(token["authorizationData"][0]["authorizationToken"]).decode()
    user, _, password = decoded.partition(":")
    assert user == "AWS"
    assert password.endswith("-auth-token")
    return password


@pytest.fixture(scope="session")
def ecr_server(tmp_path_factory: pytest.TempPathFactory,
               ecr_password: str) -> Iterator[LocalRegistry]:
    _need_registry()
    with LocalRegistry(tmp_path_factory.mktemp("ecr-registry"), user="AWS",
                       password=ecr_password) as server:
        yield server


@pytest.fixture(scope="session")
def public_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    _need_registry()
    with LocalRegistry(tmp_path_factory.mktemp("public-registry")) as server:
        with Registry(server.url) as client:
            push_synthetic_base(client)
        yield server


@pytest.fixture
def ecr_client() -> Iterator[object]:
    with mock_aws():
        yield boto3.client("ecr", region_name=REGION)


@pytest.fixture
def traffic() -> Traffic:
    return Traffic()


@pytest.fixture
def registry(ecr_server: LocalRegistry, ecr_client: object,
             traffic: Traffic) -> Iterator[Registry]:
    """The emulated ECR: tokens from moto, API calls to the local registry."""
    client = ecr_registry(ecr_client, registry_url=ecr_server.url,  # type: ignore[arg-type]
                          chunk_size=CHUNK, event_hooks={"request": [traffic.hook]})
    with client:
        yield client


@pytest.fixture
def source(public_server: LocalRegistry) -> Iterator[Registry]:
    with Registry(public_server.url) as client:
        yield client


@pytest.fixture
def base_image(public_server: LocalRegistry) -> str:
    return f"{public_server.host}/library/python:{PYTHON}-slim"


@pytest.fixture
def repo() -> str:
    """A fresh repository name per test: tests share the session's registry."""
    return f"workers/t{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def _self_layer_seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """starburst's own layer, built once (uv build of the checkout, offline)."""
    root = tmp_path_factory.mktemp("self-layer")
    mp = pytest.MonkeyPatch()
    mp.setenv("UV_OFFLINE", "1")
    try:
        self_layer(LayerCache(root), Target.of("x86_64"))
    finally:
        mp.undo()
    return root


@pytest.fixture
def cache_dir(tmp_path: Path, _self_layer_seed: Path) -> Path:
    """A fresh cache per test, seeded with starburst's layer so tests skip its build."""
    root = tmp_path / "cache"
    shutil.copytree(_self_layer_seed / "layers", root / "layers")
    return root


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    path = tmp_path / "wheels"
    path.mkdir()
    return path
