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

import sys
import sysconfig
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

import orjson

FrameKey = tuple[str, str, int]
"""``(function, file, first line)`` - what makes two frames the same frame."""

ROOT_KEY: FrameKey = ("<root>", "", 0)


class NodeDict(TypedDict):
    f: str
    file: str
    l: int  # noqa: E741 - short keys keep stored profiles small
    t: float
    s: float
    a: float
    n: int
    c: list[NodeDict]


class CallTreeDict(TypedDict):
    schema: str
    backend: str
    duration: float
    interval: float | None
    meta: dict[str, Any]
    root: NodeDict


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
        self.total += other.total
        self.self_time += other.self_time
        self.await_time += other.await_time
        self.samples += other.samples
        for key, theirs in other.children.items():
            self.child(key).add(theirs)

    def copy(self) -> Node:
        new = Node(self.function, self.file, self.line)
        new.add(self)
        return new

    def to_dict(self) -> NodeDict:
        return {
            "f": self.function,
            "file": self.file,
            "l": self.line,
            "t": self.total,
            "s": self.self_time,
            "a": self.await_time,
            "n": self.samples,
            "c": [child.to_dict() for child in self.children.values()],
        }

    @classmethod
    def from_dict(cls, data: NodeDict) -> Node:
        node = cls(data["f"], data["file"], data["l"], data["t"], data["s"], data["a"], data["n"])
        for child in data["c"]:
            built = cls.from_dict(child)
            node.children[built.key] = built
        return node

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Node):
            return NotImplemented
        return self.to_dict() == other.to_dict()

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
            "root": self.root.to_dict(),
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
            root=Node.from_dict(data["root"]),
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
    """Remove up to ``amount`` of await time from ``node``'s subtree; return what was removed."""
    removed = 0.0
    if node.await_time > 0 and amount > 0:
        take = min(node.await_time, amount)
        node.await_time -= take
        removed += take
    for child in node.children.values():
        if removed >= amount:
            break
        got = _take_await(child, amount - removed)
        child.total -= got
        removed += got
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


def is_library_file(file: str) -> bool:
    """True for the standard library, installed packages and synthetic frames.

    Everything else is the user's code: the part of a tree worth colouring apart and the part
    detectors point at.
    """
    if not file or file.startswith("<"):
        return True
    if "site-packages" in file or "dist-packages" in file:
        return True
    return file.startswith(_LIBRARY_PREFIXES)
