"""The speedscope renderer, checked against speedscope's published file-format schema.

tests/data/speedscope-file-format-schema.json is a verbatim copy of file-format-schema.json
from https://github.com/jlfwong/speedscope (generated there from src/lib/file-format-spec.ts;
served at https://www.speedscope.app/file-format-schema.json).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from fastprof.model import CallTree
from fastprof.renderers import render
from fastprof.renderers.speedscope import SCHEMA_URL, render_many

SCHEMA: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "data" / "speedscope-file-format-schema.json").read_text()
)

MAIN = ("main", "app/main.py", 1)
QUERY = ("query", "app/db.py", 7)
SLEEP = ("sleep", "/usr/lib/python3.12/asyncio/tasks.py", 600)


def build() -> CallTree:
    tree = CallTree(backend="test", duration=0.1)
    tree.add_stack([MAIN], 0.005)
    tree.add_stack([MAIN, QUERY], 0.020)
    tree.add_stack([MAIN, QUERY], 0.050, awaiting=True)
    tree.add_stack([MAIN, SLEEP], 0.025, awaiting=True)
    return tree


def validate(doc: dict[str, Any]) -> None:
    jsonschema.validate(doc, SCHEMA)
    frames = doc["shared"]["frames"]
    for profile in doc["profiles"]:
        assert len(profile["samples"]) == len(profile["weights"])
        for stack in profile["samples"]:
            assert stack, "speedscope cannot place an empty stack"
            assert all(0 <= index < len(frames) for index in stack)


def stacks(doc: dict[str, Any], profile: int = 0) -> dict[tuple[str, ...], float]:
    frames = doc["shared"]["frames"]
    p = doc["profiles"][profile]
    return {
        tuple(frames[i]["name"] for i in stack): weight
        for stack, weight in zip(p["samples"], p["weights"], strict=True)
    }


def test_schema_is_the_real_one_and_rejects_garbage() -> None:
    assert SCHEMA["$ref"] == "#/definitions/FileFormat.File"
    assert "FileFormat.SampledProfile" in SCHEMA["definitions"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"$schema": SCHEMA_URL, "shared": {}, "profiles": []}, SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            {
                "$schema": SCHEMA_URL,
                "shared": {"frames": []},
                "profiles": [{"type": "sampled", "name": "x", "unit": "seconds"}],
            },
            SCHEMA,
        )


def test_output_validates_and_holds_the_tree() -> None:
    doc = json.loads(render(build(), "speedscope", title="GET /x"))
    validate(doc)
    assert doc["$schema"] == SCHEMA_URL
    assert doc["name"] == "GET /x"
    (profile,) = doc["profiles"]
    assert profile["type"] == "sampled"
    assert profile["unit"] == "seconds"
    assert profile["name"] == "GET /x"
    assert profile["startValue"] == 0
    assert profile["endValue"] == pytest.approx(0.1)
    assert stacks(doc) == pytest.approx(
        {
            ("main",): 0.005,
            ("main", "query"): 0.020,
            ("main", "query", "[await]"): 0.050,
            ("main", "sleep", "[await]"): 0.025,
        }
    )
    assert sum(profile["weights"]) == pytest.approx(build().total)


def test_frames_carry_file_and_line_and_are_shared() -> None:
    doc = json.loads(render(build(), "speedscope"))
    frames = doc["shared"]["frames"]
    assert {"name": "query", "file": "app/db.py", "line": 7} in frames
    assert {"name": "[await]", "file": ""} in frames
    names = [f["name"] for f in frames]
    assert len(names) == len(set(names)) == 4  # main, query, [await], sleep - each once


def test_render_many_makes_one_profile_per_tree() -> None:
    other = CallTree(backend="test")
    other.add_stack([MAIN, ("other", "app/other.py", 3)], 0.5)
    doc = json.loads(render_many({"GET /a": build(), "GET /b": other}, title="routes"))
    validate(doc)
    assert [p["name"] for p in doc["profiles"]] == ["GET /a", "GET /b"]
    assert doc["name"] == "routes"
    assert [f["name"] for f in doc["shared"]["frames"]].count("main") == 1
    assert stacks(doc, 1) == {("main", "other"): 0.5}


def test_time_on_the_root_itself_is_kept() -> None:
    tree = build()
    tree.add_stack([], 0.01)
    doc = json.loads(render(tree, "speedscope"))
    validate(doc)
    assert stacks(doc)[("<root>",)] == pytest.approx(0.01)
    assert sum(doc["profiles"][0]["weights"]) == pytest.approx(tree.total)


def test_empty_tree_is_still_a_valid_file() -> None:
    doc = json.loads(render(CallTree(), "speedscope"))
    validate(doc)
    assert doc["profiles"][0]["samples"] == []
