"""starburst's own layer: the running version, installed from a wheel, always.

Workers must run the same starburst as the client (the protocol is
versioned, but a worker that differs by one edit is a debugging trap), so
the image never takes starburst from an index:

* installed editable (a developer checkout): ``uv build --wheel`` of the
  source tree, then ``uv pip install --target`` of that wheel;
* installed normally: the installed distribution's own files (bytecode
  and console scripts left out).

The layer is keyed by a content hash of the running version
(:func:`self_identity`), so an edit to starburst rebuilds this layer, and
only this layer.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from ._uv import run_uv
from .cache import LayerCache, cache_key
from .errors import EnvironmentBuildError
from .layers import BuildStats, Layer, layer_from_entries
from .layout import Entry, installed_distributions
from .snapshot import SELF_DISTRIBUTION, direct_url
from .target import Target

__all__ = ["SelfInstall", "self_identity", "self_layer"]

_SKIP_DIRS = frozenset({"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"})


@dataclass(frozen=True, slots=True)
class SelfInstall:
    """How the running starburst is installed.

    Attributes:
        version: its version string.
        identity: sha256 of its content (source files, or the RECORD hashes).
        source: the project directory when installed editable, else None.
        dist: the installed distribution.
    """

    version: str
    identity: str
    source: Path | None
    dist: importlib.metadata.Distribution | None = field(default=None, compare=False,
                                                         repr=False)


def self_identity(dist: importlib.metadata.Distribution | None = None) -> SelfInstall:
    """Identify the running starburst by content, cheaply (no build).

    Args:
        dist: the installed distribution; the one this interpreter imports by default.

    Raises:
        EnvironmentBuildError: starburst is not installed as a distribution.
    """
    if dist is None:
        try:
            dist = importlib.metadata.distribution(SELF_DISTRIBUTION)
        except importlib.metadata.PackageNotFoundError as exc:
            raise EnvironmentBuildError(
                f"starburst is imported from a path but not installed, so no wheel of it can "
                f"be built for the workers; run pip install -e . (or pip install "
                f"{SELF_DISTRIBUTION})") from exc
    source = _editable_root(dist)
    sha = hashlib.sha256(dist.version.encode())
    if source is not None:
        for path in _source_files(source):
            sha.update(path.relative_to(source).as_posix().encode() + b"\0")
            sha.update(hashlib.sha256(path.read_bytes()).digest())
    else:
        sha.update((dist.read_text("RECORD") or "").encode())
    return SelfInstall(version=dist.version, identity=sha.hexdigest(), source=source, dist=dist)


def self_layer(cache: LayerCache, target: Target, *, stats: BuildStats | None = None,
               installed: SelfInstall | None = None) -> Layer:
    """The layer with the running starburst, from the cache or built now."""
    stats = stats if stats is not None else BuildStats()
    me = installed or self_identity()
    member = f"{SELF_DISTRIBUTION}=={me.version}"
    key = cache_key("self", me.identity, target.key)
    with tempfile.TemporaryDirectory(prefix="starburst-self-") as tmp:
        work = Path(tmp)

        def entries() -> list[Entry]:
            start = time.perf_counter()
            site = work / "site"
            if me.source is not None:
                _install_built_wheel(me.source, site, work, target)
            else:
                _copy_installed(site, me.dist or importlib.metadata.distribution(
                    SELF_DISTRIBUTION))
            stats.install_s += time.perf_counter() - start
            dists = installed_distributions(site, target)
            if SELF_DISTRIBUTION not in dists:
                raise EnvironmentBuildError(f"the starburst wheel did not install into {site}")
            return list(dists[SELF_DISTRIBUTION].entries)

        return layer_from_entries(cache, key, member, (member,), entries, stats)


def _editable_root(dist: importlib.metadata.Distribution) -> Path | None:
    data = direct_url(dist)
    if data is None:
        return None
    url = urlparse(str(data.get("url", "")))
    info = data.get("dir_info")
    editable = isinstance(info, dict) and info.get("editable")
    return Path(unquote(url.path)) if editable and url.scheme == "file" else None


def _source_files(root: Path) -> list[Path]:
    """Files that make up the wheel of an editable checkout: pyproject and the package."""
    files = [root / "pyproject.toml"] if (root / "pyproject.toml").is_file() else []
    import starburst

    package = Path(starburst.__file__).parent
    files += [p for p in package.rglob("*") if p.is_file()
              and not _SKIP_DIRS.intersection(p.relative_to(package).parts)
              and p.suffix not in (".pyc", ".pyo")]
    return sorted(files)


def _install_built_wheel(source: Path, site: Path, work: Path, target: Target) -> None:
    out = work / "wheel"
    result = run_uv(["build", "--wheel", "--out-dir", str(out), str(source)])
    wheels = sorted(out.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        raise EnvironmentBuildError(
            f"could not build a wheel of starburst from its checkout {source} "
            f"(uv build --wheel):\n{result.stderr.strip()[-3000:]}")
    result = run_uv(["pip", "install", "--target", str(site), "--no-deps", "--no-index",
                     "--python-platform", target.uv_platform, "--python-version", target.version,
                     str(wheels[0])])
    if result.returncode != 0:
        raise EnvironmentBuildError(
            f"could not install the starburst wheel {wheels[0].name}:\n{result.stderr[-3000:]}")


def _copy_installed(site: Path, dist: importlib.metadata.Distribution) -> None:
    """Lay the installed distribution's files out as a ``--target`` directory would."""
    kept: list[list[str]] = []
    record_name = ""
    for file in dist.files or ():
        parts = file.parts
        if not parts or parts[0] == ".." or "__pycache__" in parts or file.suffix == ".pyc":
            continue
        if file.name == "RECORD" and parts[0].endswith(".dist-info"):
            record_name = file.as_posix()
            continue
        dest = site / file.as_posix()
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(str(file.locate())), dest)  # content and permission bits
        kept.append([file.as_posix(), f"{file.hash.mode}={file.hash.value}" if file.hash else "",
                     "" if file.size is None else str(file.size)])
    if not record_name:
        raise EnvironmentBuildError(f"the installed {SELF_DISTRIBUTION} has no RECORD file")
    with (site / record_name).open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows([*kept, [record_name, "", ""]])
