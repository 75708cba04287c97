"""Source text for code shipped by value, so remote tracebacks show the user's lines.

A function defined in ``__main__``, in a notebook cell or as a closure
travels by value (cloudpickle), as its code objects. On the worker there is
no module to import it from and often no copy of its file (Fargate, or a
notebook cell that exists only in the kernel's :mod:`linecache`). Two things
went missing on the way, and this module restores both:

* cloudpickle renames every code object's file to ``<dynamic-code>`` (for
  deterministic payloads): :func:`reduce_code` keeps the real file name.
* The worker cannot read the file's lines: :func:`reduce_code` ships them
  with the code, as :func:`linecache.getlines` gives them on the client
  (which also covers IPython cells and anything else registered there).

Data flow::

    client: pickling a code object (serialization._Pickler.dispatch_table)
        reduce_code(code) -> (_rebuild_code, (filename, lines, code args))
    worker: unpickling it
        _rebuild_code -> linecache.cache[filename] = lines; CodeType(*args)
        ... the task raises; traceback.format_exception reads linecache

The lines of one file are one tuple object per client process, so pickle's
memo writes them once per frame however many code objects (nested
functions, methods) come from that file. Functions are stored once per
session by content hash, so each file's text travels once per session and
function. The cache entry has no modification time, which tells
:func:`linecache.checkcache` to keep it (as for IPython's cells).
"""

from __future__ import annotations

import linecache
import threading
import types
from collections.abc import Callable
from typing import Any

import cloudpickle

__all__ = ["DISPATCH", "reduce_code"]

# The file name cloudpickle writes in place of the real one.
_PLACEHOLDER = "<dynamic-code>"

# Source text beyond this size is not shipped (the file name and line still
# are): a script or notebook cell is kilobytes; a multi-megabyte generated
# file is not worth carrying with every function frame it defines code in.
_MAX_SOURCE_CHARS = 1 << 20

_lock = threading.Lock()
# filename -> (the list linecache returned, its tuple): the same tuple object
# every time, so pickle memoises it, while linecache keeps that list.
_shipped: dict[str, tuple[list[str], tuple[str, ...]]] = {}
# filename -> the lines tuple last registered in linecache on this worker.
_registered: dict[str, tuple[str, ...]] = {}

# cloudpickle's own reducer for code objects (private, so reached by name).
_cloudpickle_reduce: Callable[[types.CodeType], tuple[Any, tuple[Any, ...]]] = (
    cloudpickle.cloudpickle._code_reduce)


def _lines_of(filename: str) -> tuple[str, ...] | None:
    """The source lines of ``filename`` as this process sees them, or None."""
    lines = linecache.getlines(filename)
    if not lines or sum(map(len, lines)) > _MAX_SOURCE_CHARS:
        return None
    with _lock:
        known = _shipped.get(filename)
        if known is not None and known[0] is lines:
            return known[1]
        shipped = tuple(lines)
        _shipped[filename] = (lines, shipped)
        return shipped


def reduce_code(code: types.CodeType) -> tuple[Any, tuple[Any, ...]]:
    """Reduce a code object as cloudpickle does, keeping its file name and source lines.

    Returns:
        ``(types.CodeType, args)`` when no source is known for the file, else
        ``(_rebuild_code, (filename, lines, args))``, which registers the
        lines in the worker's :mod:`linecache` as it rebuilds the code.
    """
    constructor, args = _cloudpickle_reduce(code)
    if _PLACEHOLDER in args:
        at = args.index(_PLACEHOLDER)  # co_filename: it precedes co_name
        args = (*args[:at], code.co_filename, *args[at + 1:])
    lines = _lines_of(code.co_filename)
    if lines is None or constructor is not types.CodeType:
        return constructor, args
    return _rebuild_code, (code.co_filename, lines, args)


def _rebuild_code(filename: str, lines: tuple[str, ...], args: tuple[Any, ...]) -> types.CodeType:
    """Unpickle a code object from :func:`reduce_code`, registering its file's lines."""
    with _lock:
        if _registered.get(filename) is not lines:
            _registered[filename] = lines
            linecache.cache[filename] = (sum(map(len, lines)), None, list(lines), filename)
    return types.CodeType(*args)


#: Entries for a pickler's ``dispatch_table`` (ahead of cloudpickle's own).
DISPATCH: dict[type, Callable[[Any], tuple[Any, ...]]] = {types.CodeType: reduce_code}
