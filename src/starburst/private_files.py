"""Directories and files that only their owner can read, whatever the umask.

A local session keeps inline arguments, results and payloads on disk in
the shared temporary directory, and a worker unpacks the user's code
there: both are created private from the first moment (``mkdir(0o700)``,
``open(O_CREAT, 0o600)``) rather than tightened afterwards, so there is no
window in which another user can read them. The umask can only take bits
away from those modes, so no umask (not even 000) makes them readable by
anyone else; the process-wide umask is never changed.

This module uses the standard library only: workers import it.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

__all__ = ["DIR_MODE", "FILE_MODE", "check_private_dir", "make_dirs", "make_private_dir",
           "open_private"]

#: Owner only: read, write, enter.
DIR_MODE = 0o700
#: Owner only: read, write.
FILE_MODE = 0o600


def make_dirs(path: str | os.PathLike[str], *, within: str | os.PathLike[str] | None = None,
              ) -> None:
    """Create ``path`` and its missing parents, each ``0o700``; existing ones are left.

    For directories inside a private directory (their parent already keeps
    others out), so the common case costs one ``mkdir`` that finds it exists.

    Args:
        path: the directory to make.
        within: a directory that must exist already: it (and what holds it) is
            never made, so a directory removed under a worker is not made again.

    Raises:
        FileNotFoundError: ``within`` is gone.
    """
    here = os.path.normpath(os.fspath(path))
    if within is not None and here == os.path.normpath(os.fspath(within)):
        if not os.path.isdir(here):
            raise FileNotFoundError(errno.ENOENT, "the directory is gone", here)
        return
    try:
        os.mkdir(here, DIR_MODE)
    except FileExistsError:
        return
    except FileNotFoundError:
        parent = os.path.dirname(here)
        if not parent or parent == here:
            raise
        make_dirs(parent, within=within)
        try:
            os.mkdir(here, DIR_MODE)
        except FileExistsError:
            return


def check_private_dir(path: str | os.PathLike[str]) -> None:
    """Refuse a directory another user could have made, or can write into.

    Raises:
        PermissionError: ``path`` is a symbolic link, not a directory, owned by
            another user, or writable by the group or others.
        FileNotFoundError: ``path`` does not exist.
    """
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise PermissionError(f"{path} is a symbolic link, not a directory of its own")
    if not stat.S_ISDIR(info.st_mode):
        raise PermissionError(f"{path} is not a directory")
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        raise PermissionError(f"{path} belongs to another user (uid {info.st_uid})")
    if info.st_mode & 0o022:
        raise PermissionError(f"{path} is not private: others may write into it "
                              f"(mode {oct(stat.S_IMODE(info.st_mode))})")


def make_private_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (``0o700``, missing parents too) or take an existing one of ours.

    An existing directory must pass :func:`check_private_dir`; one only
    readable by others (made by an older starburst) is tightened to ``0o700``.

    Raises:
        PermissionError: as :func:`check_private_dir`.
    """
    target = Path(path)
    try:
        os.mkdir(target, DIR_MODE)
        return target
    except FileNotFoundError:
        make_dirs(target.parent)
        try:
            os.mkdir(target, DIR_MODE)
            return target
        except FileExistsError:
            pass
    except FileExistsError:
        pass
    check_private_dir(target)
    if stat.S_IMODE(os.lstat(target).st_mode) & 0o077:
        os.chmod(target, DIR_MODE)
    return target


def open_private(path: str | os.PathLike[str], flags: int) -> int:
    """``os.open`` of a file created ``0o600`` (never following a symbolic link)."""
    return os.open(path, flags | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
                   | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
