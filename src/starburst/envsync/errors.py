"""Errors of the environment sync engine, rooted in the starburst tree.

::

    StarburstError
     +-- EnvironmentBuildError                 the worker image could not be built or pushed
          +-- UnsupportedPackageError          a package has no build for the target
          |   (also ConfigurationError)        platform; the message says which and what to do
          +-- RegistryError                    the container registry refused or failed a call

Errors of the layers below (``uv`` exit codes, httpx transport errors,
botocore errors) are translated into these at the boundary and chained
with ``raise ... from exc``.
"""

from __future__ import annotations

from ..exceptions import ConfigurationError, StarburstError

__all__ = ["EnvironmentBuildError", "RegistryError", "UnsupportedPackageError"]


class EnvironmentBuildError(StarburstError):
    """The worker image for this environment could not be built or pushed."""


class UnsupportedPackageError(EnvironmentBuildError, ConfigurationError):
    """A package of the environment cannot be installed on the target platform.

    Typical cause: a package that needs a C compiler, published only as a
    source distribution (or with wheels for other platforms only). The
    message names the package, its version and the target platform, and
    lists the fixes: a ``base_image=`` that already holds the library, a
    version that publishes a wheel for the target, another ``platform=``,
    or leaving the package out of the snapshot (``take_snapshot(exclude=...)``).

    Attributes:
        package: the distribution name, normalised (``scikit-learn``).
        version: its version, when known.
        platform: the uv target platform (``x86_64-manylinux_2_28``).
    """

    def __init__(self, message: str, *, package: str, version: str | None,
                 platform: str) -> None:
        super().__init__(message)
        self.package = package
        self.version = version
        self.platform = platform

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_unsupported, (str(self), self.package, self.version, self.platform))


def _rebuild_unsupported(message: str, package: str, version: str | None,
                         platform: str) -> UnsupportedPackageError:
    return UnsupportedPackageError(message, package=package, version=version, platform=platform)


class RegistryError(EnvironmentBuildError):
    """A container registry call failed (refused, unauthorised, or the network).

    Attributes:
        status: the HTTP status code, when a response arrived.
        url: the URL of the failed request (credentials are never part of it).
    """

    def __init__(self, message: str, *, status: int | None = None, url: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.url = url

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_registry, (str(self), self.status, self.url))


def _rebuild_registry(message: str, status: int | None, url: str | None) -> RegistryError:
    return RegistryError(message, status=status, url=url)
