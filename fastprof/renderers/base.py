"""The contract every renderer implements, and the small helpers renderers share.

A :class:`Renderer` turns one :class:`~fastprof.model.CallTree` into text: a terminal tree, a
speedscope file, collapsed stacks, an HTML page. Options go to ``__init__`` (keyword-only), so a
renderer is configured once and can render many trees.
"""

from __future__ import annotations

import os
import sysconfig
from abc import ABC, abstractmethod
from typing import ClassVar

from fastprof.model import CallTree

AWAIT_FRAME = "[await]"
"""The synthetic leaf frame that stands for time a frame spent suspended in an ``await``."""


class Renderer(ABC):
    """Turns a call tree into one output format. Subclass, set ``name`` and ``extension``."""

    #: The name users pass (``fastprof view --format NAME``); a key of ``RENDERERS``.
    name: ClassVar[str]
    #: File name suffix for this format, leading dot included (``".speedscope.json"``).
    extension: ClassVar[str]

    @abstractmethod
    def render(self, tree: CallTree, *, title: str = "") -> str:
        """Render ``tree``; ``title`` (a request line, a route) heads the output where it fits."""


_STDLIB_DIRS: tuple[str, ...] = tuple(
    sorted(
        {
            os.path.join(p, "")
            for p in (sysconfig.get_paths().get("stdlib"), sysconfig.get_paths().get("platstdlib"))
            if p
        },
        key=len,
        reverse=True,
    )
)


def short_path(file: str, cwd: str | None = None) -> str:
    """``file`` as a reader wants it: relative to ``cwd`` (default: the working directory) when
    under it, else the part after ``site-packages/`` (or the standard library directory)."""
    if not file or file.startswith("<"):
        return file
    base = os.path.join(cwd if cwd is not None else os.getcwd(), "")
    if file.startswith(base):
        return file[len(base) :]
    for marker in ("site-packages/", "dist-packages/"):
        at = file.rfind(marker)
        if at >= 0:
            return file[at + len(marker) :]
    for stdlib in _STDLIB_DIRS:
        if file.startswith(stdlib):
            return file[len(stdlib) :]
    return file


def location(file: str, line: int, cwd: str | None = None) -> str:
    """``short/path.py:12``; just the path when the line is unknown, empty for synthetic frames."""
    path = short_path(file, cwd)
    if not path:
        return ""
    return f"{path}:{line}" if line > 0 else path
