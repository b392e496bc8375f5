from __future__ import annotations

import random

import pytest

from fastprof.model import CallTree, FrameKey, Node, is_library_file

A: FrameKey = ("handler", "/app/main.py", 10)
B: FrameKey = ("load", "/app/db.py", 3)
C: FrameKey = ("render", "/app/main.py", 40)


def invariant(node: Node) -> None:
    """total == self + await + sum(children) everywhere."""
    expected = node.self_time + node.await_time + sum(c.total for c in node.children.values())
    assert node.total == pytest.approx(expected, abs=1e-12)
    for child in node.children.values():
        invariant(child)


def random_tree(seed: int) -> CallTree:
    rng = random.Random(seed)
    keys = [(f"f{i}", f"/src/m{i % 3}.py", i) for i in range(8)]
    tree = CallTree(backend="test", duration=rng.random(), interval=0.001, meta={"seed": seed})
    for _ in range(60):
        stack = [rng.choice(keys) for _ in range(rng.randint(0, 6))]
        tree.add_stack(stack, rng.random() / 10, awaiting=rng.random() < 0.2)
    return tree


def test_add_stack_fills_total_self_await_and_samples() -> None:
    tree = CallTree()
    tree.add_stack([A, B], 0.5)
    tree.add_stack([A, C], 0.25, awaiting=True)
    tree.add_stack([A], 0.125)
    handler = tree.root.children[A]
    assert (handler.total, handler.self_time, handler.samples) == (0.875, 0.125, 3)
    assert handler.children[B].self_time == 0.5
    assert handler.children[C].await_time == 0.25 and handler.children[C].self_time == 0
    assert tree.total == 0.875
    invariant(tree.root)


def test_merge_sums_trees_and_keeps_the_invariant() -> None:
    trees = [random_tree(seed) for seed in range(5)]
    merged = CallTree.merge(trees)
    assert merged.total == pytest.approx(sum(t.total for t in trees))
    assert merged.meta["merged"] == 5 and merged.backend == "test" and merged.interval == 0.001
    assert merged.root.samples == sum(t.root.samples for t in trees)
    invariant(merged.root)
    # merging does not touch the inputs
    assert trees[0] == random_tree(0)


def test_json_round_trip_is_lossless() -> None:
    for seed in range(10):
        tree = random_tree(seed)
        again = CallTree.from_json(tree.to_json())
        assert again == tree
        assert again.to_json() == tree.to_json()


def test_from_json_rejects_other_documents() -> None:
    with pytest.raises(ValueError, match="not a fastprof call tree"):
        CallTree.from_dict({"schema": "other"})  # type: ignore[typeddict-item]


def test_graft_puts_thread_work_under_the_awaiting_frame_without_double_counting() -> None:
    tree = CallTree()
    # the request waited 0.3 s in anyio for its worker thread
    tree.add_stack([A, ("run_sync", "/site-packages/anyio/to_thread.py", 1)], 0.3, awaiting=True)
    thread = CallTree()
    thread.add_stack([("work", "/app/work.py", 5)], 0.25)
    tree.graft([A], thread.root)
    handler = tree.root.children[A]
    assert handler.children[("work", "/app/work.py", 5)].total == 0.25
    # 0.25 of the 0.3 s wait was the thread working; the total stays the wall time
    assert tree.total == pytest.approx(0.3)
    run_sync = handler.children[("run_sync", "/site-packages/anyio/to_thread.py", 1)]
    assert run_sync.await_time == pytest.approx(0.05)
    invariant(tree.root)


def test_graft_creates_missing_path() -> None:
    tree = CallTree()
    sub = CallTree()
    sub.add_stack([C], 0.1)
    tree.graft([A, B], sub.root)
    assert tree.root.children[A].children[B].children[C].total == 0.1
    assert tree.total == pytest.approx(0.1)
    invariant(tree.root)


def test_walk_find_and_functions() -> None:
    tree = CallTree()
    tree.add_stack([A, B], 0.1)
    tree.add_stack([C, B], 0.1)
    assert [n.function for _, n in tree.walk()] == ["handler", "load", "render", "load"]
    assert len(tree.find("load")) == 2
    assert tree.functions() == {"handler", "load", "render"}
    parents, node = list(tree.walk())[1]
    assert [p.function for p in parents] == ["handler"] and node.function == "load"


def test_library_classification() -> None:
    assert is_library_file("/usr/lib/python3.11/site-packages/starlette/routing.py")
    assert is_library_file("<built-in>") and is_library_file("")
    assert is_library_file(random.__file__)  # the standard library
    assert not is_library_file(__file__)


def test_deep_trees_serialise_and_merge_without_recursion_limits() -> None:
    tree = CallTree()
    deep = [(f"f{i}", "/app/deep.py", i) for i in range(3000)]
    tree.add_stack(deep, 0.5)
    again = CallTree.from_json(tree.to_json())
    assert again == tree
    merged = CallTree.merge([tree, again])
    assert merged.total == 1.0
    sub = CallTree()
    sub.add_stack([("leaf", "/app/x.py", 1)], 0.1)
    tree.add_stack([*deep[:10], ("wait", "/app/x.py", 2)], 0.2, awaiting=True)
    tree.graft(deep[:5], sub.root)
    invariant_iterative = [n for _, n in tree.walk()]
    assert len(invariant_iterative) == 3002


def test_rows_reject_malformed_input() -> None:
    with pytest.raises(ValueError, match="at least its root row"):
        Node.from_rows([])
    with pytest.raises(ValueError, match="one root row"):
        Node.from_rows([(-1, "<root>", "", 0, 0, 0, 0, 0), (-1, "x", "", 0, 0, 0, 0, 0)])


def test_fastprof_itself_is_not_user_code() -> None:
    import fastprof.middleware

    assert is_library_file(fastprof.middleware.__file__)
