"""Executor options: parsing and validation before anything starts.

Sizes use Fargate's units: ``memory="8GB"`` means 8 GiB (8192 MiB).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

from .exceptions import ConfigurationError
from .settings import Settings

__all__ = ["ExecutorOptions", "parse_memory"]

_MEM = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(gib|gb|g|mib|mb|m)?\s*$", re.IGNORECASE)


def parse_memory(value: str | int | float) -> int:
    """Return memory in MiB. Strings take a unit (GB/GiB = GiB, MB/MiB = MiB);
    a bare number means GiB, as Fargate's console does.

    >>> parse_memory("8GB"), parse_memory("512MB"), parse_memory(0.5)
    (8192, 512, 512)
    """
    if isinstance(value, bool):
        raise ConfigurationError(f"memory={value!r} is not a size; use e.g. memory='8GB'")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ConfigurationError(f"memory={value!r} is not a size; use e.g. memory='8GB'")
        mib = value * 1024
    else:
        match = _MEM.match(str(value))
        if not match:
            raise ConfigurationError(
                f"memory={value!r} is not a size; use e.g. memory='8GB' or memory='512MB'")
        number, unit = float(match.group(1)), (match.group(2) or "gb").lower()
        mib = number * 1024 if unit.startswith("g") else number
    if mib <= 0 or mib != int(mib):
        raise ConfigurationError(f"memory={value!r} must be a positive whole number of MiB")
    return int(mib)


@dataclass(frozen=True)
class ExecutorOptions:
    """Validated options of an :class:`~starburst.Executor`.

    Backend-specific options (``region``, ``image``...) are in ``extra``
    and validated by the backend.
    """

    backend: str = "local"
    workers: int | None = None
    cpu: float = 1.0
    memory_mib: int = 2048
    chunksize: int | None = None
    max_attempts: int = 3
    task_timeout: float | None = None
    progress: bool | None = None
    detached: bool = False
    max_cost: float | None = None
    max_hourly_cost: float | None = None
    seed: int | None = None
    session_timeout: float = 24 * 3600.0
    debug: bool = False
    debug_keepalive: float = 600.0
    settings: Settings = field(default_factory=Settings)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, *, backend: str = "local", workers: int | None = None,
              cpu: float = 1, memory: str | int | float = "2GB", chunksize: int | None = None,
              max_attempts: int = 3, task_timeout: float | None = None,
              idle_timeout: float | None = None, progress: bool | None = None,
              detached: bool = False, settings: Settings | None = None,
              max_cost: float | None = None, max_hourly_cost: float | None = None,
              seed: int | None = None, session_timeout: float = 24 * 3600.0,
              debug: bool = False, debug_keepalive: float = 600.0,
              **extra: Any) -> ExecutorOptions:
        """Validate user-facing arguments; every error names the fix."""
        if not isinstance(backend, str):
            raise ConfigurationError(f"backend={backend!r} must be a name such as 'local'")
        if workers is not None and (
                isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ConfigurationError(
                f"workers={workers!r} must be a positive integer (or None for the default)")
        if (isinstance(cpu, bool) or not isinstance(cpu, (int, float))
                or not math.isfinite(cpu) or cpu <= 0):
            raise ConfigurationError(f"cpu={cpu!r} must be a positive number of vCPUs")
        if chunksize is not None and (
                isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1):
            raise ConfigurationError(
                f"chunksize={chunksize!r} must be a positive integer or None (automatic)")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) \
                or max_attempts < 1:
            raise ConfigurationError(
                f"max_attempts={max_attempts!r} must be an integer >= 1 (1 = no retry)")
        for name, value in (("task_timeout", task_timeout), ("idle_timeout", idle_timeout)):
            if value is not None and (isinstance(value, bool) or
                                      not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value <= 0):
                raise ConfigurationError(
                    f"{name}={value!r} must be a positive number of seconds or None")
        for name, value in (("max_cost", max_cost), ("max_hourly_cost", max_hourly_cost)):
            if value is not None and (isinstance(value, bool) or
                                      not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value <= 0):
                raise ConfigurationError(
                    f"{name}={value!r} must be a positive number of dollars or None")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)
                                 or seed < 0):
            raise ConfigurationError(f"seed={seed!r} must be a non-negative integer or None")
        if (isinstance(session_timeout, bool) or not isinstance(session_timeout, (int, float))
                or not math.isfinite(session_timeout) or session_timeout <= 0):
            raise ConfigurationError(
                f"session_timeout={session_timeout!r} must be a positive number of seconds")
        if not isinstance(debug, bool):
            raise ConfigurationError(f"debug={debug!r} must be True or False")
        if (isinstance(debug_keepalive, bool) or not isinstance(debug_keepalive, (int, float))
                or not math.isfinite(debug_keepalive) or debug_keepalive <= 0):
            raise ConfigurationError(
                f"debug_keepalive={debug_keepalive!r} must be a positive number of seconds "
                "(how long a worker whose task failed stays alive with debug=True)")
        base = settings or Settings.from_env()
        if idle_timeout is not None:
            base = Settings(**{**_settings_dict(base), "idle_timeout": float(idle_timeout)})
        return cls(backend=backend, workers=workers, cpu=float(cpu),
                   memory_mib=parse_memory(memory), chunksize=chunksize,
                   max_attempts=max_attempts,
                   task_timeout=None if task_timeout is None else float(task_timeout),
                   progress=progress, detached=detached, settings=base,
                   max_cost=None if max_cost is None else float(max_cost),
                   max_hourly_cost=None if max_hourly_cost is None else float(max_hourly_cost),
                   seed=seed, session_timeout=float(session_timeout), debug=debug,
                   debug_keepalive=float(debug_keepalive), extra=extra)

    def default_local_workers(self) -> int:
        """One worker per core this process may use."""
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            return os.cpu_count() or 1


def _settings_dict(settings: Settings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in settings.__dataclass_fields__}
