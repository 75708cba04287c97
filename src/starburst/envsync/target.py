"""The platform a worker image is built for: CPU architecture and exact Python version.

Everything that must agree between the laptop's resolver and the container
(``uv``'s target triple, the Python release packages are resolved for, the
OCI platform of the image, the base image's site-packages directory) is
derived here, once.

The Python version is the running interpreter's *exact* release
(``3.11.7``), not only its minor version: a package may require a patch
release (``pymdown-extensions 13.1.2`` needs ``>=3.11.5``), and uv reads a
bare ``3.11`` as ``3.11.0``. The base image is chosen with the same
release, so what was resolved is what runs.
"""

from __future__ import annotations

import platform as _platform
import re
import sys
from dataclasses import dataclass

from ..exceptions import ConfigurationError

__all__ = ["Target"]

# Accepted spellings of each architecture: starburst's own name first (it
# is Fargate's ``cpuArchitecture`` spelled the Python way), then Docker's
# and the kernel's.
_ARCH_ALIASES = {
    "x86_64": "x86_64", "amd64": "x86_64", "x86-64": "x86_64", "x64": "x86_64",
    "arm64": "arm64", "aarch64": "arm64", "graviton": "arm64",
}
# The python:3.X-slim images are Debian (glibc 2.36 and newer), so any wheel
# up to manylinux_2_28 runs there; 2_28 is also the newest policy that the
# big scientific projects publish, and what DESIGN.md fixes.
_MANYLINUX = "manylinux_2_28"
_UV_MACHINE = {"x86_64": "x86_64", "arm64": "aarch64"}
_OCI_ARCH = {"x86_64": "amd64", "arm64": "arm64"}
# "3.11" or "3.11.7": CPython 3 releases; pre-release suffixes are not base images.
_VERSION = re.compile(r"3\.(\d+)(?:\.(\d+))?")
_RUNNING_MINOR = f"{sys.version_info.major}.{sys.version_info.minor}"
_RUNNING_EXACT = _platform.python_version()


@dataclass(frozen=True, slots=True)
class Target:
    """A Linux container platform for workers.

    Attributes:
        arch: ``"x86_64"`` (Fargate's default) or ``"arm64"`` (Graviton).
        python: the Python minor version, ``"3.11"``; the running
            interpreter's by default, because pickled functions and
            installed wheels must match it.
        version: the exact Python release packages are resolved for and
            the base image carries, ``"3.11.7"``. Empty means: the running
            interpreter's release when ``python`` is its minor version,
            else ``python`` itself (uv then reads it as ``3.X.0``, the
            lowest release, so what resolves runs on every ``3.X``).
    """

    arch: str = "x86_64"
    python: str = _RUNNING_MINOR
    version: str = ""

    def __post_init__(self) -> None:
        if not self.version:
            exact = _RUNNING_EXACT if self.python == _RUNNING_MINOR else self.python
            object.__setattr__(self, "version", exact)

    @classmethod
    def of(cls, platform: str = "x86_64", python: str | None = None) -> Target:
        """Build a target from user spellings (``"aarch64"``, ``"3.12"``, ``"3.12.4"``).

        Raises:
            ConfigurationError: unknown architecture or malformed Python version.
        """
        arch = _ARCH_ALIASES.get(platform.lower().strip())
        if arch is None:
            raise ConfigurationError(
                f"unknown platform {platform!r}: use 'x86_64' (Fargate's default) or 'arm64' "
                "(Graviton)")
        version = (python or _RUNNING_EXACT).strip()
        match = _VERSION.fullmatch(version)
        if match is None:
            raise ConfigurationError(
                f"python version {version!r} is not a Python 3 version like '3.11' or "
                "'3.11.7'")
        minor = f"3.{int(match.group(1))}"
        exact = f"{minor}.{int(match.group(2))}" if match.group(2) is not None else ""
        return cls(arch=arch, python=minor, version=exact)

    @property
    def uv_platform(self) -> str:
        """``uv --python-platform`` value, e.g. ``x86_64-manylinux_2_28``."""
        return f"{_UV_MACHINE[self.arch]}-{_MANYLINUX}"

    @property
    def oci_arch(self) -> str:
        """OCI ``architecture`` of the image: ``amd64`` or ``arm64``."""
        return _OCI_ARCH[self.arch]

    @property
    def site_packages(self) -> str:
        """site-packages of the python:3.X-slim images, relative to ``/``.

        Layers are unpacked here (not in a PYTHONPATH directory) so that
        ``.pth`` files of installed packages are processed at start-up.
        """
        return f"usr/local/lib/python{self.python}/site-packages"

    @property
    def key(self) -> str:
        """A short stable name used in cache keys: ``linux-x86_64-py3.11.7``."""
        return f"linux-{self.arch}-py{self.version}"
