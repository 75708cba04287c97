"""Resolve the snapshot for the target platform and install it into a directory.

Two uv calls, both for the *target*, never for the laptop::

    snapshot --uv pip compile --python-platform <linux> -c pins--> Lock
    Lock     --uv pip install --target DIR --no-deps ----------> DIR (site-packages tree)

The snapshot's names are the requirements and its exact versions the
constraints, so the lock holds the laptop's versions wherever they exist
for Linux, drops what is only needed on the laptop's OS (a dependency
required under a marker, with no build for Linux: reported in
:attr:`Lock.warnings`) and adds what only Linux needs.

Wheels only, honestly: a compiled package must come as a wheel for the
target, because the laptop cannot compile for another platform and the
workers have no compiler. uv's ``--only-binary`` takes package names, so
every distribution that was *not* installed from a pure-Python wheel
(``*-none-any``) gets ``--only-binary <name>``; pure-Python packages may
still be built from a source distribution, which gives the same wheel on
any platform. A package the snapshot does not know (only the target needs
it) must have a wheel. Failures become :class:`UnsupportedPackageError`
naming the package, version, platform and the fixes.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ._uv import run_uv
from .errors import EnvironmentBuildError, UnsupportedPackageError
from .snapshot import Distribution, Snapshot, canonical_name
from .target import Target

__all__ = ["IndexOptions", "Lock", "install", "resolve"]

# Bump when the way a lock is computed changes, so cached locks are not reused.
# 2: resolved for the exact Python release (3.11.7), no longer for 3.11 (= 3.11.0).
_RESOLVER_VERSION = 2

_NAME = r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)"
_VERSION = r"(?:==(?P<version>[^\s,;]+?))?"
_NO_WHEEL = re.compile(
    r"(?:all versions of )?" + _NAME + _VERSION +
    r" (?:has|have) no (?P<what>usable wheels|wheels with a matching "
    r"(?:platform|Python ABI|Python implementation|Python version) tag)")
_NOT_FOUND = re.compile(_NAME + r" was not found in the (?:package registry|provided package "
                        r"locations)")
_NO_VERSION = re.compile(r"there is no version of " + _NAME + _VERSION + r"[\s,]")


@dataclass(frozen=True, slots=True)
class IndexOptions:
    """Where uv finds packages. The defaults use uv's (PyPI, or the user's uv config).

    Attributes:
        index_url: replaces the default index.
        extra_index_urls: searched as well.
        find_links: local directories or pages of wheels.
        no_index: use only ``find_links`` (what the tests do: they download nothing).
    """

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    no_index: bool = False

    def args(self) -> list[str]:
        """The uv command-line arguments for these options."""
        out: list[str] = []
        if self.index_url:
            out += ["--index-url", self.index_url]
        for url in self.extra_index_urls:
            out += ["--extra-index-url", url]
        for link in self.find_links:
            out += ["--find-links", link]
        if self.no_index:
            out.append("--no-index")
        return out


@dataclass(frozen=True, slots=True)
class Lock:
    """The exact distributions of the image, resolved for one target.

    Attributes:
        target: platform and Python version it was resolved for.
        pins: ``(name, version)`` pairs, sorted by name.
        buildable: names that may be built from a source distribution
            (pure-Python packages of the snapshot).
        warnings: what was left out or added, in sentences.
    """

    target: Target
    pins: tuple[tuple[str, str], ...]
    buildable: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def text(self) -> str:
        """``name==version`` lines: a requirements file uv installs from."""
        return "".join(f"{n}=={v}\n" for n, v in self.pins)

    def digest(self) -> str:
        """sha256 of the lock's content; part of the image tag."""
        payload = {"target": [self.target.arch, self.target.version], "pins": self.pins,
                   "buildable": self.buildable}
        return hashlib.sha256(_canonical(payload)).hexdigest()

    def version_of(self, name: str) -> str | None:
        """The pinned version of ``name``, or None when it is not in the lock."""
        key = canonical_name(name)
        return next((v for n, v in self.pins if n == key), None)

    def to_json(self) -> str:
        """Serialise for the local lock cache."""
        return json.dumps({"arch": self.target.arch, "python": self.target.python,
                           "version": self.target.version,
                           "pins": self.pins, "buildable": self.buildable,
                           "warnings": self.warnings}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Lock:
        """Inverse of :meth:`to_json`."""
        data = json.loads(text)
        return cls(target=Target(arch=data["arch"], python=data["python"],
                                 version=data.get("version", "")),
                   pins=tuple((str(n), str(v)) for n, v in data["pins"]),
                   buildable=tuple(data["buildable"]), warnings=tuple(data["warnings"]))


def resolve(snapshot: Snapshot, *, index: IndexOptions | None = None,
            cache_dir: Path | None = None, refresh: bool = False) -> Lock:
    """Resolve the snapshot for its target platform.

    Args:
        snapshot: what the laptop has installed.
        index: where packages come from.
        cache_dir: if given, a lock already resolved for the same snapshot
            and index is read from here (and a new one written), so an
            unchanged environment costs no uv call at all.
        refresh: resolve again even when a cached lock exists.

    Raises:
        UnsupportedPackageError: a package the workers need has no build
            for the target.
        EnvironmentBuildError: uv failed for another reason (its message is
            included).
    """
    index = index or IndexOptions()
    cache_file = None
    if cache_dir is not None:
        key = hashlib.sha256(_canonical(
            [_RESOLVER_VERSION, snapshot.key(), index.args()])).hexdigest()
        cache_file = cache_dir / "locks" / f"{key}.json"
        if cache_file.is_file() and not refresh:
            return Lock.from_json(cache_file.read_text(encoding="utf-8"))
    lock = _compile(snapshot, index)
    if cache_file is not None:
        _atomic_write(cache_file, lock.to_json())
    return lock


def install(lock: Lock, dest: Path, *, names: Iterable[str] | None = None,
            index: IndexOptions | None = None) -> None:
    """Install the lock (or the ``names`` of it) into ``dest`` for the lock's target.

    Dependencies are not followed (``--no-deps``): the lock is complete,
    and a subset install must not pull in more than asked.

    Raises:
        UnsupportedPackageError: a package has no wheel for the target and
            may not be built.
        EnvironmentBuildError: uv failed otherwise.
    """
    index = index or IndexOptions()
    wanted = {canonical_name(n) for n in names} if names is not None else None
    pins = [(n, v) for n, v in lock.pins if wanted is None or n in wanted]
    if not pins:
        return
    target = lock.target
    with tempfile.TemporaryDirectory(prefix="starburst-install-") as tmp:
        req = Path(tmp) / "lock.txt"
        req.write_text("".join(f"{n}=={v}\n" for n, v in pins), encoding="utf-8")
        args = ["pip", "install", "--target", str(dest), "--no-deps",
                *_target_args(target), "-r", str(req), *index.args()]
        args += _only_binary(n for n, _ in pins if n not in lock.buildable)
        result = run_uv(args)
    if result.returncode != 0:
        raise _failure(result.stderr, target, known={}, action="install")


def _compile(snapshot: Snapshot, index: IndexOptions) -> Lock:
    target = snapshot.target
    by_name = {d.name: d for d in snapshot.distributions}
    dropped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="starburst-resolve-") as tmp:
        req, cons = Path(tmp) / "requirements.in", Path(tmp) / "constraints.txt"
        # Each round either succeeds, drops one distribution, or raises.
        for _ in range(len(by_name) + 1):
            active = [d for d in snapshot.distributions if d.name not in dropped]
            req.write_text("".join(f"{d.name}\n" for d in active), encoding="utf-8")
            cons.write_text("".join(f"{d.name}=={d.version}\n" for d in active),
                            encoding="utf-8")
            args = ["pip", "compile", str(req), "-c", str(cons), "--no-header",
                    "--no-annotate", *_target_args(target), *index.args()]
            args += _only_binary(d.name for d in active if not d.pure)
            result = run_uv(args)
            if result.returncode == 0:
                return _lock_from(result.stdout, snapshot, dropped)
            failure = _parse(result.stderr)
            if failure is None or failure[0] not in by_name or failure[0] in dropped \
                    or not _droppable(failure[0], snapshot.distributions, dropped):
                raise _failure(result.stderr, target, known=by_name, action="resolve")
            name = failure[0]
            requirers = sorted({d.name for d in snapshot.distributions
                                for r in d.requires if r.name == name})
            dropped[name] = (
                f"left out {name}=={by_name[name].version}: it has no build for "
                f"{target.uv_platform} (Python {target.version}) and is required only "
                f"conditionally (by {', '.join(requirers)}), as on the laptop's platform")
    raise EnvironmentBuildError("the resolver did not converge; this is a starburst bug")


def _lock_from(output: str, snapshot: Snapshot, dropped: dict[str, str]) -> Lock:
    pins: dict[str, str] = {}
    for raw in output.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name, sep, version = line.partition("==")
        if not sep:
            raise EnvironmentBuildError(f"unexpected line in uv's lock output: {line!r}")
        pins[canonical_name(name)] = version.split(";", 1)[0].strip()
    known = {d.name: d for d in snapshot.distributions}
    warnings = list(dropped.values())
    added = sorted(n for n in pins if n not in known)
    if added:
        warnings.append("resolved for the target but not installed here: " +
                        ", ".join(f"{n}=={pins[n]}" for n in added))
    return Lock(target=snapshot.target, pins=tuple(sorted(pins.items())),
                buildable=tuple(sorted(n for n in pins if n in known and known[n].pure)),
                warnings=tuple(warnings))


def _droppable(name: str, dists: tuple[Distribution, ...], dropped: dict[str, str]) -> bool:
    """Whether ``name`` is needed only conditionally, so the target may go without it.

    True when every remaining requirer asks for it under a marker (a
    platform, a Python version or an extra) and at least one distribution
    requires it at all. A distribution that nobody requires was installed
    on purpose and is never dropped.
    """
    requirers = [(d.name, r.conditional) for d in dists for r in d.requires if r.name == name]
    if not requirers:
        return False
    return all(conditional or requirer in dropped for requirer, conditional in requirers)


def _parse(stderr: str) -> tuple[str, str | None, str] | None:
    """``(name, version, reason)`` of the first package uv names as unusable."""
    for pattern, kind in ((_NO_WHEEL, "wheel"), (_NOT_FOUND, "missing"),
                          (_NO_VERSION, "version")):
        match = pattern.search(stderr)
        if match:
            groups = match.groupdict()
            reason = kind
            if kind == "wheel":
                reason = "sdist" if groups["what"] == "usable wheels" else "platform"
            return canonical_name(match.group("name")), groups.get("version"), reason
    return None


def _exclude(name: str, arch: str) -> str:
    """How to leave ``name`` out of the workers' environment, as an Executor option."""
    return (f"leave it out with snapshot=starburst.envsync.take_snapshot('{arch}', "
            f"exclude=['{name}'])")


def _failure(stderr: str, target: Target, *, known: dict[str, Distribution],
             action: str) -> EnvironmentBuildError:
    parsed = _parse(stderr)
    detail = _tail(stderr)
    if parsed is None:
        return EnvironmentBuildError(f"uv could not {action} the environment for "
                                     f"{target.uv_platform} (Python {target.version}):\n{detail}")
    name, version, reason = parsed
    version = version or (known[name].version if name in known else None)
    spec = f"{name}=={version}" if version else name
    where = f"{target.uv_platform} (Python {target.version})"
    if reason == "missing":
        return UnsupportedPackageError(
            f"{spec} is not on the package index, so workers cannot install it. Fix: pass "
            f"index=starburst.envsync.IndexOptions(index_url=...) (or find_links=[...]) naming "
            f"the index it came from, or {_exclude(name, target.arch)} if the workers never "
            f"import it.\nuv said:\n{detail}",
            package=name, version=version, platform=target.uv_platform)
    if reason == "version":
        return UnsupportedPackageError(
            f"{spec} is not available from the package index for {where}. Fix: install a "
            f"published version locally (pip install '{name}!={version}'), or "
            f"{_exclude(name, target.arch)}.\nuv said:\n{detail}",
            package=name, version=version, platform=target.uv_platform)
    cause = ("is published only as source code that needs a compiler"
             if reason == "sdist" else "has wheels only for other platforms")
    unknown = "" if name in known else (
        f" ({name} is needed on the target but not installed here, so starburst cannot tell "
        f"whether it is pure Python; installing it locally lets starburst know)")
    other = "arm64" if target.arch == "x86_64" else "x86_64"
    return UnsupportedPackageError(
        f"{spec} has no wheel for {where}: it {cause}, and compiled packages must come as "
        f"wheels because workers have no compiler{unknown}. Fix it with one of: "
        f"base_image= an image that already has {name} installed; a version of {name} that "
        f"publishes a {target.uv_platform} wheel (pip install '{name}==<that version>'); "
        f"platform='{other}'; or {_exclude(name, target.arch)} if the workers never import it.\n"
        f"uv said:\n{detail}",
        package=name, version=version, platform=target.uv_platform)


def _target_args(target: Target) -> list[str]:
    # The exact release: uv reads "3.11" as 3.11.0, and a pin that requires
    # Python >= 3.11.5 would then be unsatisfiable although the workers run 3.11.7.
    args = ["--python-platform", target.uv_platform, "--python-version", target.version]
    # Source builds of pure-Python packages need an interpreter; the running
    # one has the target's minor version unless another was asked for.
    if f"{sys.version_info.major}.{sys.version_info.minor}" == target.python:
        args += ["--python", sys.executable]
    return args


def _only_binary(names: Iterable[str]) -> list[str]:
    out: list[str] = []
    for name in sorted(set(names)):
        out += ["--only-binary", name]
    return out


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{id(text)}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
