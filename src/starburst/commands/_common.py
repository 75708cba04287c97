"""Helpers the commands share: JSON output (errors included), errors, rich tables.

Under ``--json`` a command's errors are JSON too, on stdout, so a script
that pipes the output into ``jq`` or ``json.loads`` always gets JSON:
``{"ok": false, "error": {"type": ..., "message": ..., "exit_code": ...}}``.
The ``starburst`` group does this for every command (see
:func:`json_error_handling`); a command only declares ``--json`` with
:func:`json_option`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from ..exceptions import StarburstError

__all__ = ["JSON_FLAG", "aws_errors", "echo_json", "error_json", "json_error_handling",
           "json_option", "region_option", "table"]

F = TypeVar("F", bound=Callable[..., Any])

#: The flag that asks for JSON output.
JSON_FLAG = "--json"
#: Key in the (shared) click context meta: the command line asked for JSON.
_JSON_META = "starburst.json"


def _remember_json(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.meta[_JSON_META] = True
    return value


def json_option(fn: F) -> F:
    """``--json``: the command prints JSON, and so do its errors.

    Eager, so the flag is known before any other option fails to convert.
    """
    return click.option(JSON_FLAG, "as_json", is_flag=True, is_eager=True,
                        callback=_remember_json,
                        help="Print JSON (errors too: {\"ok\": false, \"error\": ...}).")(fn)


def region_option(fn: F) -> F:
    return click.option("--region", default=None,
                        help="AWS region.  [default: STARBURST_REGION, AWS_REGION, the "
                             "config file, the AWS profile's]")(fn)


@contextmanager
def aws_errors() -> Iterator[None]:
    """starburst errors (and a missing aws extra) as click errors."""
    try:
        yield
    except ImportError as exc:
        raise click.ClickException(f"this command needs the aws extra ({exc}): "
                                   "pip install 'starburst-cloud[aws]'") from exc
    except StarburstError as exc:
        raise click.ClickException(str(exc)) from exc


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON (dates and paths as strings)."""
    click.echo(json.dumps(data, indent=2, default=str))


def error_json(exc: click.ClickException) -> dict[str, Any]:
    """The JSON form of a command's error.

    ``type`` is the starburst (or other) exception the click error was
    raised from, when there is one, else the click error's own class
    (``NoSuchOption``, ``BadParameter``, ``UsageError``...).
    """
    cause = exc.__cause__
    kind = type(cause).__name__ if cause is not None else type(exc).__name__
    return {"ok": False, "error": {"type": kind, "message": exc.format_message(),
                                   "exit_code": exc.exit_code}}


@contextmanager
def json_error_handling(ctx: click.Context, args: Sequence[str]) -> Iterator[None]:
    """Run a command; under ``--json`` print its error as JSON on stdout and exit.

    ``args`` is the raw command line below the group: ``--json`` there
    counts even when parsing failed before the option was read. A
    :class:`~starburst.exceptions.StarburstError` that escaped a command
    becomes a click error (message, exit 1) rather than a traceback.
    """
    try:
        try:
            yield
        except StarburstError as exc:
            raise click.ClickException(str(exc)) from exc
    except click.ClickException as exc:
        wanted = ctx.meta.get(_JSON_META) or JSON_FLAG in args[:_end_of_options(args)]
        if not wanted:
            raise
        echo_json(error_json(exc))
        ctx.exit(exc.exit_code)


def _end_of_options(args: Sequence[str]) -> int:
    """Index of ``--`` in ``args`` (what follows is not an option), else its length."""
    return list(args).index("--") if "--" in args else len(args)


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a rich table (plain when not a terminal)."""
    t = Table(title=title, title_justify="left")
    for column in columns:
        t.add_column(column)
    for row in rows:
        t.add_row(*(str(v) for v in row))
    Console(width=140).print(t)


def checked_region(name: str, option: str = "--region") -> str:
    """``name`` if it is a known AWS region, else a click error that says so (the same
    check the Executor makes; skipped when the AWS extra is not installed)."""
    try:
        from ..aws.config import check_region
    except ImportError:
        return name
    try:
        return check_region(name, option)
    except StarburstError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from exc
