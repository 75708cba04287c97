"""mkdocs hook: put each command's current ``--help`` text into docs/cli.md.

docs/cli.md holds the prose and one marker per command,
``<!-- starburst-help: starburst env build -->``; at build time the marker
becomes a code block with what ``starburst env build --help`` prints now, so
the page cannot drift from the code. A marker naming a command that does not
exist fails the build. tests/test_docs.py checks that every command has a
heading and a marker.
"""

from __future__ import annotations

import re
from typing import Any

from click.testing import CliRunner

from starburst.cli import main

MARKER = re.compile(r"^<!-- starburst-help: (?P<command>starburst(?: [a-z-]+)*) -->$",
                    re.MULTILINE)
#: The width the help text is wrapped to (click wraps to the terminal otherwise).
WIDTH = 88


def help_text(command: str) -> str:
    """What ``command --help`` prints (``command`` starts with ``starburst``)."""
    args = [*command.split()[1:], "--help"]
    result = CliRunner().invoke(main, args, prog_name="starburst", terminal_width=WIDTH,
                                max_content_width=WIDTH)
    if result.exit_code != 0:
        raise RuntimeError(f"docs/cli.md names {command!r}, but `{command} --help` failed "
                           f"(exit {result.exit_code}): {result.output.strip()}")
    return result.output.rstrip()


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """Replace the help markers of docs/cli.md; leave every other page alone."""
    if page.file.src_uri != "cli.md":
        return markdown
    return MARKER.sub(
        lambda m: f"```text\n$ {m['command']} --help\n{help_text(m['command'])}\n```", markdown)
