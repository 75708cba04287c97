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

What stays out (:attr:`CodeArchive.skipped` lists it, and the client says
so once): dotfiles and dot-directories (``.env``, ``.git``, ``.aws``...),
key and certificate files (``*.pem``, ``*.key``, ``*.p12``, ``*.pfx``),
anything named like ``*credentials*``, and, for a package in a git work
tree, whatever git ignores there (``git check-ignore``: ``.gitignore``,
``.git/info/exclude``, the global excludes; without git, only the fixed
rules apply). Caches (``__pycache__``, ``*.pyc``) are left out silently.

On the worker the archive is unpacked into a private directory (0700)
of its own, made fresh for the session (:func:`private_code_dir`) and
removed when the worker exits.

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
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ..private_files import make_dirs, make_private_dir
from .snapshot import Snapshot

__all__ = ["CodeArchive", "apply_code_archive", "build_code_archive", "collect_code",
           "private_code_dir"]

# The zip epoch: the earliest timestamp a zip entry can hold.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
# Build caches: never user code, left out without a word.
_CACHE_DIRS = frozenset({"__pycache__"})
_SKIP_SUFFIXES = (".pyc", ".pyo")
# Files that hold secrets more often than code: keys and certificates (a
# .pem may be either; the workers need neither from the code archive).
_SECRET_SUFFIXES = (".pem", ".key", ".p12", ".pfx")
_SECRET_WORD = "credentials"
# How long `git check-ignore` may take on a big package before the fixed
# rules alone apply (it answers in milliseconds on any real package).
_GIT_TIMEOUT = 30.0
# How many skipped paths the client's note names (the rest are counted).
_NOTE_PATHS = 5
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
        skipped: archive paths left out as private or ignored (dotfiles, keys,
            credentials, what git ignores), sorted; a directory left out
            whole ends in ``/``.
    """

    path: Path
    digest: str
    modules: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()

    def skipped_note(self) -> str | None:
        """The one line the client shows about :attr:`skipped`, None when nothing was."""
        if not self.skipped:
            return None
        shown = ", ".join(self.skipped[:_NOTE_PATHS])
        more = len(self.skipped) - _NOTE_PATHS
        return (f"the code archive leaves out {len(self.skipped)} private or git-ignored "
                f"path(s): {shown}{f' and {more} more' if more > 0 else ''} (dotfiles, "
                "keys, credentials and what .gitignore ignores never ship; rename or move "
                "a file the workers need)")


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
        out_dir: where the zip goes; by default ``code/`` in the user's starburst
            cache (``STARBURST_CACHE_DIR``), private to the user.
        modules: the module table to walk (``sys.modules`` by default).
    """
    code = collect_code(snapshot, cwd=cwd, modules=modules)
    if not code:
        return None
    native_ok = _native_matches(snapshot)
    files: dict[str, Path] = {}
    warnings: list[str] = []
    skipped: list[str] = []
    for name, location in code.items():
        kept, left_out = _files_of(name, location)
        skipped.extend(left_out)
        for arcname, path in kept:
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
    if out_dir is None:
        from .cache import default_cache_dir  # the client's side only (platformdirs)

        folder = default_cache_dir() / "code"
        make_dirs(folder)
    else:
        folder = out_dir
        folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"code-{digest[:16]}.zip"
    # Written every time (never trusted because it exists): the bytes are what
    # the digest names.
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
    return CodeArchive(path=path, digest=digest, modules=tuple(code), warnings=tuple(warnings),
                       skipped=tuple(sorted(skipped)))


def private_code_dir(session: str) -> Path:
    """A fresh private directory (0700) for one worker's copy of the session's code.

    Made by ``mkdtemp`` (a random name, created exclusively), so no other user
    can have made it first or read what is unpacked there. The worker removes it
    when it exits.
    """
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in session)[:64]
    return Path(tempfile.mkdtemp(prefix=f"starburst-code-{safe}-"))


def apply_code_archive(path: str | Path, *, extract_to: Path | None = None) -> Path:
    """Worker side: unpack a code archive once and put it first on ``sys.path``.

    Extraction (rather than importing from the zip) keeps ``__file__``
    paths real, so package data and extension modules work. The directory
    is named by the archive's digest and created atomically, so task
    processes sharing ``extract_to`` unpack it once and never see half of it.

    Args:
        path: the zip.
        extract_to: a private directory (0700) to unpack into: made if missing;
            one that is a link, another user's or writable by others is refused.
            A fresh :func:`private_code_dir` by default.

    Returns:
        The directory now at ``sys.path[0]``.

    Raises:
        ValueError: the archive holds an absolute path or one with ``..``.
        PermissionError: ``extract_to`` is not a private directory of this user.
    """
    archive = Path(path)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    base = make_private_dir(extract_to) if extract_to is not None else private_code_dir("code")
    target = base / digest[:16]
    if not target.is_dir():
        staging = Path(tempfile.mkdtemp(prefix=f".{digest[:16]}-", dir=base))
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                parts = Path(member).parts
                if Path(member).is_absolute() or ".." in parts:
                    _rmtree(staging)
                    raise ValueError(f"code archive {archive} holds an unsafe path {member!r}")
            zf.extractall(staging)
        try:
            staging.rename(target)
        except OSError:  # another task process won the race: its copy is identical
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


def _private(name: str) -> bool:
    """Whether a file or directory name looks private: never shipped."""
    lowered = name.lower()
    return (name.startswith(".") or lowered.endswith(_SECRET_SUFFIXES)
            or _SECRET_WORD in lowered)


def _files_of(name: str, location: Path) -> tuple[list[tuple[str, Path]], list[str]]:
    """``(arcname, file)`` of what ships of one top-level module, and the arcnames left out.

    A directory left out is one entry ending in ``/``, not one per file in it.
    """
    if location.is_file():
        if _private(location.name):
            return [], [location.name]
        ignored = _git_ignored(location.parent, [location])
        return ([], [location.name]) if location in ignored else ([(location.name, location)], [])
    files: list[tuple[str, Path]] = []
    dirs: list[tuple[str, Path]] = []
    skipped: list[str] = []
    for dirpath, dirnames, filenames in os.walk(location):
        here = Path(dirpath)
        rel_dir = here.relative_to(location).as_posix()
        prefix = name if rel_dir == "." else f"{name}/{rel_dir}"
        kept_dirs = []
        for d in sorted(dirnames):
            if d in _CACHE_DIRS:
                continue
            if _private(d):
                skipped.append(f"{prefix}/{d}/")
                continue
            kept_dirs.append(d)
            dirs.append((f"{prefix}/{d}/", here / d))
        dirnames[:] = kept_dirs
        for filename in sorted(filenames):
            if filename.endswith(_SKIP_SUFFIXES):
                continue
            if _private(filename):
                skipped.append(f"{prefix}/{filename}")
                continue
            files.append((f"{prefix}/{filename}", here / filename))
    ignored = _git_ignored(location, [p for _, p in dirs] + [p for _, p in files])
    if ignored:
        gone = sorted(arc for arc, p in dirs if p in ignored)
        skipped.extend(g for g in gone if not any(g != o and g.startswith(o) for o in gone))
        out: list[tuple[str, Path]] = []
        for arcname, path in files:
            if any(arcname.startswith(g) for g in gone):
                continue
            if path in ignored:
                skipped.append(arcname)
                continue
            out.append((arcname, path))
        files = out
    return files, skipped


def _git_ignored(where: Path, paths: list[Path]) -> set[Path]:
    """Those of ``paths`` that git ignores in the work tree holding ``where`` (none outside one).

    Asks git itself (``check-ignore``: ``.gitignore`` files, ``info/exclude``,
    the global excludes; a tracked file is never ignored). Without git, outside a
    work tree, or if git fails, nothing is.
    """
    if not paths:
        return set()
    try:
        done = subprocess.run(
            ["git", "-C", str(where), "check-ignore", "--stdin", "-z"],
            input=b"".join(os.fsencode(p) + b"\0" for p in paths),
            capture_output=True, timeout=_GIT_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError):
        return set()
    if done.returncode not in (0, 1):  # 1: nothing ignored; 128: not a work tree
        return set()
    return {Path(os.fsdecode(raw)) for raw in done.stdout.split(b"\0") if raw}


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
