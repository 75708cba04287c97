"""Snapshot of the running interpreter: what is installed, at which version.

The snapshot is the *input* of the image: every installed distribution
with its exact version (the constraints of the resolver), the Python minor
version and the target platform. It never asks an index anything.

Distributions installed from the user's own disk (editable installs, a
``pip install ./dir``, a local wheel file, a VCS checkout) are kept apart
in :attr:`Snapshot.local`: no index can rebuild them, and they change with
every edit, so they travel with each session as a code archive
(:mod:`starburst.envsync.code`) instead of being baked into the image.
starburst itself is left out of both lists: it always gets its own layer
built from the running version (:mod:`starburst.envsync.selfwheel`).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from .target import Target

__all__ = [
    "SELF_DISTRIBUTION",
    "Dependency",
    "Distribution",
    "LocalDistribution",
    "Snapshot",
    "canonical_name",
    "take_snapshot",
]

#: The distribution name of starburst itself (the import name is ``starburst``).
SELF_DISTRIBUTION = "starburst-cloud"

_NAME_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_MAPPING_RE = re.compile(r"^MAPPING\s*(?::[^=]*)?=\s*(\{.*?\})\s*$", re.MULTILINE | re.DOTALL)


def canonical_name(name: str) -> str:
    """PEP 503 normalised name: ``Scikit_Learn`` -> ``scikit-learn``."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True, slots=True)
class Dependency:
    """One ``Requires-Dist`` entry, reduced to what the resolver step needs.

    Attributes:
        name: canonical name of the required distribution.
        conditional: the requirement carries an environment marker (a
            platform, a Python version or an extra), so it may not apply
            on the target.
    """

    name: str
    conditional: bool


@dataclass(frozen=True, slots=True)
class Distribution:
    """An installed distribution that an index can provide.

    Attributes:
        name: canonical name.
        version: the exact installed version.
        pure: every wheel tag it was installed from is ``*-none-any``: it
            holds no compiled code, so building it from a source
            distribution works on any platform. False when unknown.
        requires: its dependencies (names only).
    """

    name: str
    version: str
    pure: bool = False
    requires: tuple[Dependency, ...] = ()


@dataclass(frozen=True, slots=True)
class LocalDistribution:
    """A distribution installed from the user's disk or a VCS, shipped as code.

    Attributes:
        name: canonical name.
        version: installed version.
        kind: ``editable``, ``directory``, ``archive`` or ``vcs``.
        url: the ``direct_url.json`` URL it was installed from.
        root: the project directory for editable and directory installs.
        modules: ``(import name, path)`` of each top-level module or
            package it provides, where found.
    """

    name: str
    version: str
    kind: str
    url: str
    root: Path | None = None
    modules: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The environment to reproduce on a target platform.

    Attributes:
        target: platform and Python version of the workers.
        distributions: index-installable distributions, sorted by name.
        local: distributions shipped in the code archive, sorted by name.
        excluded: names left out on request (``exclude=``).
    """

    target: Target
    distributions: tuple[Distribution, ...]
    local: tuple[LocalDistribution, ...] = ()
    excluded: tuple[str, ...] = field(default=())

    def requirements(self) -> str:
        """The ``requirements.in`` text: one name per line."""
        return "".join(f"{d.name}\n" for d in self.distributions)

    def constraints(self) -> str:
        """The constraints text: every distribution pinned to its installed version."""
        return "".join(f"{d.name}=={d.version}\n" for d in self.distributions)

    def key(self) -> str:
        """sha256 of everything the resolver sees; equal snapshots resolve alike."""
        payload = {
            "target": [self.target.arch, self.target.version],
            "dists": [[d.name, d.version, d.pure] for d in self.distributions],
            "deps": [[d.name, [[r.name, r.conditional] for r in d.requires]]
                     for d in self.distributions],
        }
        data = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(data).hexdigest()


def take_snapshot(platform: str = "x86_64", *, python: str | None = None,
                  exclude: Iterable[str] = (), path: list[str] | None = None) -> Snapshot:
    """Snapshot the distributions importable by this interpreter.

    Args:
        platform: target architecture, ``x86_64`` or ``arm64``.
        python: target Python version, ``"3.11"`` or exact (``"3.11.7"``);
            the running interpreter's exact release by default.
        exclude: distribution names to leave out (for instance a
            macOS-only package the workers never import).
        path: where to look for distributions; ``sys.path`` by default.

    Returns:
        The snapshot; distributions found twice on the path count once,
        the first one wins, as for imports.
    """
    target = Target.of(platform, python)
    skip = {canonical_name(n) for n in exclude}
    seen: set[str] = set()
    dists: list[Distribution] = []
    local: list[LocalDistribution] = []
    for dist in importlib.metadata.distributions(path=path) if path is not None \
            else importlib.metadata.distributions():
        raw = dist.metadata["Name"]
        if not raw:
            continue
        name = canonical_name(raw)
        if name in seen:
            continue
        seen.add(name)
        if name == SELF_DISTRIBUTION or name in skip:
            continue
        version = dist.version
        direct = direct_url(dist)
        if direct is not None:
            local.append(_local(dist, name, version, direct))
            continue
        dists.append(Distribution(name=name, version=version, pure=_is_pure(dist),
                                  requires=_dependencies(dist)))
    dists.sort(key=lambda d: d.name)
    local.sort(key=lambda d: d.name)
    return Snapshot(target=target, distributions=tuple(dists), local=tuple(local),
                    excluded=tuple(sorted(skip)))


def direct_url(dist: importlib.metadata.Distribution) -> dict[str, object] | None:
    """The parsed ``direct_url.json`` when the install came from disk or a VCS.

    Archives downloaded over http(s) are no different from an index
    install except for the URL; they are still shipped as code, because the
    target cannot be resolved from an index that never had them.
    """
    text = dist.read_text("direct_url.json")
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) and "url" in data else None


def _local(dist: importlib.metadata.Distribution, name: str, version: str,
           direct: dict[str, object]) -> LocalDistribution:
    url = str(direct["url"])
    dir_info = direct.get("dir_info")
    if isinstance(dir_info, dict) and dir_info.get("editable"):
        kind = "editable"
    elif "vcs_info" in direct:
        kind = "vcs"
    elif isinstance(dir_info, dict):
        kind = "directory"
    else:
        kind = "archive"
    parsed = urlparse(url)
    root = Path(unquote(parsed.path)) if parsed.scheme == "file" and kind in (
        "editable", "directory") else None
    names = _top_level_names(dist)
    modules: list[tuple[str, str]] = []
    for module, location in sorted(names.items()):
        where = location or _locate(module)
        if where:
            modules.append((module, where))
    return LocalDistribution(name=name, version=version, kind=kind, url=url, root=root,
                             modules=tuple(modules))


def _top_level_names(dist: importlib.metadata.Distribution) -> dict[str, str | None]:
    """Import names a distribution provides, with their path when known.

    Sources, in order: ``top_level.txt`` (setuptools), the finder mapping of
    a setuptools editable install, the directories a ``.pth`` file adds
    (hatchling, flit and legacy editables), and the installed RECORD.
    """
    names: dict[str, str | None] = {}
    top = dist.read_text("top_level.txt")
    if top:
        names.update({line.strip(): None for line in top.splitlines()
                      if line.strip() and "/" not in line})
    for file in dist.files or ():
        parts = file.parts
        if not parts or parts[0] == ".." or parts[0].endswith((".dist-info", ".egg-info")):
            continue
        located = Path(str(file.locate()))
        if file.name.startswith("__editable__") and file.suffix == ".py":
            names.update(_finder_mapping(located))
        elif file.suffix == ".pth":
            names.update(_pth_modules(located))
        elif len(parts) > 1 or file.suffix == ".py":
            head = parts[0]
            if head == "__pycache__" or head.endswith(".data"):
                continue
            # The installed location of the top-level package or module itself.
            where = located.parents[len(parts) - 2] if len(parts) > 1 else located
            if names.get(head.removesuffix(".py")) is None:
                names[head.removesuffix(".py")] = str(where)
    return names


def _finder_mapping(finder: Path) -> dict[str, str | None]:
    try:
        match = _MAPPING_RE.search(finder.read_text(encoding="utf-8"))
        mapping = ast.literal_eval(match.group(1)) if match else {}
    except (OSError, ValueError, SyntaxError):
        return {}
    return {str(k): str(v) for k, v in mapping.items()} if isinstance(mapping, dict) else {}


def _pth_modules(pth: Path) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    try:
        lines = pth.read_text(encoding="utf-8").splitlines()
    except OSError:
        return found
    for line in lines:
        entry = Path(line.strip())
        if not line.strip() or line.startswith(("#", "import")) or not entry.is_dir():
            continue
        for child in sorted(entry.iterdir()):
            if child.is_dir() and (child / "__init__.py").is_file():
                found[child.name] = str(child)
            elif child.suffix == ".py" and child.stem.isidentifier():
                found[child.stem] = str(child)
    return found


def _locate(module: str) -> str | None:
    """Directory of a package or file of a module, found without importing it."""
    if not module.isidentifier():
        return None
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return str(next(iter(spec.submodule_search_locations)))
    return spec.origin if spec.origin and spec.has_location else None


def _is_pure(dist: importlib.metadata.Distribution) -> bool:
    wheel = dist.read_text("WHEEL")
    if not wheel:
        return False
    tags = [line.split(":", 1)[1].strip() for line in wheel.splitlines()
            if line.lower().startswith("tag:")]
    return bool(tags) and all(t.endswith("-none-any") for t in tags)


def _dependencies(dist: importlib.metadata.Distribution) -> tuple[Dependency, ...]:
    deps: dict[str, bool] = {}
    for line in dist.requires or ():
        match = _NAME_RE.match(line)
        if not match:
            continue
        name = canonical_name(match.group(1))
        conditional = ";" in line
        # Unconditional anywhere wins: the dependency applies on every platform.
        deps[name] = deps.get(name, True) and conditional
    return tuple(Dependency(n, c) for n, c in sorted(deps.items()))
