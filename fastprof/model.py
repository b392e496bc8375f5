"""The call-tree model every backend produces and every renderer and detector reads.

A :class:`CallTree` is a tree of :class:`Node` objects, one per distinct call path. A node is
identified by its frame key ``(function, file, line)`` - ``line`` is the line the function starts
on, so samples taken at different lines of one function merge into one node. Times are seconds:

* ``total``: inclusive time (everything under this frame),
* ``self_time``: time this frame was on top of the stack, running,
* ``await_time``: time this frame was on top of the stack while suspended in an ``await``
  (only backends that know it fill this in - pyinstrument does, a thread sampler does not),
* ``samples``: how many samples passed through this frame.

``total == self_time + await_time + sum(child.total)`` holds for every node.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

import orjson

FrameKey = tuple[str, str, int]
"""``(function, file, first line)`` - what makes two frames the same frame."""

ROOT_KEY: FrameKey = ("<root>", "", 0)


# One node, flat: [parent index, function, file, line, total, self, await, samples].
# Nodes are listed parents first (the root is row 0, parent -1), so a tree of any depth is a
# flat list - nested JSON would hit orjson's nesting limit (254) on a 127-frame stack.
NodeRow = tuple[int, str, str, int, float, float, float, int]


class CallTreeDict(TypedDict):
    schema: str
    backend: str
    duration: float
    interval: float | None
    meta: dict[str, Any]
    nodes: list[NodeRow]


SCHEMA = "fastprof.tree/1"


@dataclass(slots=True, eq=False)
class Node:
    """One call path in a :class:`CallTree`."""

    function: str
    file: str
    line: int
    total: float = 0.0
    self_time: float = 0.0
    await_time: float = 0.0
    samples: int = 0
    children: dict[FrameKey, Node] = field(default_factory=dict)

    @property
    def key(self) -> FrameKey:
        return (self.function, self.file, self.line)

    def child(self, key: FrameKey) -> Node:
        """The child for ``key``, created empty if missing."""
        node = self.children.get(key)
        if node is None:
            node = self.children[key] = Node(*key)
        return node

    def add(self, other: Node) -> None:
        """Add ``other``'s times (and its whole subtree) into this node."""
        pending = [(self, other)]
        while pending:  # iterative: stacks can be as deep as the recursion limit
            mine, theirs = pending.pop()
            mine.total += theirs.total
            mine.self_time += theirs.self_time
            mine.await_time += theirs.await_time
            mine.samples += theirs.samples
            pending.extend((mine.child(key), child) for key, child in theirs.children.items())

    def copy(self) -> Node:
        new = Node(self.function, self.file, self.line)
        new.add(self)
        return new

    def rows(self) -> list[NodeRow]:
        """This subtree as flat rows, parents before children (see :data:`NodeRow`)."""
        rows: list[NodeRow] = []
        pending: list[tuple[int, Node]] = [(-1, self)]
        while pending:
            parent, node = pending.pop()
            index = len(rows)
            rows.append(
                (
                    parent,
                    node.function,
                    node.file,
                    node.line,
                    node.total,
                    node.self_time,
                    node.await_time,
                    node.samples,
                )
            )
            pending.extend((index, child) for child in reversed(node.children.values()))
        return rows

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[Any]]) -> Node:
        """The inverse of :meth:`rows`."""
        nodes: list[Node] = []
        for row in rows:
            parent, function, file, line, total, self_time, await_time, samples = row
            node = cls(function, file, line, total, self_time, await_time, samples)
            if parent >= 0:
                nodes[parent].children[node.key] = node
            elif nodes:
                raise ValueError("a call tree has one root row (parent -1), and it comes first")
            nodes.append(node)
        if not nodes:
            raise ValueError("a call tree needs at least its root row")
        return nodes[0]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Node):
            return NotImplemented
        return self.rows() == other.rows()

    def __repr__(self) -> str:
        return f"<Node {self.function} {self.file}:{self.line} total={self.total:.6f}>"


@dataclass(slots=True, eq=False)
class CallTree:
    """A call tree: one capture, or many merged (a route aggregated over requests)."""

    backend: str = "unknown"
    duration: float = 0.0
    interval: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    root: Node = field(default_factory=lambda: Node(*ROOT_KEY))

    @property
    def total(self) -> float:
        return self.root.total

    def add_stack(
        self,
        stack: Sequence[FrameKey],
        time: float,
        *,
        awaiting: bool = False,
        samples: int = 1,
    ) -> None:
        """Record one sample: ``stack`` is outermost first; ``time`` goes to every frame on it."""
        node = self.root
        node.total += time
        node.samples += samples
        for key in stack:
            node = node.child(key)
            node.total += time
            node.samples += samples
        if awaiting:
            node.await_time += time
        else:
            node.self_time += time

    def graft(self, path: Sequence[FrameKey], subtree: Node, *, absorb_await: bool = True) -> None:
        """Hang ``subtree``'s children under the node at ``path`` (created if missing).

        Used for work a request hands to a thread: the thread's frames appear under the frame
        that awaited them. With ``absorb_await`` the await time already recorded below ``path``
        (the request was waiting for that very thread) is reduced by the grafted time, so no
        second of wall time is counted twice.
        """
        added = subtree.total
        nodes = [self.root]
        for key in path:
            nodes.append(nodes[-1].child(key))
        anchor = nodes[-1]
        removed = _take_await(anchor, added) if absorb_await else 0.0
        for key, child in subtree.children.items():
            anchor.child(key).add(child)
        anchor.self_time += subtree.self_time
        anchor.await_time += subtree.await_time
        delta = added - removed
        for node in nodes:
            node.total += delta
            node.samples += subtree.samples
        # _take_await lowered totals strictly inside the anchor's subtree; the anchor and its
        # ancestors get the net change here.

    def walk(self) -> Iterator[tuple[tuple[Node, ...], Node]]:
        """Every node with its ancestors (root excluded from both), depth first."""
        stack: list[tuple[tuple[Node, ...], Node]] = [
            ((), child) for child in reversed(self.root.children.values())
        ]
        while stack:
            parents, node = stack.pop()
            yield parents, node
            below = (*parents, node)
            stack.extend((below, child) for child in reversed(node.children.values()))

    def find(self, function: str) -> list[Node]:
        """All nodes whose function name is ``function``."""
        return [node for _, node in self.walk() if node.function == function]

    def functions(self) -> set[str]:
        return {node.function for _, node in self.walk()}

    def copy(self) -> CallTree:
        return CallTree(
            self.backend, self.duration, self.interval, dict(self.meta), self.root.copy()
        )

    @classmethod
    def merge(cls, trees: Iterable[CallTree]) -> CallTree:
        """One tree holding the sum of ``trees`` (e.g. every profiled request of a route)."""
        merged = cls(backend="", meta={"merged": 0})
        backends: set[str] = set()
        intervals: set[float | None] = set()
        for tree in trees:
            merged.root.add(tree.root)
            merged.duration += tree.duration
            merged.meta["merged"] += 1
            backends.add(tree.backend)
            intervals.add(tree.interval)
        merged.backend = "+".join(sorted(backends)) or "unknown"
        merged.interval = intervals.pop() if len(intervals) == 1 else None
        return merged

    def to_dict(self) -> CallTreeDict:
        return {
            "schema": SCHEMA,
            "backend": self.backend,
            "duration": self.duration,
            "interval": self.interval,
            "meta": self.meta,
            "nodes": self.root.rows(),
        }

    @classmethod
    def from_dict(cls, data: CallTreeDict) -> CallTree:
        if data.get("schema") != SCHEMA:
            raise ValueError(
                f"not a fastprof call tree: schema is {data.get('schema')!r}, expected {SCHEMA!r}"
            )
        return cls(
            backend=data["backend"],
            duration=data["duration"],
            interval=data["interval"],
            meta=dict(data["meta"]),
            root=Node.from_rows(data["nodes"]),
        )

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_json(cls, raw: bytes | str) -> CallTree:
        return cls.from_dict(orjson.loads(raw))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CallTree):
            return NotImplemented
        return self.to_dict() == other.to_dict()


def _take_await(node: Node, amount: float) -> float:
    """Remove up to ``amount`` of await time from ``node``'s subtree; return what was removed.

    The totals of the nodes strictly below ``node`` drop with it; ``node``'s own total is the
    caller's to fix.
    """
    removed = 0.0
    # depth first; ``path`` holds the nodes strictly below ``node`` down to ``current``
    pending: list[tuple[Node, tuple[Node, ...]]] = [(node, ())]
    while pending and removed < amount:
        current, path = pending.pop()
        if current.await_time > 0:
            take = min(current.await_time, amount - removed)
            current.await_time -= take
            removed += take
            for below in path:
                below.total -= take
        pending.extend((child, (*path, child)) for child in reversed(current.children.values()))
    return removed


_LIBRARY_PREFIXES: tuple[str, ...] = tuple(
    {
        p
        for p in (
            sysconfig.get_paths().get("stdlib"),
            sysconfig.get_paths().get("platstdlib"),
            sysconfig.get_paths().get("purelib"),
            sysconfig.get_paths().get("platlib"),
            sys.base_prefix,
            sys.prefix,
        )
        if p
    }
)


_OWN_PREFIX = os.path.dirname(os.path.abspath(__file__)) + os.sep


def is_library_file(file: str) -> bool:
    """True for the standard library, installed packages, fastprof itself and synthetic frames.

    Everything else is the user's code: the part of a tree worth colouring apart and the part
    detectors point at.
    """
    if not file or file.startswith("<"):
        return True
    if "site-packages" in file or "dist-packages" in file:
        return True
    return file.startswith(_LIBRARY_PREFIXES) or file.startswith(_OWN_PREFIX)
