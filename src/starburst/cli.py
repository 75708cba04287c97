"""The ``starburst`` command.

The group only knows each subcommand's name and where it lives; the
module is imported when the subcommand runs, so ``starburst --version``
stays fast and a command that needs the ``aws`` extra does not weigh on
the others. Add a command (or a group of them) by writing a module under
:mod:`starburst.commands` and registering it in :data:`COMMANDS`.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from ._version import __version__

__all__ = ["COMMANDS", "main"]

#: Subcommand name -> "module:attribute" of its click command.
COMMANDS: dict[str, str] = {
    "cleanup": "starburst.commands.ops:cleanup",
    "cost": "starburst.commands.ops:cost",
    "demo": "starburst.commands.demo:demo",
    "env": "starburst.commands.env:env",
    "doctor": "starburst.commands.doctor:doctor",
    "estimate": "starburst.commands.estimate:estimate_command",
    "logs": "starburst.commands.ops:logs",
    "pricing": "starburst.commands.pricing:pricing",
    "quota": "starburst.commands.quota:quota",
    "sessions": "starburst.commands.ops:sessions",
    "setup": "starburst.commands.setup:setup",
    "status": "starburst.commands.ops:status",
    "teardown": "starburst.commands.setup:teardown",
}


#: Context meta key: the command line below ``starburst``, as given.
_RAW_ARGS = "starburst.args"


class _LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when it is used.

    It also runs every subcommand under
    :func:`starburst.commands._common.json_error_handling`, so ``--json``
    errors are JSON for every command.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[_RAW_ARGS] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        from .commands._common import json_error_handling

        with json_error_handling(ctx, ctx.meta.get(_RAW_ARGS, [])):
            return super().invoke(ctx)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)
        module_name, _, attr = COMMANDS[cmd_name].partition(":")
        command = getattr(importlib.import_module(module_name), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{COMMANDS[cmd_name]} is not a click command")
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="starburst",
                      message="%(prog)s %(version)s")
def main() -> None:
    """starburst: run a Python parallel workload on local processes or AWS Fargate."""
