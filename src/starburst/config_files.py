"""Configuration files: the user config file and ``[tool.starburst]`` in pyproject.toml.

Both files hold the same keys (:data:`KEYS`), read and checked by the same
code here, and every key can also be set as ``STARBURST_<KEY>`` in the
environment or passed as an argument. Precedence, highest first, for every
key:

1. explicit arguments (``Executor(workers=8, region="eu-west-1")``);
2. ``STARBURST_<KEY>`` environment variables (lists comma-separated,
   booleans ``true``/``false``);
3. ``[tool.starburst]`` in the project's ``pyproject.toml``: the file
   ``STARBURST_PYPROJECT`` names, else the first ``pyproject.toml`` found
   walking up from the working directory. The walk stops at a directory
   holding ``.git`` or ``.hg`` (the top of a repository), as black and ruff
   do; the nearest ``pyproject.toml`` is the project's even when it has no
   ``[tool.starburst]`` table (it then adds nothing);
4. the user config file: the file ``STARBURST_CONFIG`` names, else
   ``config.toml`` in ``platformdirs.user_config_dir("starburst")``
   (``starburst setup`` writes it), keys at the top level;
5. defaults.

For example::

    [tool.starburst]
    backend = "fargate"
    workers = 50
    cpu = 2
    memory = "4GB"
    region = "eu-west-1"
    platform = "arm64"

Keys of one backend (the AWS settings, ``platform``, ``base_image``,
``packages``) apply only when that backend runs, so a project configured
for Fargate still runs ``Executor(backend="local")``. A file is checked
whole when it is read: an unknown key, or a value of the wrong type, is a
:class:`~starburst.exceptions.ConfigurationError` naming the file, the
line, the key and the expected form. Ranges (``workers >= 1``...) are
checked where the value is used, and those errors name the file and line
too.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import platformdirs

from .exceptions import ConfigurationError

__all__ = ["CONFIG_ENV", "KEYS", "PYPROJECT_ENV", "ConfigFile", "Found", "Key", "Layers",
           "coerce", "config_path", "find_pyproject", "keys_of", "load_layers",
           "read_config_file", "read_pyproject", "toml_value"]

#: Names the user config file (else the platform's user config directory).
CONFIG_ENV = "STARBURST_CONFIG"
#: Names the project's pyproject.toml (else found from the working directory).
PYPROJECT_ENV = "STARBURST_PYPROJECT"
#: A directory holding one of these is the top of a repository: the search
#: for pyproject.toml goes no higher.
_ROOT_MARKERS = (".git", ".hg")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_INT = re.compile(r"^\s*[+-]?\d+\s*$")

Kind = Literal["str", "strs", "bool", "int", "number", "size"]
#: What a value came as: an argument, a ``STARBURST_*`` variable, or a file key.
Origin = Literal["argument", "environment", "file"]

_FORMS: dict[str, str] = {
    "str": "a non-empty string", "strs": "a list of strings", "bool": "true or false",
    "int": "a whole number", "number": "a number", "size": "a size in GB or MB",
}


@dataclass(frozen=True)
class Key:
    """One configuration key, as files, ``STARBURST_<KEY>`` and arguments name it.

    Attributes:
        name: the key (also the ``Executor`` argument).
        kind: its type: ``str``, ``strs`` (list of strings), ``bool``,
            ``int``, ``number`` or ``size`` (memory: ``"8GB"`` or a number
            of GiB).
        group: ``executor`` (an ``Executor`` option of every backend),
            ``aws`` (read by :func:`starburst.aws.config.load_config`) or
            ``backend`` (a backend option, given to the backends listed).
        example: a valid value, shown in errors in the form of the origin.
        backends: the backends the key applies to; empty for every one.
        aliases: other argument names for the same option (given under an
            alias, the key counts as given).
    """

    name: str
    kind: Kind
    group: Literal["executor", "aws", "backend"]
    example: Any
    backends: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()

    @property
    def env(self) -> str:
        """The environment variable that sets this key."""
        return f"STARBURST_{self.name.upper()}"


def _keys(*keys: Key) -> dict[str, Key]:
    return {key.name: key for key in keys}


#: The backends that run on AWS and take the AWS settings and the
#: environment-sync options (Batch runs GPU workers).
_AWS = ("fargate", "batch")

#: Every key a config file may hold, in the order error messages list them.
KEYS: dict[str, Key] = _keys(
    # Executor options (every backend).
    Key("backend", "str", "executor", "fargate"),
    Key("workers", "int", "executor", 8),
    Key("cpu", "number", "executor", 2),
    Key("memory", "size", "executor", "4GB"),
    Key("max_attempts", "int", "executor", 3),
    Key("task_timeout", "number", "executor", 600),
    Key("max_cost", "number", "executor", 20),
    Key("max_hourly_cost", "number", "executor", 5),
    Key("chunksize", "int", "executor", 100),
    Key("seed", "int", "executor", 42),
    # AWS settings of the Fargate path (starburst.aws.config.AwsConfig).
    Key("region", "str", "aws", "eu-west-1", _AWS),
    Key("bucket", "str", "aws", "my-team-starburst", _AWS),
    Key("prefix", "str", "aws", "starburst", _AWS),
    Key("cluster", "str", "aws", "starburst", _AWS),
    Key("subnets", "strs", "aws", ["subnet-0abc", "subnet-0def"], _AWS),
    Key("security_groups", "strs", "aws", ["sg-0abc"], _AWS),
    Key("assign_public_ip", "bool", "aws", False, _AWS),
    Key("execution_role_arn", "str", "aws", "arn:aws:iam::123456789012:role/exec", _AWS),
    Key("task_role_arn", "str", "aws", "arn:aws:iam::123456789012:role/task", _AWS),
    Key("log_group", "str", "aws", "/starburst", _AWS),
    Key("image", "str", "aws", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:1", _AWS),
    Key("ecr_repository", "str", "aws", "starburst", _AWS),
    # Fargate backend options (environment sync).
    Key("platform", "str", "backend", "arm64", _AWS, aliases=("arch",)),
    Key("base_image", "str", "backend", "python:3.11-slim", _AWS),
    Key("packages", "strs", "backend", ["numpy==2.1.0"], _AWS),
)


def keys_of(group: str, backend: str | None = None) -> tuple[Key, ...]:
    """The keys of ``group``; with ``backend``, only those that apply to it."""
    return tuple(key for key in KEYS.values() if key.group == group
                 and (backend is None or not key.backends or backend in key.backends))


def toml_value(value: Any) -> str:
    """``value`` written as a TOML value (strings quoted, booleans lower-case, lists)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value) if isinstance(value, str) else str(value)


def _example(key: Key, origin: Origin) -> str:
    """A valid setting of ``key`` written as the origin writes it."""
    if origin == "environment":
        text = (",".join(key.example) if isinstance(key.example, list)
                else toml_value(key.example).strip('"'))
        return f"{key.env}={text}"
    if origin == "argument":
        return f"{key.name}={key.example!r}"
    return f"{key.name} = {toml_value(key.example)}"


def coerce(key: Key, value: Any, where: str, origin: Origin) -> Any:
    """Check the type of one value and normalize it (text from the environment parsed).

    Args:
        key: the key.
        value: the value as given (a TOML value, an argument, or text).
        where: its origin for errors (``"path, line 3"``, ``"environment
            variable STARBURST_CPU"``).
        origin: how it was written, for the example in the error.

    Raises:
        ConfigurationError: naming ``where``, the key, the expected form
            with an example, and the value.
    """
    kind = key.kind
    if kind == "strs":
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple) and all(isinstance(v, str) and v.strip()
                                                   for v in value):
            return tuple(v.strip() for v in value)
    elif kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
    elif kind in ("int", "number", "size"):
        if isinstance(value, int | float) and not isinstance(value, bool) \
                and (kind != "int" or isinstance(value, int)):
            return value
        if isinstance(value, str) and _INT.match(value):
            return int(value)
        if isinstance(value, str) and kind == "number":
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, str) and kind == "size" and value.strip():
            return value.strip()
    elif isinstance(value, str) and value.strip():
        return value.strip()
    raise ConfigurationError(
        f"{where}: {key.name} must be {_FORMS[kind]}, e.g. {_example(key, origin)}; "
        f"got {value!r}")


# -- files ----------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigFile:
    """The checked keys of one config file, with the line of each.

    Attributes:
        path: the file.
        values: key -> value, checked by :func:`coerce` (empty when the
            file or its table is missing).
        lines: key -> line number in the file, where it was found.
    """

    path: Path
    values: dict[str, Any] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)

    def where(self, name: str) -> str:
        """``"<path>, line N"`` for key ``name`` (just the path when its line is unknown)."""
        line = self.lines.get(name)
        return f"{self.path}, line {line}" if line else str(self.path)


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """The user config file: ``STARBURST_CONFIG``, else the user config directory's."""
    env = os.environ if environ is None else environ
    explicit = env.get(CONFIG_ENV)
    if explicit:
        return Path(explicit).expanduser()
    return Path(platformdirs.user_config_dir("starburst")) / "config.toml"


def find_pyproject(environ: Mapping[str, str] | None = None,
                   cwd: Path | None = None) -> Path | None:
    """The project's pyproject.toml: ``STARBURST_PYPROJECT``, else the nearest one above ``cwd``.

    The search walks up from ``cwd`` (default: the working directory) and
    stops at the first directory that holds a ``pyproject.toml``, or at the
    top of a repository (a directory holding ``.git`` or ``.hg``) or of the
    file system without one (None).

    Raises:
        ConfigurationError: ``STARBURST_PYPROJECT`` names no file.
    """
    env = os.environ if environ is None else environ
    explicit = env.get(PYPROJECT_ENV, "").strip()
    if explicit:
        path = Path(explicit).expanduser()
        if path.is_dir():
            path = path / "pyproject.toml"
        if not path.is_file():
            raise ConfigurationError(
                f"{PYPROJECT_ENV}={explicit!r} names no file ({path} does not exist): point "
                "it at the project's pyproject.toml, or unset it to use the nearest one")
        return path
    try:
        here = (cwd or Path.cwd()).absolute()
    except FileNotFoundError:  # the working directory was deleted
        return None
    for directory in (here, *here.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            return candidate
        if any((directory / marker).exists() for marker in _ROOT_MARKERS):
            return None
    return None


def _parse(path: Path, what: str) -> tuple[str, dict[str, Any]] | None:
    """Read and parse a TOML file (None when it does not exist); errors name file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read {what} {path}: {exc}") from exc
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"at line (\d+), column (\d+)", str(exc))
        where = f"{path}, line {match.group(1)}" if match else str(path)
        raise ConfigurationError(
            f"{where}: {what} is not valid TOML ({exc}); fix that line (values need "
            "quotes: region = \"eu-west-1\")") from exc


def _line_of(text: str, key: str, start: int = 0, end: int | None = None) -> int | None:
    """The line of ``key = ...`` (or a ``[...key]`` table header) in ``text[start:end]``."""
    name = re.escape(key)
    pattern = re.compile(rf"^[ \t]*(?:{name}|\"{name}\"|'{name}')[ \t]*=|^[ \t]*\[[^\]\n]*"
                         rf"\b{name}[ \t]*\]", re.MULTILINE)
    match = pattern.search(text, start, len(text) if end is None else end)
    return text.count("\n", 0, match.start()) + 1 if match else None


def _check(path: Path, text: str, table: Mapping[str, Any], what: str,
           span: tuple[int, int | None] = (0, None)) -> ConfigFile:
    """Check every key of ``table``: known, and of the right type."""
    values: dict[str, Any] = {}
    lines: dict[str, int] = {}
    for name, value in table.items():
        line = _line_of(text, name, *span) or _line_of(text, name)
        if line:
            lines[name] = line
        where = f"{path}, line {line}" if line else str(path)
        key = KEYS.get(name)
        if key is None:
            close = difflib.get_close_matches(name, KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigurationError(
                f"{where}: unknown key {name!r} in {what}{hint}; valid keys: "
                f"{', '.join(KEYS)}")
        values[name] = coerce(key, value, where, "file")
    return ConfigFile(path, values, lines)


def read_config_file(path: Path) -> ConfigFile:
    """Read the user config file (keys at the top level); a missing file has no keys."""
    what = "the starburst config file"
    parsed = _parse(path, what)
    if parsed is None:
        return ConfigFile(path)
    return _check(path, *parsed, what)


_TABLE_HEADER = re.compile(r"^[ \t]*\[[ \t]*tool[ \t]*\.[ \t]*starburst[ \t]*\][ \t]*(?:#.*)?$",
                           re.MULTILINE)
_ANY_HEADER = re.compile(r"^[ \t]*\[", re.MULTILINE)


def read_pyproject(path: Path) -> ConfigFile:
    """Read ``[tool.starburst]`` of a pyproject.toml; without the table it has no keys."""
    what = "[tool.starburst]"
    parsed = _parse(path, f"{path.name}")
    if parsed is None:
        return ConfigFile(path)
    text, data = parsed
    tool = data.get("tool")
    table = tool.get("starburst") if isinstance(tool, dict) else None
    if table is None:
        return ConfigFile(path)
    header = _TABLE_HEADER.search(text)
    if not isinstance(table, dict):
        line = text.count("\n", 0, header.start()) + 1 if header else _line_of(text, "starburst")
        where = f"{path}, line {line}" if line else str(path)
        raise ConfigurationError(
            f"{where}: tool.starburst must be a table of settings, e.g. [tool.starburst] "
            f"followed by workers = 8; got {table!r}")
    span: tuple[int, int | None] = (0, None)
    if header:
        following = _ANY_HEADER.search(text, header.end())
        span = (header.end(), following.start() if following else None)
    return _check(path, text, table, what, span)


# -- precedence -----------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    """A value and where it came from.

    Attributes:
        value: the value (arguments as given; the others checked by :func:`coerce`).
        source: ``"argument"``, ``"environment"`` or the file's path (what
            ``starburst doctor`` and ``AwsConfig.sources`` show).
        where: the origin for error messages (``"<path>, line 4"``).
    """

    value: Any
    source: str
    where: str


@dataclass(frozen=True)
class Layers:
    """Everything below explicit arguments: the environment and the files, read once.

    Attributes:
        environ: the environment the ``STARBURST_<KEY>`` variables are read from.
        files: the config files, highest precedence first (the project's
            ``[tool.starburst]``, then the user config file).
    """

    environ: Mapping[str, str]
    files: tuple[ConfigFile, ...]

    def lookup(self, name: str, given: Any = None) -> Found | None:
        """Key ``name`` by precedence: ``given`` (unless None) > environment > files.

        None when no level sets it (the caller's default applies).
        """
        if given is not None:
            return Found(given, "argument", f"argument {name}=")
        key = KEYS[name]
        raw = self.environ.get(key.env, "")
        if raw.strip():
            where = f"environment variable {key.env}"
            return Found(coerce(key, raw, where, "environment"), "environment", where)
        for file in self.files:
            if name in file.values:
                return Found(file.values[name], str(file.path), file.where(name))
        return None


def load_layers(*, environ: Mapping[str, str] | None = None, cwd: Path | None = None,
                config: Path | None = None) -> Layers:
    """Read the environment and both config files.

    Args:
        environ: the environment (default: ``os.environ``).
        cwd: where the search for pyproject.toml starts (default: the
            working directory).
        config: the user config file (default: :func:`config_path`).

    Raises:
        ConfigurationError: a file is malformed, holds an unknown key or a
            value of the wrong type, or ``STARBURST_PYPROJECT`` names no file.
    """
    env = os.environ if environ is None else environ
    files: list[ConfigFile] = []
    project = find_pyproject(env, cwd)
    if project is not None:
        files.append(read_pyproject(project))
    files.append(read_config_file(config or config_path(env)))
    return Layers(env, tuple(files))
