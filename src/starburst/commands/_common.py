"""Helpers the operations commands share: JSON output, errors, rich tables."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from ..exceptions import StarburstError

__all__ = ["aws_errors", "echo_json", "json_option", "region_option", "table"]

F = TypeVar("F", bound=Callable[..., Any])


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(fn)


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
    click.echo(json.dumps(data, indent=2, default=str))


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a rich table (plain when not a terminal)."""
    t = Table(title=title, title_justify="left")
    for column in columns:
        t.add_column(column)
    for row in rows:
        t.add_row(*(str(v) for v in row))
    Console(width=140).print(t)
