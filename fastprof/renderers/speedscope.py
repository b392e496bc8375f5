"""The speedscope file format (https://www.speedscope.app/file-format-schema.json).

Each tree becomes one ``"sampled"`` profile. A call tree has no time order left, so every node
contributes at most two weighted samples: its path with its self time, and its path plus a
synthetic ``[await]`` frame with its await time. Speedscope's "left heavy" and "sandwich" views
then show exactly the tree; its "time order" view shows the tree's depth-first order.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

import orjson

from fastprof.model import ROOT_KEY, CallTree, FrameKey, Node
from fastprof.renderers.base import AWAIT_FRAME, Renderer

SCHEMA_URL = "https://www.speedscope.app/file-format-schema.json"


class FrameDict(TypedDict):
    name: str
    file: str
    line: NotRequired[int]


class SampledProfileDict(TypedDict):
    type: Literal["sampled"]
    name: str
    unit: Literal["seconds"]
    startValue: float
    endValue: float
    samples: list[list[int]]
    weights: list[float]


class SharedDict(TypedDict):
    frames: list[FrameDict]


SpeedscopeFile = TypedDict(
    "SpeedscopeFile",
    {
        "$schema": str,
        "name": str,
        "exporter": str,
        "activeProfileIndex": int,
        "shared": SharedDict,
        "profiles": list[SampledProfileDict],
    },
)

_AWAIT_KEY: FrameKey = (AWAIT_FRAME, "", 0)


class _Frames:
    """The shared frame table: one index per distinct frame key."""

    def __init__(self) -> None:
        self.index: dict[FrameKey, int] = {}
        self.frames: list[FrameDict] = []

    def __call__(self, key: FrameKey) -> int:
        at = self.index.get(key)
        if at is None:
            function, file, line = key
            frame: FrameDict = {"name": function, "file": file}
            if line > 0:
                frame["line"] = line
            at = self.index[key] = len(self.frames)
            self.frames.append(frame)
        return at


def _profile(name: str, tree: CallTree, frames: _Frames) -> SampledProfileDict:
    samples: list[list[int]] = []
    weights: list[float] = []

    def emit(path: list[int], node: Node) -> None:
        if node.self_time > 0:
            samples.append(path)
            weights.append(node.self_time)
        if node.await_time > 0:
            samples.append([*path, frames(_AWAIT_KEY)])
            weights.append(node.await_time)

    # Time recorded on the root itself (a sample with an empty stack) keeps the totals honest.
    if tree.root.self_time > 0 or tree.root.await_time > 0:
        emit([frames(ROOT_KEY)], tree.root)
    for parents, node in tree.walk():
        emit([frames(n.key) for n in (*parents, node)], node)
    return {
        "type": "sampled",
        "name": name,
        "unit": "seconds",
        "startValue": 0.0,
        "endValue": sum(weights),
        "samples": samples,
        "weights": weights,
    }


def to_speedscope(trees: dict[str, CallTree], *, title: str = "") -> SpeedscopeFile:
    """The speedscope document for ``trees`` (profile name -> tree), as a dict."""
    frames = _Frames()
    profiles = [_profile(name, tree, frames) for name, tree in trees.items()]
    return {
        "$schema": SCHEMA_URL,
        "name": title or next(iter(trees), "fastprof"),
        "exporter": "fastprof",
        "activeProfileIndex": 0,
        "shared": {"frames": frames.frames},
        "profiles": profiles,
    }


def render_many(trees: dict[str, CallTree], *, title: str = "") -> str:
    """One speedscope file holding a profile per tree (e.g. one per route), in dict order."""
    return orjson.dumps(to_speedscope(trees, title=title)).decode()


class SpeedscopeRenderer(Renderer):
    """A speedscope JSON file; open it at https://www.speedscope.app or with ``speedscope FILE``."""

    name = "speedscope"
    extension = ".speedscope.json"

    def render(self, tree: CallTree, *, title: str = "") -> str:
        return render_many({title or f"{tree.backend} profile": tree}, title=title)
