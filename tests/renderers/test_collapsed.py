from __future__ import annotations

import random

import pytest

from fastprof.model import CallTree
from fastprof.renderers import render
from fastprof.renderers.collapsed import CollapsedRenderer, frame_label

MAIN = ("main", "app/main.py", 1)
QUERY = ("query", "app/db.py", 7)
SLEEP = ("sleep", "asyncio/tasks.py", 600)


def build() -> CallTree:
    tree = CallTree(backend="test")
    tree.add_stack([MAIN], 0.005)
    tree.add_stack([MAIN, QUERY], 0.020)
    tree.add_stack([MAIN, QUERY], 0.050, awaiting=True)
    tree.add_stack([MAIN, SLEEP], 0.0255, awaiting=True)
    return tree


def parse(text: str) -> list[tuple[list[str], int]]:
    """Read collapsed stacks the way flamegraph.pl does: frames split on ';', count last."""
    out = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        out.append((stack.split(";"), int(count)))
    return out


def test_exact_lines() -> None:
    assert render(build(), "collapsed").splitlines() == [
        "main (app/main.py:1) 5000",
        "main (app/main.py:1);query (app/db.py:7) 20000",
        "main (app/main.py:1);query (app/db.py:7);[await] 50000",
        "main (app/main.py:1);sleep (asyncio/tasks.py:600);[await] 25500",
    ]


def test_weights_add_up_to_the_total_in_microseconds() -> None:
    rng = random.Random(7)
    tree = CallTree()
    for _ in range(2000):
        depth = rng.randint(1, 8)
        stack = [(f"f{rng.randint(0, 5)}", "m.py", d) for d in range(depth)]
        tree.add_stack(stack, rng.random() * 0.0007, awaiting=rng.random() < 0.3)
    lines = parse(render(tree, "collapsed"))
    assert all(count > 0 for _, count in lines)
    assert abs(sum(count for _, count in lines) - tree.total * 1e6) <= max(1, len(lines))
    # cumulative rounding keeps it within one unit overall, not one per line
    assert abs(sum(count for _, count in lines) - tree.total * 1e6) <= 1


def test_hostile_names_cannot_break_the_format() -> None:
    tree = CallTree()
    tree.add_stack([("a;b\nc 12", "x;y.py", 3), ("leaf\r\n", "f.py", 1)], 0.001)
    lines = parse(render(tree, "collapsed"))
    assert lines == [(["a,b c 12 (x,y.py:3)", "leaf   (f.py:1)"], 1000)]


def test_frame_label_without_file() -> None:
    assert frame_label(("<root>", "", 0)) == "<root>"
    assert frame_label(("f", "m.py", 4)) == "f (m.py:4)"


def test_sample_counts() -> None:
    tree = CallTree()
    tree.add_stack([MAIN], 0.001, samples=3)
    tree.add_stack([MAIN, QUERY], 0.002, samples=4)
    tree.add_stack([MAIN, SLEEP], 0.005, awaiting=True, samples=5)
    lines = parse(render(tree, "collapsed", unit="samples"))
    assert lines == [
        (["main (app/main.py:1)"], 3),
        (["main (app/main.py:1)", "query (app/db.py:7)"], 4),
        (["main (app/main.py:1)", "sleep (asyncio/tasks.py:600)", "[await]"], 5),
    ]
    assert sum(count for _, count in lines) == tree.root.samples


def test_bad_unit() -> None:
    with pytest.raises(ValueError, match="unit"):
        CollapsedRenderer(unit="ms")  # type: ignore[arg-type]


def test_empty_tree_renders_nothing() -> None:
    assert render(CallTree(), "collapsed") == ""
