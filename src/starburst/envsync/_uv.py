"""Find and run the ``uv`` binary that the ``uv`` Python package ships.

The resolver and installer of environment sync are uv's: it resolves and
installs for a platform other than the running one
(``--python-platform``), which pip cannot do for a whole environment.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .errors import EnvironmentBuildError

__all__ = ["UvResult", "run_uv", "uv_binary"]

# A cold resolve or install of a large scientific stack downloads hundreds
# of MiB; half an hour is a stuck process, not a slow network.
_TIMEOUT_S = 1800.0


@dataclass(frozen=True, slots=True)
class UvResult:
    """What a uv run printed. ``returncode`` is non-zero on failure."""

    returncode: int
    stdout: str
    stderr: str


def uv_binary() -> str:
    """Path of the uv executable.

    Raises:
        EnvironmentBuildError: the ``uv`` package is not installed.
    """
    try:
        import uv
    except ImportError as exc:
        raise EnvironmentBuildError(
            "building worker images needs uv: pip install 'starburst-cloud[aws]' "
            "(or pip install uv)") from exc
    try:
        return uv.find_uv_bin()
    except FileNotFoundError as exc:
        raise EnvironmentBuildError(
            f"the uv package is installed but its binary is missing ({exc}); "
            "reinstall it with pip install --force-reinstall uv") from exc


def run_uv(args: Sequence[str], *, env: Mapping[str, str] | None = None,
           cwd: str | None = None) -> UvResult:
    """Run ``uv <args>`` and capture its output; never raises for a uv failure.

    Args:
        args: arguments after ``uv``.
        env: extra environment variables (on top of this process's).
        cwd: working directory.

    Raises:
        EnvironmentBuildError: uv could not be started or ran past the timeout.
    """
    full_env = dict(os.environ)
    # uv's own progress bars and colours would only clutter captured errors.
    full_env.update({"NO_COLOR": "1", "UV_NO_PROGRESS": "1"})
    if env:
        full_env.update(env)
    try:
        proc = subprocess.run([uv_binary(), *args], capture_output=True, text=True,
                              env=full_env, cwd=cwd, timeout=_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvironmentBuildError(f"could not run uv {' '.join(args[:2])}: {exc}") from exc
    return UvResult(proc.returncode, proc.stdout, proc.stderr)
