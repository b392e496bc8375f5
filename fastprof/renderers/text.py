"""A plain-text call tree for the terminal, in the manner of pyinstrument's console renderer.

One line per frame, children under their parent with box-drawing connectors, heaviest first::

    backend: pyinstrument  duration: 120.00 ms  samples: 120

    120.00 ms 100.0%  handler  app/main.py:10  (self 0.00 ms)
    ├─ 80.00 ms 66.7%  fetch  app/db.py:3  (self 10.00 ms, await 70.00 ms)
    └─ 40.00 ms 33.3%  render  app/views.py:8  (self 40.00 ms)
"""

from __future__ import annotations

from fastprof.model import CallTree, Node, is_library_file
from fastprof.renderers.base import Renderer, location

_RESET = "\x1b[0m"
_BOLD = "\x1b[1m"
_DIM = "\x1b[2m"
_RED = "\x1b[31m"
_YELLOW = "\x1b[33m"
_GREEN = "\x1b[32m"
_BLUE = "\x1b[34m"
_CYAN = "\x1b[36m"


# Names and paths are untrusted: control characters (an escape sequence in a path) are shown
# escaped rather than sent to the terminal.
_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]}


def ms(seconds: float) -> str:
    """``"12.34 ms"``."""
    return f"{seconds * 1000:.2f} ms"


class TextRenderer(Renderer):
    """The call tree as indented text; frames under ``min_percent`` of the root are left out."""

    name = "text"
    extension = ".txt"

    def __init__(
        self, *, min_percent: float = 0.5, max_depth: int | None = None, color: bool = False
    ) -> None:
        if max_depth is not None and max_depth < 1:
            raise ValueError(f"max_depth must be at least 1, got {max_depth!r}")
        self.min_percent = min_percent
        self.max_depth = max_depth
        self.color = color

    def render(self, tree: CallTree, *, title: str = "") -> str:
        lines: list[str] = []
        if title:
            lines.append(self._paint(title.translate(_CONTROL), _BOLD))
        lines.append(_header(tree))
        lines.append("")
        body = self._body(tree)
        lines.extend(body or ["(no frames to show)"])
        return "\n".join(lines) + "\n"

    def _body(self, tree: CallTree) -> list[str]:
        root_total = tree.root.total
        lines: list[str] = []
        # (node, connector for its own line, prefix for its children's lines, depth); iterative
        # because real stacks can be deeper than Python's recursion limit.
        stack: list[tuple[Node, str, str, int]] = [
            (child, "", "", 1) for child in reversed(self._shown(tree.root, root_total))
        ]
        while stack:
            node, lead, prefix, depth = stack.pop()
            lines.append(self._line(node, lead, root_total))
            if self.max_depth is not None and depth >= self.max_depth:
                continue
            children = self._shown(node, root_total)
            for i in reversed(range(len(children))):
                last = i == len(children) - 1
                stack.append(
                    (
                        children[i],
                        prefix + ("└─ " if last else "├─ "),
                        prefix + ("   " if last else "│  "),
                        depth + 1,
                    )
                )
        return lines

    def _shown(self, node: Node, root_total: float) -> list[Node]:
        """Children worth a line, heaviest first (ties keep their recorded order)."""
        kept = [
            c for c in node.children.values() if _percent(c.total, root_total) >= self.min_percent
        ]
        kept.sort(key=lambda c: c.total, reverse=True)
        return kept

    def _line(self, node: Node, lead: str, root_total: float) -> str:
        pct = _percent(node.total, root_total)
        library = is_library_file(node.file)
        timing = f"{ms(node.total)} {pct:.1f}%"
        where = location(node.file, node.line).translate(_CONTROL)
        function = node.function.translate(_CONTROL)
        extra = f"self {ms(node.self_time)}"
        if node.await_time:
            extra += f", await {ms(node.await_time)}"
        if not self.color:
            parts = [lead + timing, function]
            if where:
                parts.append(where)
            return "  ".join([*parts, f"({extra})"])
        heat = _RED if pct >= 60 else _YELLOW if pct >= 30 else _GREEN
        function = self._paint(function, _DIM if library else _BOLD)
        where_painted = self._paint(where, _DIM if library else _CYAN) if where else ""
        extra_painted = self._paint(f"({extra})", _BLUE if node.await_time else _DIM)
        parts = [self._paint(lead, _DIM) + self._paint(timing, heat), function]
        if where_painted:
            parts.append(where_painted)
        return "  ".join([*parts, extra_painted])

    def _paint(self, text: str, code: str) -> str:
        if not self.color or not text:
            return text
        return f"{code}{text}{_RESET}"


def _percent(part: float, whole: float) -> float:
    return part / whole * 100 if whole > 0 else 0.0


def _header(tree: CallTree) -> str:
    header = f"backend: {tree.backend}  duration: {ms(tree.duration)}  samples: {tree.root.samples}"
    merged = tree.meta.get("merged")
    if isinstance(merged, int) and merged > 1:
        header += f"  merged: {merged} profiles"
    return header
