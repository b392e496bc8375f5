"""Collapsed stacks, the input of flamegraph.pl, inferno and Pyroscope: ``a;b;c 123``.

One line per frame with self time (and one more, ending in ``[await]``, per frame with await
time). Frames read ``function (file:line)``; ``;`` and line breaks in names are replaced so a
hostile or odd function name cannot split a frame or a line.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from fastprof.model import CallTree, FrameKey, Node
from fastprof.renderers.base import AWAIT_FRAME, Renderer

Unit = Literal["us", "samples"]

_UNSAFE = str.maketrans({";": ",", "\n": " ", "\r": " ", "\x00": " "})


def frame_label(key: FrameKey) -> str:
    """``function (file:line)``, made safe for the collapsed format."""
    function, file, line = key
    label = function if not file else f"{function} ({file}:{line})"
    return label.translate(_UNSAFE)


class CollapsedRenderer(Renderer):
    """Collapsed stacks weighted in integer microseconds (``unit="us"``) or samples."""

    name = "collapsed"
    extension = ".collapsed"

    def __init__(self, *, unit: Unit = "us") -> None:
        if unit not in ("us", "samples"):
            raise ValueError(f"unit must be 'us' or 'samples', got {unit!r}")
        self.unit: Unit = unit

    def render(self, tree: CallTree, *, title: str = "") -> str:
        # The format has no room for a title; it is accepted for the common interface.
        lines: list[str] = []
        # Rounding the running sum, not each weight, keeps the file's total within half a unit
        # of the tree's total however many tiny frames there are.
        exact = 0.0
        written = 0
        for stack, amount in self._weights(tree):
            exact += amount
            weight = round(exact) - written
            if weight > 0:
                written += weight
                lines.append(f"{stack} {weight}")
        return "\n".join(lines) + "\n" if lines else ""

    def _weights(self, tree: CallTree) -> Iterator[tuple[str, float]]:
        """``(stack, weight in the chosen unit)`` for every leaf of work, depth first."""
        nodes: list[tuple[str, Node]] = []
        if tree.root.self_time > 0 or tree.root.await_time > 0:
            nodes.append((frame_label(tree.root.key), tree.root))
        labels: dict[int, str] = {}
        for parents, node in tree.walk():
            parent = labels.get(id(parents[-1])) if parents else None
            label = frame_label(node.key) if parent is None else f"{parent};{frame_label(node.key)}"
            labels[id(node)] = label
            nodes.append((label, node))
        for stack, node in nodes:
            own, waiting = self._split(node)
            if own > 0:
                yield stack, own
            if waiting > 0:
                yield f"{stack};{AWAIT_FRAME}", waiting

    def _split(self, node: Node) -> tuple[float, float]:
        if self.unit == "us":
            return node.self_time * 1e6, node.await_time * 1e6
        # Samples that ended in this frame, shared between running and awaiting by time.
        ended = node.samples - sum(child.samples for child in node.children.values())
        if ended <= 0:
            return 0.0, 0.0
        busy = node.self_time + node.await_time
        if busy <= 0:
            return float(ended), 0.0
        own = ended * node.self_time / busy
        return own, ended - own
