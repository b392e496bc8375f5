"""A static SVG flame graph, for issues, docs and anywhere a script cannot run.

The same picture as the interactive component (``assets/flamegraph.js``): an icicle graph with
the root on top, children left to right heaviest first, your code in warm colours and library
code in cool ones (the same hash picks the same hue for a name in both), and each frame's time
suspended in ``await`` as a grey block after its children. Every frame carries a ``<title>``, so
a browser shows its times on hover. Frames narrower than ``min_width`` pixels are left out with
everything under them, which keeps a 50,000-frame tree's file small.

Names and paths are untrusted: they reach the file only as escaped XML text, with the control
characters XML 1.0 forbids replaced, so the document stays well formed and holds no markup but
its own. There is no script in it.
"""

from __future__ import annotations

import re
from xml.sax.saxutils import escape, quoteattr

from fastprof.model import CallTree, Node, is_library_file
from fastprof.renderers.base import AWAIT_FRAME, Renderer, location
from fastprof.renderers.text import ms

_FONT = 'ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace'
_CHAR_WIDTH = 6.7  # px per character of the 11 px monospace font, a little generous
_HEADER = 46
_FOOTER = 8
# what XML 1.0 forbids, and lone surrogates (a file name decoded with surrogateescape)
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def name_hash(text: str) -> int:
    """The component's ``hash()``: 31-based over UTF-16 code units, as a 32-bit signed int."""
    h = 0
    data = text.encode("utf-16-le", "surrogatepass")
    for i in range(0, len(data), 2):
        h = (h * 31 + (data[i] | data[i + 1] << 8)) & 0xFFFFFFFF
    if h >= 0x80000000:
        h -= 0x100000000
    return abs(h)


def user_color(h: int) -> str:
    return f"hsl({12 + h % 34},82%,{62 + h % 10}%)"


def library_color(h: int) -> str:
    return f"hsl({196 + h % 28},38%,{76 + h % 8}%)"


_AWAIT_COLOR = "#d2d5db"


def _clean(text: str) -> str:
    return _INVALID_XML.sub("\ufffd", text)


def _text(text: str) -> str:
    return escape(_clean(text))


def _attr(text: str) -> str:
    return quoteattr(_clean(text), {"\n": "&#10;", "\r": "&#13;", "\t": "&#9;"})


class SVGRenderer(Renderer):
    """A static flame graph as one SVG document (no script)."""

    name = "svg"
    extension = ".svg"

    def __init__(self, *, width: int = 1200, row_height: int = 17, min_width: float = 0.5) -> None:
        if width < 100:
            raise ValueError(f"width must be at least 100 px, got {width!r}")
        if row_height < 8:
            raise ValueError(f"row_height must be at least 8 px, got {row_height!r}")
        self.width = width
        self.row_height = row_height
        self.min_width = min_width

    def render(self, tree: CallTree, *, title: str = "") -> str:
        width = self.width
        root = tree.root
        scale = width / root.total if root.total > 0 else 0.0
        rows: list[str] = []
        skipped = 0
        depth_max = -1
        # (node, x, depth, is the root): iterative, stacks can be deeper than the recursion limit
        stack: list[tuple[Node, float, int, bool]] = [(root, 0.0, 0, True)]
        while stack and scale > 0:
            node, x, depth, is_root = stack.pop()
            w = node.total * scale
            depth_max = max(depth_max, depth)
            rows.append(self._frame(node, x, depth, w, root.total, is_root))
            cx = x
            for child in sorted(node.children.values(), key=lambda c: -c.total):
                cw = child.total * scale
                if cw < self.min_width:
                    skipped += 1
                else:
                    stack.append((child, cx, depth + 1, False))
                cx += cw
            aw = node.await_time * scale
            if aw >= self.min_width:
                depth_max = max(depth_max, depth + 1)
                rows.append(self._await(node, cx, depth + 1, aw, root.total))
        height = _HEADER + (depth_max + 1) * self.row_height + _FOOTER
        summary = f"total {ms(root.total)} · {root.samples} samples · backend {tree.backend}" + (
            f" · {skipped} frames under {self.min_width:g} px not drawn" if skipped else ""
        )
        if not rows:
            summary = "no samples were recorded"
        head = (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family={_attr(_FONT)} font-size="11">\n'
            f'<rect width="{width}" height="{height}" fill="#ffffff"/>\n'
            f'<text x="8" y="19" font-size="14" font-weight="600" fill="#1b1b1b">'
            f"{_text(title or 'fastprof flame graph')}</text>\n"
            f'<text x="8" y="36" fill="#5f6368">{_text(summary)}</text>\n'
            f'<g transform="translate(0,{_HEADER})">\n'
        )
        return head + "".join(rows) + "</g>\n</svg>\n"

    def _box(self, x: float, depth: int, w: float, fill: str, label: str, tip: str) -> str:
        y = depth * self.row_height
        drawn = w - 1 if w > 2 else w
        room = int((w - 6) / _CHAR_WIDTH)
        text = ""
        if room >= 2:
            shown = label if len(label) <= room else label[: room - 1] + "\u2026"
            text = (
                f'<text x="{x + 3:.2f}" y="{y + self.row_height / 2 + 4:.1f}" fill="#1b1b1b">'
                f"{_text(shown)}</text>"
            )
        return (
            f"<g><title>{_text(tip)}</title>"
            f'<rect x="{x:.2f}" y="{y}" width="{drawn:.2f}" height="{self.row_height - 1}" '
            f'fill="{fill}"/>{text}</g>\n'
        )

    def _frame(
        self, node: Node, x: float, depth: int, w: float, whole: float, is_root: bool
    ) -> str:
        label = "all" if is_root else node.function
        h = name_hash(label)
        library = is_root or is_library_file(node.file)
        fill = library_color(h) if library else user_color(h)
        share = node.total / whole * 100 if whole > 0 else 0.0
        where = "" if is_root else location(node.file, node.line)
        tip = f"{label}{f' ({where})' if where else ''}\n"
        tip += f"total {ms(node.total)} ({share:.1f}%), self {ms(node.self_time)}"
        if node.await_time > 0:
            tip += f", await {ms(node.await_time)}"
        if not is_root:
            tip += "\nlibrary" if library else "\nyour code"
        return self._box(x, depth, w, fill, label, tip)

    def _await(self, node: Node, x: float, depth: int, w: float, whole: float) -> str:
        share = node.await_time / whole * 100 if whole > 0 else 0.0
        tip = f"{AWAIT_FRAME} in {node.function}\nawait {ms(node.await_time)} ({share:.1f}%)"
        return self._box(x, depth, w, _AWAIT_COLOR, AWAIT_FRAME, tip)
