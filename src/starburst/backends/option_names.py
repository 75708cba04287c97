"""Which backend takes which option: the error for an option a backend does not take.

It lives with the backends because only they know their options (each
backend module lists its own); :mod:`starburst.options` stays free of any
backend import.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable

from ..config_files import keys_of
from ..exceptions import ConfigurationError
from ..options import ExecutorOptions

__all__ = ["unknown_options_error"]


def _cloud_option_names() -> dict[str, str]:
    """Backend option -> the backend that takes it, from each backend's own list.

    Read from the backend modules when they import (the AWS extra is
    installed), else from the options that files may set.
    """
    names = {key.name: "fargate" for key in keys_of("backend")}
    names.update((key.name, "fargate") for key in keys_of("aws"))
    try:
        from ..aws.config import FIELDS
        from . import _environment, batch, fargate
    except ImportError:  # pragma: no cover - without the aws extra
        return names
    for name in (*FIELDS, *fargate._EXTRA, *_environment.OPTION_NAMES):
        names.setdefault(name, "fargate")
    for name in batch._EXTRA:
        names.setdefault(name, "fargate (GPU workers on AWS Batch)")
    return names


def _executor_option_names() -> list[str]:
    """The options of ``Executor(...)`` itself (those of :meth:`ExecutorOptions.build`)."""
    params = inspect.signature(ExecutorOptions.build).parameters
    return sorted(name for name, p in params.items() if p.kind is p.KEYWORD_ONLY)


def unknown_options_error(backend: str, names: Iterable[str]) -> ConfigurationError:
    """The error for options ``backend`` does not take, saying truly where each applies."""
    given = sorted(names)
    owners = _cloud_option_names()
    elsewhere = [n for n in given if n in owners and owners[n] != backend]
    unknown = [n for n in given if n not in owners]
    parts = [f"{name} applies to backend={owners[name].split(' ')[0]!r} only"
             + (f" ({owners[name].split(' ', 1)[1].strip('()')})" if " " in owners[name] else "")
             for name in elsewhere]
    if unknown:
        parts.append(
            f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not an option of "
            "any backend (check the spelling; Executor options: "
            f"{', '.join(_executor_option_names())})")
    return ConfigurationError(
        f"the {backend} backend takes no option(s) {', '.join(given)}: {'; '.join(parts)}")
