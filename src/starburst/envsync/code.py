"""The user's own code as a content-hashed archive that workers put first on sys.path.

The image holds what an index can rebuild; the user's code changes with
every edit and is shipped per session instead (a code edit never rebuilds
the image, and never runs stale code)::

    client: local distributions + modules imported from the working directory
            --> deterministic zip, named by its sha256 --> store
    worker: apply_code_archive(zip) --> extracted once per digest --> sys.path[0]

What goes in: the import packages of editable and other local installs
(:attr:`Snapshot.local`), and every top-level module or package in
``sys.modules`` whose file lies under the working directory or an
editable project root, except what lives in an environment's
site-packages or the standard library (a ``.venv`` inside the project is
not user code) and starburst itself (it is in the image). A package goes
in whole, so a submodule imported lazily on the worker is there too.

This module uses the standard library only: workers import it.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import os
import platform
import shutil
import site
import sys
import sysconfig
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from .snapshot import Snapshot

__all__ = ["CodeArchive", "apply_code_archive", "build_code_archive", "collect_code"]

# The zip epoch: the earliest timestamp a zip entry can hold.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_SKIP_DIRS = frozenset({"__pycache__", ".git", ".hg", ".svn", ".mypy_cache",
                        ".pytest_cache", ".ruff_cache", ".tox", ".nox"})
_SKIP_SUFFIXES = (".pyc", ".pyo")
_EXTENSION_SUFFIXES = (".so", ".pyd", ".dylib")
# Above this the archive is worth a warning: it travels with every session.
_LARGE_BYTES = 50 * 1024 * 1024
_OWN_PACKAGE = "starburst"
_MAIN_NAMES = frozenset({"__main__", "__mp_main__"})


@dataclass(frozen=True, slots=True)
class CodeArchive:
    """A built code archive.

    Attributes:
        path: the zip file, named ``code-<sha256[:16]>.zip``.
        digest: sha256 (hex) of the zip's bytes.
        modules: top-level import names inside, sorted.
        warnings: files left out and why, or a size warning.
    """

    path: Path
    digest: str
    modules: tuple[str, ...]
    warnings: tuple[str, ...] = ()


def collect_code(snapshot: Snapshot | None = None, *, cwd: Path | None = None,
                 modules: Mapping[str, ModuleType] | None = None) -> dict[str, Path]:
    """Top-level import name -> package directory or module file of the user's code."""
    found: dict[str, Path] = {}
    roots = [(cwd or Path.cwd()).resolve()]
    for local in snapshot.local if snapshot is not None else ():
        if local.root is not None:
            roots.append(local.root.resolve())
        for name, where in local.modules:
            if name != _OWN_PACKAGE and Path(where).exists():
                found.setdefault(name, Path(where))
    excluded = _environment_dirs()
    table = sys.modules if modules is None else modules
    # Python imports a package before its submodules, so top-level entries suffice.
    for name, module in list(table.items()):
        if "." in name or name in found or name == _OWN_PACKAGE or name in _MAIN_NAMES:
            continue
        location = _top_location(module)
        if location is None:
            continue
        resolved = location.resolve()
        if any(resolved.is_relative_to(d) for d in excluded):
            continue
        if any(resolved.is_relative_to(r) for r in roots):
            found[name] = resolved
    return dict(sorted(found.items()))


def build_code_archive(snapshot: Snapshot | None = None, *, cwd: Path | None = None,
                       out_dir: Path | None = None,
                       modules: Mapping[str, ModuleType] | None = None) -> CodeArchive | None:
    """Zip the user's code deterministically; None when there is none.

    Args:
        snapshot: supplies the local distributions and the target platform.
        cwd: the working directory whose modules count as user code.
        out_dir: where the zip goes; a temporary directory by default.
        modules: the module table to walk (``sys.modules`` by default).
    """
    code = collect_code(snapshot, cwd=cwd, modules=modules)
    if not code:
        return None
    native_ok = _native_matches(snapshot)
    files: dict[str, Path] = {}
    warnings: list[str] = []
    for name, location in code.items():
        for arcname, path in _files_of(name, location):
            if path.suffix in _EXTENSION_SUFFIXES and not native_ok:
                warnings.append(f"left out {arcname}: a compiled module built for this "
                                "machine cannot load on the workers' platform")
                continue
            files.setdefault(arcname, path)
    data = _zip(files)
    digest = hashlib.sha256(data).hexdigest()
    if len(data) > _LARGE_BYTES:
        warnings.append(f"the code archive is {len(data) // (1024 * 1024)} MiB: move data "
                        "files out of the packages under the working directory")
    folder = out_dir or Path(tempfile.gettempdir()) / "starburst-code"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"code-{digest[:16]}.zip"
    if not path.is_file():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return CodeArchive(path=path, digest=digest, modules=tuple(code), warnings=tuple(warnings))


def apply_code_archive(path: str | Path, *, extract_to: Path | None = None) -> Path:
    """Worker side: unpack a code archive once and put it first on ``sys.path``.

    Extraction (rather than importing from the zip) keeps ``__file__``
    paths real, so package data and extension modules work. The directory
    is named by the archive's digest and created atomically, so workers
    sharing a disk unpack it once and never see half of it.

    Returns:
        The directory now at ``sys.path[0]``.

    Raises:
        ValueError: the archive holds an absolute path or one with ``..``.
    """
    archive = Path(path)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    base = extract_to or Path(tempfile.gettempdir()) / "starburst-code"
    target = base / digest[:16]
    if not target.is_dir():
        base.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{digest[:16]}-", dir=base))
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                parts = Path(member).parts
                if Path(member).is_absolute() or ".." in parts:
                    raise ValueError(f"code archive {archive} holds an unsafe path {member!r}")
            zf.extractall(staging)
        try:
            staging.rename(target)
        except OSError:  # another worker won the race: its copy is identical
            _rmtree(staging)
    entry = str(target)
    if entry in sys.path:
        sys.path.remove(entry)
    sys.path.insert(0, entry)
    importlib.invalidate_caches()
    return target


def _top_location(module: ModuleType) -> Path | None:
    """The package directory or module file a top-level module was imported from."""
    paths = getattr(module, "__path__", None)
    file = getattr(module, "__file__", None)
    if file:
        path = Path(file)
        return path.parent if path.name.startswith("__init__.") and paths else path
    if paths:  # a namespace package: its first portion
        first = next(iter(paths), None)
        return Path(first) if first else None
    return None


def _files_of(name: str, location: Path) -> list[tuple[str, Path]]:
    if location.is_file():
        return [(location.name, location)]
    out: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(location):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for filename in sorted(filenames):
            if filename.endswith(_SKIP_SUFFIXES):
                continue
            path = Path(dirpath) / filename
            rel = path.relative_to(location).as_posix()
            out.append((f"{name}/{rel}", path))
    return out


def _zip(files: dict[str, Path]) -> bytes:
    """Deterministic zip: sorted names, fixed time, fixed attributes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for arcname in sorted(files):
            path = files[arcname]
            info = zipfile.ZipInfo(arcname, date_time=_ZIP_EPOCH)
            info.create_system = 3  # unix, so the mode bits below are honoured
            mode = 0o755 if os.access(path, os.X_OK) else 0o644
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    return buf.getvalue()


def _environment_dirs() -> list[Path]:
    """Directories whose modules belong to an environment, not to the user."""
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        value = sysconfig.get_paths().get(key)
        if value:
            dirs.add(value)
    dirs.update(site.getsitepackages() if hasattr(site, "getsitepackages") else [])
    user = site.getusersitepackages() if hasattr(site, "getusersitepackages") else None
    if isinstance(user, str):
        dirs.add(user)
    return [Path(d).resolve() for d in dirs if d]


def _native_matches(snapshot: Snapshot | None) -> bool:
    """Whether compiled modules of this machine can load on the workers."""
    arch = snapshot.target.arch if snapshot is not None else "x86_64"
    machine = {"amd64": "x86_64", "aarch64": "arm64"}.get(platform.machine().lower(),
                                                          platform.machine().lower())
    return sys.platform == "linux" and machine == arch


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
