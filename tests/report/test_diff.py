from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fastprof.model import CallTree
from fastprof.report.diff import diff_flame_data, diff_payload, render_diff
from fastprof.scan.diff import diff_results
from tests.report.fixtures import sample


def tree(*stacks: tuple[list[str], float]) -> CallTree:
    t = CallTree(backend="test")
    for names, time in stacks:
        t.add_stack([(n, "/srv/app/m.py", 1) for n in names], time)
    return t


def by_name(data: object) -> dict[str, tuple[float, float, float]]:
    assert isinstance(data, dict)
    names = [data["strings"][i] for i in data["fn"]]
    return {
        n: (data["total"][k], data["diff"]["a"][k], data["diff"]["b"][k])
        for k, n in enumerate(names)
    }


def test_union_of_both_trees_with_each_side_kept() -> None:
    a = tree((["main", "slow"], 0.08), (["main", "both"], 0.02))
    b = tree((["main", "both"], 0.03), (["main", "new"], 0.01))
    data = diff_flame_data(a, b)
    frames = by_name(data)
    assert frames["slow"] == pytest.approx((0.08, 0.08, 0.0))  # gone in B, still drawn
    assert frames["new"] == pytest.approx((0.01, 0.0, 0.01))  # only in B
    assert frames["both"] == pytest.approx((0.05, 0.02, 0.03))
    assert frames["<root>"] == pytest.approx((0.14, 0.10, 0.04))
    # pre-order, parents first, heaviest sibling first
    assert data["parent"][0] == -1
    names = [data["strings"][i] for i in data["fn"]]
    assert names == ["<root>", "main", "slow", "both", "new"]
    assert all(w == 0 for w in data["wait"])


def test_children_never_outgrow_their_parent() -> None:
    a = tree((["x", "y", "z"], 0.3), (["x", "q"], 0.1))
    b = tree((["x", "y"], 0.2), (["w"], 0.4))
    data = diff_flame_data(a, b, 2.0, 0.5)
    kids: dict[int, float] = {}
    for k, parent in enumerate(data["parent"]):
        if parent >= 0:
            kids[parent] = kids.get(parent, 0.0) + data["total"][k]
    for parent, width in kids.items():
        assert width <= data["total"][parent] + 1e-9
    assert data["total"][0] == pytest.approx(0.4 * 2.0 + 0.6 * 0.5)


def test_one_side_missing() -> None:
    b = tree((["main"], 0.01))
    data = diff_flame_data(None, b)
    assert data["diff"]["a"] == [0.0, 0.0] and data["diff"]["b"] == pytest.approx([0.01, 0.01])


def test_payload_scales_each_tree_to_its_mean_latency(tmp_path: Path) -> None:
    result_a, trees_a = sample(tmp_path)
    result_b, trees_b = sample(tmp_path)
    result_b["routes"][1]["latency_ms"]["mean"] = 3.0  # half of A's 6 ms
    result_b["routes"][1]["latency_ms"]["p99"] = 999.0
    result_b["findings"] = result_b["findings"][1:]
    compared = diff_results(result_a, result_b, "before", "after")  # type: ignore[arg-type]
    data = diff_payload(compared, result_a, result_b, trees_a, trees_b)  # type: ignore[arg-type]
    authors = data["routes"][1]
    assert authors["route"] == "GET /authors" and authors["regression"] is True
    assert data["routes"][0]["regression"] is False
    flame = data["flames"][authors["flame"]]  # type: ignore[index]
    assert flame["diff"]["a"][0] == pytest.approx(0.006)
    assert flame["diff"]["b"][0] == pytest.approx(0.003)
    assert [data["findings"][i]["kind"] for i in data["fixed"]] == ["n_plus_one"]
    assert data["new"] == [] and len(data["still_open"]) == 1
    assert data["a"]["name"] == "before" and data["b"]["target"] == "shop.main:app"


def test_diff_page(tmp_path: Path) -> None:
    result, trees = sample(tmp_path)
    compared = diff_results(result, result, "a</title><script>x", "b")  # type: ignore[arg-type]
    page = render_diff(diff_payload(compared, result, result, trees, trees))  # type: ignore[arg-type]
    assert "<script>x" not in page
    match = re.search(r'id="fastprof-report">(.*?)</script>', page, re.DOTALL)
    assert match is not None and json.loads(match.group(1))["kind"] == "diff"
