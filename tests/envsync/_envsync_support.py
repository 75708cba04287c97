"""Builders for the environment sync tests: wheels, sdists and a synthetic base image.

Everything is made locally from bytes: the tests download nothing.
"""

from __future__ import annotations

import io
import json
import random
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import httpx
from _support import make_wheel

from starburst.testing.registry import push_synthetic_base

__all__ = ["PYTHON", "SITE", "Traffic", "compiled_sdist", "make_sdist", "make_wheel",
           "payload", "pure_sdist", "push_synthetic_base", "read_json", "tar_names"]

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
SITE = f"usr/local/lib/python{PYTHON}/site-packages"


def payload(seed: str, size: int) -> bytes:
    """Incompressible bytes, the same for the same seed (a 'big' package's data)."""
    return random.Random(seed).randbytes(size)


def make_sdist(directory: Path, name: str, version: str, files: dict[str, str]) -> Path:
    """Write ``<name>-<version>.tar.gz`` holding ``files`` under its top directory."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}-{version}.tar.gz"
    top = f"{name}-{version}"
    entries = {"PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
               **files}
    with tarfile.open(path, "w:gz") as tar:
        for rel, text in sorted(entries.items()):
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{rel}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def compiled_sdist(directory: Path, name: str, version: str) -> Path:
    """An sdist whose setup.py declares a C extension (it needs a compiler)."""
    return make_sdist(directory, name, version, {
        "pyproject.toml": ('[build-system]\nrequires = ["setuptools"]\n'
                           'build-backend = "setuptools.build_meta"\n'
                           f'[project]\nname = "{name}"\nversion = "{version}"\n'),
        "setup.py": ("from setuptools import Extension, setup\n"
                     f"setup(ext_modules=[Extension('{name}', ['{name}.c'])])\n"),
        f"{name}.c": "#include <Python.h>\n",
    })


_BACKEND = '''\
import base64, hashlib, os, zipfile
NAME, VERSION = {name!r}, {version!r}
def _rec(data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()
def get_requires_for_build_wheel(config_settings=None):
    return []
def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    info = f"{{NAME}}-{{VERSION}}.dist-info"
    with open(f"{{NAME}}.py", "rb") as fh:
        module = fh.read()
    meta = f"Metadata-Version: 2.1\\nName: {{NAME}}\\nVersion: {{VERSION}}\\n"
    wheel = "Wheel-Version: 1.0\\nGenerator: t\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
    files = {{f"{{NAME}}.py": module, f"{{info}}/METADATA": meta.encode(),
             f"{{info}}/WHEEL": wheel.encode()}}
    record = "".join(f"{{p}},{{_rec(b)}},{{len(b)}}\\n" for p, b in files.items())
    files[f"{{info}}/RECORD"] = (record + f"{{info}}/RECORD,,\\n").encode()
    name = f"{{NAME}}-{{VERSION}}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return name
'''


def pure_sdist(directory: Path, name: str, version: str, module: str) -> Path:
    """A pure-Python sdist with an in-tree PEP 517 backend: it builds offline."""
    return make_sdist(directory, name, version, {
        "pyproject.toml": ('[build-system]\nrequires = []\nbuild-backend = "backend"\n'
                           'backend-path = ["."]\n'),
        "backend.py": _BACKEND.format(name=name, version=version),
        f"{name}.py": module,
    })


def tar_names(path: Path) -> list[str]:
    """Entry names of a (gzip) tar, in archive order."""
    with tarfile.open(path) as tar:
        return tar.getnames()


def read_json(data: bytes) -> dict[str, object]:
    """Parse a JSON object."""
    parsed = json.loads(data)
    assert isinstance(parsed, dict)
    return parsed


@dataclass
class Traffic:
    """What a registry client sent: request count and body bytes by method."""

    requests: int = 0
    body_bytes: int = 0

    def hook(self, request: httpx.Request) -> None:
        self.requests += 1
        if request.method in ("PUT", "PATCH", "POST"):
            # A blob's PATCH streams its body: its declared length is what is sent.
            self.body_bytes += int(request.headers.get("content-length") or 0)
