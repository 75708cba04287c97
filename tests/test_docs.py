"""The documentation keeps up with the code.

The site itself is built with ``mkdocs build --strict`` by ``scripts/test``
(broken links and anchors, docstrings mkdocstrings cannot render, and the
``--help`` text the docs/_hooks/cli_help.py hook inserts fail there).
These tests catch what a build cannot see: an exception class without a
troubleshooting entry, a CLI command missing from the CLI page, and a page
in ``docs/`` that the nav does not list.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
from pathlib import Path
from types import ModuleType

import click
import pytest
import yaml

import starburst.envsync.errors
import starburst.exceptions
from starburst.cli import main

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

#: Modules whose exception classes each need a troubleshooting entry.
EXCEPTION_MODULES: tuple[ModuleType, ...] = (starburst.exceptions, starburst.envsync.errors)

#: A troubleshooting entry: ``## `ClassName` {#classname}``.
_ENTRY = re.compile(r"^##\s+`(?P<name>[A-Za-z_][A-Za-z0-9_]*)`\s+\{#(?P<anchor>[a-z0-9_-]+)\}\s*$",
                    re.MULTILINE)


def _exception_classes() -> dict[str, type[BaseException]]:
    """Every exception class defined (not merely imported) in :data:`EXCEPTION_MODULES`."""
    found: dict[str, type[BaseException]] = {}
    for module in EXCEPTION_MODULES:
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseException)
                    and obj.__module__ == module.__name__):
                found[name] = obj
    return found


def _entries() -> dict[str, str]:
    """Troubleshooting entries: class name -> anchor."""
    text = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")
    return {m["name"]: m["anchor"] for m in _ENTRY.finditer(text)}


def test_every_exception_class_has_a_troubleshooting_entry() -> None:
    classes = _exception_classes()
    # The walk must see the tree, or the check below would pass vacuously.
    assert {"StarburstError", "WorkerLostError", "RegistryError"} <= classes.keys()
    entries = _entries()
    missing = sorted(classes.keys() - entries.keys())
    assert not missing, (
        f"docs/troubleshooting.md has no entry for {', '.join(missing)}: add a heading "
        "'## `Name` {#name}' with the message, its cause and what to do")
    wrong = {name: anchor for name, anchor in entries.items()
             if name in classes and anchor != name.lower()}
    assert not wrong, f"troubleshooting anchors must be the lower-cased class name: {wrong}"


def test_troubleshooting_names_no_exception_that_does_not_exist() -> None:
    stale = sorted(_entries().keys() - _exception_classes().keys())
    assert not stale, (
        f"docs/troubleshooting.md has entries for {', '.join(stale)}, which neither "
        "starburst.exceptions nor starburst.envsync.errors defines: remove or rename them")


def _command_paths(command: click.Command, prefix: str) -> list[str]:
    """``prefix`` and, for a group, every subcommand's full name below it."""
    paths = [prefix]
    if isinstance(command, click.Group):
        ctx = click.Context(command, info_name=prefix)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, f"{prefix} lists {name} but cannot load it"
            paths += _command_paths(sub, f"{prefix} {name}")
    return paths


def test_cli_page_has_a_section_for_every_command() -> None:
    commands = _command_paths(main, "starburst")[1:]  # the group itself has the page title
    assert {"starburst setup", "starburst env build", "starburst pricing refresh"} <= set(commands)
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^#{2,3}\s+`([^`]+)`", text, re.MULTILINE))
    markers = set(re.findall(r"^<!-- starburst-help: ([a-z -]+) -->$", text, re.MULTILINE))
    missing = [c for c in commands if c not in headings or c not in markers]
    assert not missing, (
        f"docs/cli.md has no section for {', '.join(missing)}: add a heading "
        "'## `starburst NAME`' and below it '<!-- starburst-help: starburst NAME -->' "
        "(the build puts the --help text there)")
    unknown = sorted(h for h in headings | markers
                     if h.startswith("starburst ") and h not in commands)
    assert not unknown, f"docs/cli.md documents commands that do not exist: {unknown}"


def _nav_pages(node: object) -> list[str]:
    """The Markdown files an mkdocs ``nav`` (nested lists and mappings) names."""
    if isinstance(node, str):
        return [node] if node.endswith(".md") else []
    if isinstance(node, list):
        return [page for item in node for page in _nav_pages(item)]
    if isinstance(node, dict):
        return [page for value in node.values() for page in _nav_pages(value)]
    return []


@pytest.fixture(scope="module")
def mkdocs_config() -> dict[str, object]:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert isinstance(config, dict)
    return config


def test_every_docs_page_is_in_the_nav_and_every_nav_page_exists(
        mkdocs_config: dict[str, object]) -> None:
    assert mkdocs_config.get("docs_dir") == "docs"
    nav = _nav_pages(mkdocs_config["nav"])
    assert len(nav) == len(set(nav)), f"a page is listed twice in the nav: {nav}"
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    unlisted, absent = sorted(pages - set(nav)), sorted(set(nav) - pages)
    assert not unlisted, f"pages missing from the nav in mkdocs.yml: {unlisted}"
    assert not absent, f"nav entries without a page in docs/: {absent}"


def test_reference_documents_every_public_name() -> None:
    text = (DOCS / "reference.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^:::\s+(\S+)", text, re.MULTILINE))
    missing = []
    for name in starburst.__all__:
        if name.startswith("_"):
            continue
        obj = getattr(starburst, name)
        module = getattr(obj, "__module__", "")
        if f"starburst.{name}" not in documented and module not in documented:
            missing.append(name)
    assert not missing, (
        f"docs/reference.md documents neither starburst.{missing[0]} nor its module; add "
        f"'::: starburst.NAME' for: {', '.join(missing)}")


def test_sphinx_roles_become_optional_links_and_literal_markers_go() -> None:
    path = DOCS / "_hooks" / "sphinx_roles.py"
    spec = importlib.util.spec_from_file_location("_docs_sphinx_roles", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = ("Fails with :class:`~starburst.WorkerLostError`; see :meth:`Executor.status`.\n"
            "The tree::\n\n    StarburstError\n\n::\n\n    code\n")
    assert module.rewrite(text) == (
        'Fails with <autoref identifier="starburst.WorkerLostError" optional>'
        "<code>WorkerLostError</code></autoref>; see "
        '<autoref identifier="starburst.Executor.status" optional>'
        "<code>Executor.status</code></autoref>.\n"
        "The tree:\n\n    StarburstError\n\n\n\n    code\n")
