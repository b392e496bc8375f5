"""The lines of source around a finding's location, read when the report is written.

A report is often read on another machine, or after the code changed, so the lines are embedded
rather than linked. Only Python files are read: a findings.json from elsewhere must not make the
report copy an arbitrary file of this machine into a page that may be shared.
"""

from __future__ import annotations

import os
from typing import TypedDict

from fastprof.renderers.base import short_path

#: lines shown before and after the finding's line
CONTEXT = 4
#: longer lines are cut (minified or generated code)
MAX_LINE = 240
#: files larger than this are not read
MAX_FILE_BYTES = 4 * 1024 * 1024
_SOURCE_SUFFIXES = (".py", ".pyw", ".pyi")


class SourceExcerpt(TypedDict):
    """``lines[0]`` is line ``start`` of ``path``; ``error`` says why there are no lines."""

    path: str
    line: int
    start: int
    lines: list[str]
    error: str | None


def excerpt(
    file: str, line: int, *, context: int = CONTEXT, cwd: str | None = None
) -> SourceExcerpt:
    """Up to ``context`` lines either side of ``line`` (1-based) of ``file``."""
    shown = short_path(file, cwd)
    found: SourceExcerpt = {"path": shown, "line": line, "start": 0, "lines": [], "error": None}
    if not file.endswith(_SOURCE_SUFFIXES):
        found["error"] = "not a Python source file, so it was not read"
        return found
    try:
        if os.path.getsize(file) > MAX_FILE_BYTES:
            found["error"] = "the file is too large to excerpt"
            return found
        with open(file, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as exc:
        found["error"] = f"cannot read the file: {exc.strerror or type(exc).__name__}"
        return found
    lines = text.splitlines()
    if not 1 <= line <= len(lines):
        found["error"] = f"the file has {len(lines)} lines now; it changed since the scan"
        return found
    first = max(1, line - context)
    last = min(len(lines), line + context)
    found["start"] = first
    found["lines"] = [_clip(text.expandtabs(4)) for text in lines[first - 1 : last]]
    return found


def _clip(text: str) -> str:
    return text if len(text) <= MAX_LINE else text[: MAX_LINE - 1] + "\u2026"
