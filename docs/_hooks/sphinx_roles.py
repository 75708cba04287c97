"""griffe extension: render the Sphinx markup of starburst's docstrings in Markdown.

The docstrings are Google style but cross-reference with Sphinx roles
(``:class:`~starburst.WorkerLostError```) and introduce literal blocks with
a trailing ``::``, which mkdocstrings would print as they are. This turns
each role into an *optional* autorefs link (a link where the target is
documented on the site, plain code where it is not, never a warning under
``--strict``) and drops the ``::`` markers; the indented block after them
is already a Markdown code block. The source files stay as they are.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

#: ``:role:`target``` or ``:role:`~target```, with the Python domain's roles.
ROLE = re.compile(
    r":(?:class|func|meth|mod|attr|data|exc|obj|const):`(?P<tilde>~?)(?P<target>[\w.]+)`")
#: A line that ends with ``::`` (reST's "a literal block follows").
LITERAL = re.compile(r"(?m)^(?P<text>.*?)(?P<sep>[ \t]?)::$")


def _link(match: re.Match[str], owner: str) -> str:
    target = match["target"]
    shown = target.rsplit(".", 1)[-1] if match["tilde"] else target
    # Targets relative to the package (``Executor.status``) are qualified
    # with it so autorefs can find them; fully qualified ones stay.
    identifier = target if target.startswith(f"{owner}.") or target == owner \
        else f"{owner}.{target}"
    return f'<autoref identifier="{identifier}" optional><code>{shown}</code></autoref>'


def rewrite(text: str, owner: str = "starburst") -> str:
    """``text`` with Sphinx roles as autorefs and ``::`` literal markers removed."""
    text = ROLE.sub(lambda m: _link(m, owner), text)
    return LITERAL.sub(lambda m: f"{m['text']}:" if m["text"].strip() else "", text)


class SphinxRoles(griffe.Extension):
    """Rewrite every docstring of the loaded objects once the tree is built."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
