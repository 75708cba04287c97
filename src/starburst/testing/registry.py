"""A real OCI registry on 127.0.0.1, for tests, benchmarks and the ECR emulation.

Runs the CNCF distribution registry (Debian package ``docker-registry``,
binary ``/usr/bin/docker-registry``; upstream calls it ``registry``) with a
private storage directory, on a free loopback port, optionally behind
htpasswd Basic auth. ECR takes Basic auth with user ``AWS`` and the
password from ``GetAuthorizationToken``; moto's token decodes to
``AWS:<account id>-auth-token``, so a registry started with that user and
password accepts exactly what starburst sends to an emulated ECR.
:func:`push_synthetic_base` fills a registry with a tiny stand-in for
``python:3.X-slim``, so nothing has to be downloaded.

Nothing here touches the network beyond 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib
import io
import shutil
import socket
import subprocess
import tarfile
import time
import warnings
from pathlib import Path

import httpx

from ..envsync.oci import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    canonical_json,
    sha256_digest,
)
from ..envsync.registry import Registry
from ..envsync.target import Target

__all__ = ["LocalRegistry", "bcrypt_hash", "push_synthetic_base", "registry_binary"]

# The registry starts in well under a second; ten is for a loaded CI machine.
_START_TIMEOUT_S = 10.0
_POLL_S = 0.05
# A bound port can be taken between our probe and the registry's bind: retry.
_START_ATTEMPTS = 3
# The registry verifies the bcrypt hash on every request. bcrypt's minimum
# cost (2**4 rounds) takes about a millisecond; the usual 12 takes ~250 ms
# per request, which would dominate every test. It guards nothing real.
_BCRYPT_COST = 4


def registry_binary() -> str | None:
    """Path of the distribution registry binary, or None when it is not installed."""
    return shutil.which("docker-registry") or shutil.which("registry")


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash of ``password`` for an htpasswd file (the registry accepts only bcrypt).

    Tries, in order: the ``bcrypt`` package, the standard ``crypt`` module
    (Python < 3.13, glibc's libxcrypt knows bcrypt) and ``htpasswd -nbB``
    from apache2-utils.

    Raises:
        RuntimeError: none of them is available.
    """
    with contextlib.suppress(ImportError):
        bcrypt = importlib.import_module("bcrypt")
        return str(bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=_BCRYPT_COST)).decode())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with contextlib.suppress(ImportError):
            crypt = importlib.import_module("crypt")
            if crypt.METHOD_BLOWFISH in crypt.methods:
                salt = crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=2 ** _BCRYPT_COST)
                return str(crypt.crypt(password, salt))
    htpasswd = shutil.which("htpasswd")
    if htpasswd:
        out = subprocess.run([htpasswd, "-nbB", "-C", str(_BCRYPT_COST), "x", password],
                             capture_output=True, text=True, check=True).stdout
        return out.strip().split(":", 1)[1]
    raise RuntimeError("no bcrypt implementation: pip install bcrypt, or apt-get install "
                       "apache2-utils")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalRegistry:
    """A distribution registry process on 127.0.0.1 (a context manager).

    Args:
        root: directory for its storage, config and log (created).
        user, password: require Basic auth with these; anonymous when None.
        binary: the registry executable; found on PATH by default.
    """

    def __init__(self, root: Path, *, user: str | None = None, password: str | None = None,
                 binary: str | None = None) -> None:
        self.root = root
        self.user = user
        self.password = password
        self.binary = binary or registry_binary()
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        """``127.0.0.1:<port>``, as image references name it."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> LocalRegistry:
        """Start the registry and wait until it answers.

        Raises:
            RuntimeError: the binary is missing or the registry did not come up.
        """
        if self.binary is None:
            raise RuntimeError("the distribution registry is not installed: apt-get install "
                               "docker-registry")
        self.root.mkdir(parents=True, exist_ok=True)
        error = ""
        for _ in range(_START_ATTEMPTS):
            self.port = _free_port()
            config = self._write_config()
            log = (self.root / "registry.log").open("ab")
            self._proc = subprocess.Popen([self.binary, "serve", str(config)], stdout=log,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.close()
            error = self._wait_ready()
            if not error:
                return self
            self.stop()
        raise RuntimeError(f"the registry did not start: {error}")

    def stop(self) -> None:
        """Stop the registry process (terminate, then kill)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def __enter__(self) -> LocalRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _write_config(self) -> Path:
        storage = self.root / "storage"
        storage.mkdir(exist_ok=True)
        lines = [
            "version: 0.1",
            "log:",
            "  level: error",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {storage}",
            "  delete:",
            "    enabled: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
        ]
        if self.user is not None and self.password is not None:
            htpasswd = self.root / "htpasswd"
            htpasswd.write_text(f"{self.user}:{bcrypt_hash(self.password)}\n", encoding="utf-8")
            lines += ["auth:", "  htpasswd:", "    realm: starburst-test",
                      f"    path: {htpasswd}"]
        config = self.root / "config.yml"
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return config

    def _wait_ready(self) -> str:
        """'' when the registry answers /v2/, else why not."""
        deadline = time.monotonic() + _START_TIMEOUT_S
        assert self._proc is not None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                log = (self.root / "registry.log").read_text(errors="replace")
                return f"exited with {self._proc.returncode}: {log[-2000:]}"
            try:
                status = httpx.get(f"{self.url}/v2/", timeout=1.0).status_code
            except httpx.HTTPError:
                status = 0
            if status in (200, 401):
                return ""
            time.sleep(_POLL_S)
        return f"no answer on {self.url} within {_START_TIMEOUT_S} s"


def push_synthetic_base(registry: Registry, repo: str = "library/python",
                        tag: str | None = None, *, python: str | None = None) -> dict[str, str]:
    """Push a tiny multi-platform stand-in for ``python:3.X.Y-slim``; return digests by arch.

    For tests and benchmarks that must not download a real base image.
    ``python`` is ``"3.X.Y"`` or ``"3.X"`` (the running interpreter's exact
    release when it names the running minor version; ``3.X.0`` otherwise).
    The image declares it in ``PYTHON_VERSION``, as the official images do,
    and is tagged both ``3.X.Y-slim`` and ``3.X-slim`` (unless ``tag`` is
    given). Each platform's single layer holds the python:3.X-slim directories
    (``usr/local/bin``, ``usr/local/lib/python3.X/site-packages``) and a marker
    file. linux/amd64 uses Docker schema 2 media types (as Docker Hub's
    images do), linux/arm64 OCI ones, and an OCI index ties them together,
    so copying it exercises index resolution and media type conversion.
    """
    target = Target.of("x86_64", python)
    version, exact = target.python, target.version
    if exact.count(".") == 1:
        exact += ".0"
    site_dir = f"usr/local/lib/python{version}/site-packages"
    digests: dict[str, str] = {}
    descriptors: list[dict[str, object]] = []
    for arch, docker in (("amd64", True), ("arm64", False)):
        blob, diff_id = _synthetic_layer({
            f"{site_dir}/BASE_IMAGE.txt": f"synthetic python {version} base ({arch})\n".encode(),
            "etc/os-release": b"ID=synthetic\n",
            "usr/local/bin/.keep": b"",
        })
        config = canonical_json({
            "architecture": arch, "os": "linux", "created": "2024-01-01T00:00:00Z",
            "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin",
                               f"PYTHON_VERSION={exact}"], "Cmd": ["python3"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "synthetic"}],
        })
        registry.push_blob(repo, sha256_digest(blob), blob)
        registry.push_blob(repo, sha256_digest(config), config)
        media = DOCKER_MANIFEST if docker else OCI_MANIFEST
        manifest = canonical_json({
            "schemaVersion": 2, "mediaType": media,
            "config": {"mediaType": DOCKER_CONFIG if docker else OCI_CONFIG,
                       "digest": sha256_digest(config), "size": len(config)},
            "layers": [{"mediaType": DOCKER_LAYER_GZIP if docker else OCI_LAYER_GZIP,
                        "digest": sha256_digest(blob), "size": len(blob)}],
        })
        digest = registry.put_manifest(repo, sha256_digest(manifest), manifest, media)
        digests[arch] = digest
        platform: dict[str, str] = {"architecture": arch, "os": "linux"}
        if arch == "arm64":
            platform["variant"] = "v8"
        descriptors.append({"mediaType": media, "digest": digest, "size": len(manifest),
                            "platform": platform})
    index = canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX,
                            "manifests": descriptors})
    for name in [tag] if tag else [f"{exact}-slim", f"{version}-slim"]:
        registry.put_manifest(repo, name, index, OCI_INDEX)
    return digests


def _synthetic_layer(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A gzip tar of ``files`` and their parent directories: (blob, diff_id)."""
    raw = io.BytesIO()
    dirs = sorted({"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)})
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, mtime=0), sha256_digest(tar_bytes)
