"""Executor options: parsing and validation before anything starts.

Sizes use Fargate's units: ``memory="8GB"`` means 8 GiB (8192 MiB).

:meth:`ExecutorOptions.resolve` (what ``Executor(...)`` and
``starburst.plan`` use) fills every option not given as an argument from,
in this order, ``STARBURST_<OPTION>`` in the environment, ``[tool.starburst]``
in the project's pyproject.toml and the user config file (see
:mod:`starburst.config_files`), before the defaults. The options files and
variables may set are :data:`FILE_OPTIONS` and the backend options of
:func:`starburst.config_files.keys_of` (``platform``... for Fargate, given
to that backend only). :meth:`ExecutorOptions.build` validates given values
only (``starburst.attach`` uses it: a session keeps the options it ran with).
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing.context
import os
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config_files import keys_of, load_layers
from .exceptions import ConfigurationError
from .settings import MAX_SESSION_TIMEOUT, Settings

__all__ = ["BACKEND_NAMES", "FILE_OPTIONS", "ExecutorOptions", "cap_local_workers",
           "local_worker_cap", "parse_memory"]

#: What ``backend=`` accepts: the names :func:`starburst.backends.known_backends`
#: registers (a test keeps the two equal; options stay free of backend imports).
BACKEND_NAMES = ("batch", "fargate", "local")

#: Executor options that ``STARBURST_<OPTION>``, ``[tool.starburst]`` and the
#: user config file may set (``idle_timeout`` and the other protocol
#: intervals are settings: ``STARBURST_IDLE_TIMEOUT``... in :mod:`.settings`).
FILE_OPTIONS: tuple[str, ...] = tuple(key.name for key in keys_of("executor"))

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


def _is_count(value: Any, minimum: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= minimum


def _is_positive(value: Any) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and math.isfinite(value) and value > 0)


def _check_backend(value: Any) -> None:
    if not isinstance(value, str):
        raise ConfigurationError(f"backend={value!r} must be a name such as 'local'")


def _check_workers(value: Any) -> None:
    if value is not None and not _is_count(value, 1):
        raise ConfigurationError(
            f"workers={value!r} must be a positive integer (or None for the default)")


def _check_cpu(value: Any) -> None:
    if not _is_positive(value):
        raise ConfigurationError(f"cpu={value!r} must be a positive number of vCPUs")


def _check_chunksize(value: Any) -> None:
    if value is not None and not _is_count(value, 1):
        raise ConfigurationError(
            f"chunksize={value!r} must be a positive integer or None (automatic)")


def _check_max_attempts(value: Any) -> None:
    if not _is_count(value, 1):
        raise ConfigurationError(
            f"max_attempts={value!r} must be an integer >= 1 (1 = no retry)")


def _seconds(name: str) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if value is not None and not _is_positive(value):
            raise ConfigurationError(
                f"{name}={value!r} must be a positive number of seconds or None")
    return check


def _dollars(name: str) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if value is not None and not _is_positive(value):
            raise ConfigurationError(
                f"{name}={value!r} must be a positive number of dollars or None")
    return check


def _check_seed(value: Any) -> None:
    if value is not None and not _is_count(value, 0):
        raise ConfigurationError(f"seed={value!r} must be a non-negative integer or None")


def _check_session_timeout(value: Any) -> None:
    if not _is_positive(value):
        raise ConfigurationError(
            f"session_timeout={value!r} must be a positive number of seconds")
    if value > MAX_SESSION_TIMEOUT:
        raise ConfigurationError(
            f"session_timeout={value!r} is longer than a week ({MAX_SESSION_TIMEOUT:.0f} s): "
            "SQS keeps a task message at most 14 days and starburst keeps run data 30 "
            "days, so a longer session would lose its work; split the run into sessions "
            "of at most a week")


def _flag(name: str, meaning: str) -> Callable[[Any], None]:
    """A check that ``name`` is a real bool: ``detached="no"`` is truthy and would run
    detached, so nothing but True and False is taken."""
    def check(value: Any) -> None:
        if not isinstance(value, bool):
            raise ConfigurationError(f"{name}={value!r} must be True or False ({meaning})")
    return check


_check_debug = _flag("debug", "keep the first worker whose task fails alive to debug it")


def _check_progress(value: Any) -> None:
    if value is not None and not isinstance(value, bool):
        raise ConfigurationError(
            f"progress={value!r} must be True, False or None (None: show a progress bar "
            "only on a terminal)")


def _check_settings(value: Any) -> None:
    if value is not None and not isinstance(value, Settings):
        hint = ""
        if isinstance(value, Mapping):
            hint = ("; pass starburst.Settings("
                    + ", ".join(f"{k}={v!r}" for k, v in value.items()) + ")")
        raise ConfigurationError(
            f"settings={value!r} must be a starburst.Settings (or None for the defaults), "
            f"not {type(value).__name__}{hint}")


def _check_initializer(value: Any) -> None:
    if value is not None and not callable(value):
        raise ConfigurationError(
            f"initializer={value!r} must be a callable (run once in each worker process "
            "before its first task) or None")


def _check_initargs(value: Any) -> None:
    if not isinstance(value, tuple):
        raise ConfigurationError(
            f"initargs={value!r} must be a tuple of the initializer's arguments, "
            f"e.g. initargs=({value!r},)")


def _check_max_tasks_per_child(value: Any) -> None:
    if value is not None and not _is_count(value, 1):
        raise ConfigurationError(
            f"max_tasks_per_child={value!r} must be a positive integer (tasks a worker "
            "process runs before a fresh one replaces it) or None (no limit)")


def _check_mp_context(value: Any) -> None:
    if value is not None and not isinstance(value, multiprocessing.context.BaseContext):
        raise ConfigurationError(
            f"mp_context={value!r} must be a multiprocessing context, such as "
            "multiprocessing.get_context('spawn'), or None")


def _check_debug_keepalive(value: Any) -> None:
    if not _is_positive(value):
        raise ConfigurationError(
            f"debug_keepalive={value!r} must be a positive number of seconds "
            "(how long a worker whose task failed stays alive with debug=True)")


#: One check per option, shared by :meth:`ExecutorOptions.build` (arguments)
#: and :meth:`ExecutorOptions.resolve` (values from the environment and files,
#: whose errors then name the variable or the file and line).
_CHECKS: dict[str, Callable[[Any], object]] = {
    "backend": _check_backend, "workers": _check_workers, "cpu": _check_cpu,
    "chunksize": _check_chunksize, "max_attempts": _check_max_attempts,
    "task_timeout": _seconds("task_timeout"), "idle_timeout": _seconds("idle_timeout"),
    "max_cost": _dollars("max_cost"), "max_hourly_cost": _dollars("max_hourly_cost"),
    "seed": _check_seed, "session_timeout": _check_session_timeout, "debug": _check_debug,
    "debug_keepalive": _check_debug_keepalive, "memory": parse_memory,
    "detached": _flag("detached", "keep working after this client exits"),
    "progress": _check_progress, "settings": _check_settings,
    "initializer": _check_initializer, "initargs": _check_initargs,
    "max_tasks_per_child": _check_max_tasks_per_child, "mp_context": _check_mp_context,
}

# Local workers at most, per core this process may use: each is a whole
# interpreter (tens of MiB, a fraction of a second to start); past a few per
# core, more only add memory and start-up time, and 10**9 would exhaust the
# process table. The floor lets a small machine still overlap I/O-bound tasks.
_LOCAL_WORKERS_PER_CORE = 8
_LOCAL_WORKERS_FLOOR = 32


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def local_worker_cap() -> int:
    """The most worker processes the local backend starts (more are capped, with a warning)."""
    return max(_LOCAL_WORKERS_FLOOR, _LOCAL_WORKERS_PER_CORE * _cores())


def cap_local_workers(workers: int, *, stacklevel: int = 2) -> int:
    """``workers``, or :func:`local_worker_cap` with a :class:`RuntimeWarning` when more.

    Capped rather than refused: ``workers=`` sized for Fargate still runs
    locally, on as many processes as this machine can hold.
    """
    cap = local_worker_cap()
    if workers <= cap:
        return workers
    warnings.warn(
        f"workers={workers} local worker processes would exhaust this machine: capped at "
        f"{cap} ({_LOCAL_WORKERS_PER_CORE} per core, at least {_LOCAL_WORKERS_FLOOR}; this "
        f"process may use {_cores()} cores). Pass workers= up to {cap}, or run on "
        "backend='fargate' for more", RuntimeWarning, stacklevel=stacklevel + 1)
    return cap


def _merge_max_workers(given: dict[str, Any]) -> None:
    """Fold ``max_workers`` (``ProcessPoolExecutor``'s name) into ``workers``, in place."""
    alias = given.pop("max_workers", None)
    if alias is None:
        return
    if not _is_count(alias, 1):
        raise ConfigurationError(
            f"max_workers={alias!r} must be a positive integer (or None for the default)")
    workers = given.get("workers")
    if workers is not None and workers != alias:
        raise ConfigurationError(
            f"max_workers={alias!r} and workers={workers!r} disagree; they are the same "
            "option (max_workers is ProcessPoolExecutor's name for it): pass one of them")
    given["workers"] = alias


@dataclass(frozen=True)
class ExecutorOptions:
    """Validated options of an :class:`~starburst.Executor`.

    Backend-specific options (``region``, ``image``...) are in ``extra``
    and validated by the backend. ``sources`` says where each option that
    files may set came from (``"argument"``, ``"environment"``, a file's
    path, ``"default"``); it is empty for options made by :meth:`build`.
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
    #: Run in each process that runs tasks, before its first task (as in
    #: ProcessPoolExecutor), with ``initargs``; shipped once per session.
    initializer: Callable[..., object] | None = None
    initargs: tuple[Any, ...] = ()
    #: Tasks a task process runs before a fresh one replaces it (None: no limit).
    max_tasks_per_child: int | None = None
    settings: Settings = field(default_factory=Settings)
    extra: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(cls, *, backend: str = "local", workers: int | None = None,
              cpu: float = 1, memory: str | int | float = "2GB", chunksize: int | None = None,
              max_attempts: int = 3, task_timeout: float | None = None,
              idle_timeout: float | None = None, progress: bool | None = None,
              detached: bool = False, settings: Settings | None = None,
              max_cost: float | None = None, max_hourly_cost: float | None = None,
              seed: int | None = None, session_timeout: float = 24 * 3600.0,
              debug: bool = False, debug_keepalive: float = 600.0,
              max_workers: int | None = None, mp_context: Any = None,
              initializer: Callable[..., object] | None = None,
              initargs: tuple[Any, ...] = (), max_tasks_per_child: int | None = None,
              **extra: Any) -> ExecutorOptions:
        """Validate user-facing arguments as given (no files, no environment);
        every error names the fix.

        ``max_workers`` is ``workers`` by ``ProcessPoolExecutor``'s name.
        ``mp_context`` is accepted (a multiprocessing context) on the local
        backend for drop-in compatibility and has no effect there: local
        workers are always fresh interpreters, as with the ``"spawn"`` start
        method, so nothing set up in this process is inherited.
        """
        merged: dict[str, Any] = {"workers": workers, "max_workers": max_workers}
        _merge_max_workers(merged)
        workers = merged["workers"]
        for name, value in (("backend", backend), ("workers", workers), ("cpu", cpu),
                            ("chunksize", chunksize), ("max_attempts", max_attempts),
                            ("task_timeout", task_timeout), ("idle_timeout", idle_timeout),
                            ("max_cost", max_cost), ("max_hourly_cost", max_hourly_cost),
                            ("seed", seed), ("session_timeout", session_timeout),
                            ("debug", debug), ("debug_keepalive", debug_keepalive),
                            ("detached", detached), ("progress", progress),
                            ("settings", settings), ("initializer", initializer),
                            ("initargs", initargs),
                            ("max_tasks_per_child", max_tasks_per_child),
                            ("mp_context", mp_context)):
            _CHECKS[name](value)
        if initargs and initializer is None:
            raise ConfigurationError(
                f"initargs={initargs!r} given without an initializer: pass initializer= "
                "(the function they are for) or drop initargs=")
        if mp_context is not None and backend != "local":
            raise ConfigurationError(
                f"mp_context= applies to the local backend only, not backend={backend!r} "
                "(its workers are not processes of this machine): drop it")
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
                   debug_keepalive=float(debug_keepalive), initializer=initializer,
                   initargs=tuple(initargs), max_tasks_per_child=max_tasks_per_child,
                   extra=extra)

    @classmethod
    def resolve(cls, *, environ: Mapping[str, str] | None = None, cwd: Path | None = None,
                **given: Any) -> ExecutorOptions:
        """The options of ``Executor(**given)``: each of :data:`FILE_OPTIONS` (and
        each backend option files may set) from the argument, else
        ``STARBURST_<OPTION>``, else ``[tool.starburst]``, else the user config
        file, else the default; then :meth:`build`.

        An argument of None means "not given". Backend options from the
        environment or files (``platform``...) go to the chosen backend only,
        so a project configured for Fargate still runs the local backend.

        Args:
            environ: the environment (default: ``os.environ``).
            cwd: where the search for pyproject.toml starts (default: the
                working directory).
            **given: the ``Executor`` arguments.

        Raises:
            ConfigurationError: a bad argument, or a bad value from a
                variable or a file (naming the variable, or the file and line).
        """
        given = dict(given)
        _merge_max_workers(given)  # before the files: an argument beats STARBURST_WORKERS
        layers = load_layers(environ=environ, cwd=cwd)
        values = dict(given)
        sources: dict[str, str] = {}
        for name in FILE_OPTIONS:
            found = layers.lookup(name, given.get(name))
            values.pop(name, None)
            if found is None:
                sources[name] = "default"
                continue
            if found.source != "argument":
                _check_from(name, found.value, found.where)
            values[name] = found.value
            sources[name] = found.source
        backend = values.get("backend", "local")
        if isinstance(backend, str):
            for key in keys_of("backend", backend):
                if any(given.get(n) is not None for n in (key.name, *key.aliases)):
                    sources[key.name] = "argument"
                    continue
                found = layers.lookup(key.name)
                if found is not None:
                    values[key.name] = found.value
                    sources[key.name] = found.source
        options = cls.build(**values)
        return dataclasses.replace(options, sources=sources)

    def default_local_workers(self) -> int:
        """One worker per core this process may use."""
        return _cores()


def _settings_dict(settings: Settings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in settings.__dataclass_fields__}


def _check_from(name: str, value: Any, where: str) -> None:
    """Check a value that came from a variable or a file; the error names ``where``."""
    try:
        _CHECKS[name](value)
        if name == "backend" and value not in BACKEND_NAMES:
            raise ConfigurationError(
                f"unknown backend {value!r}; choose one of: {', '.join(BACKEND_NAMES)}")
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None
