from __future__ import annotations

import os
from pathlib import Path

import pytest

from fastprof.model import CallTree
from fastprof.renderers import RENDERERS, render, renderer_class
from fastprof.renderers.base import Renderer, location, short_path
from fastprof.renderers.text import TextRenderer

LIB = "/venv/lib/python3.12/site-packages/jsonlib/enc.py"


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path / "app"


def build(app: Path) -> CallTree:
    handler = ("handler", str(app / "main.py"), 10)
    fetch = ("fetch", str(app / "db.py"), 3)
    render_ = ("render", str(app / "views.py"), 8)
    tree = CallTree(backend="test", duration=0.1)
    tree.add_stack([handler, fetch], 0.010)
    tree.add_stack([handler, fetch], 0.060, awaiting=True)
    tree.add_stack([handler, render_], 0.025)
    tree.add_stack([handler, render_, ("dumps", LIB, 5)], 0.0047)
    tree.add_stack([handler, ("log", str(app / "log.py"), 2)], 0.0003)  # 0.3%: under 0.5%
    return tree


EXPECTED = """\
backend: test  duration: 100.00 ms  samples: 5

100.00 ms 100.0%  handler  app/main.py:10  (self 0.00 ms)
├─ 70.00 ms 70.0%  fetch  app/db.py:3  (self 10.00 ms, await 60.00 ms)
└─ 29.70 ms 29.7%  render  app/views.py:8  (self 25.00 ms)
   └─ 4.70 ms 4.7%  dumps  jsonlib/enc.py:5  (self 4.70 ms)
"""


def test_renders_the_tree_heaviest_first(app_dir: Path) -> None:
    assert render(build(app_dir), "text") == EXPECTED


def test_min_percent_hides_small_frames(app_dir: Path) -> None:
    tree = build(app_dir)
    assert "log" not in render(tree, "text")
    shown = render(tree, "text", min_percent=0)
    assert "└─ 0.30 ms 0.3%  log  app/log.py:2  (self 0.30 ms)" in shown
    # the small frame is now the last child of handler, so fetch and render both get ├─
    assert "├─ 29.70 ms 29.7%  render" in shown
    assert "fetch" not in render(tree, "text", min_percent=75)


def test_max_depth_cuts_levels(app_dir: Path) -> None:
    text = render(build(app_dir), "text", max_depth=2)
    assert "render" in text
    assert "dumps" not in text
    one = render(build(app_dir), "text", max_depth=1)
    assert "handler" in one
    assert "fetch" not in one
    with pytest.raises(ValueError, match="max_depth"):
        TextRenderer(max_depth=0)


def test_title_and_merged_header(app_dir: Path) -> None:
    tree = CallTree.merge([build(app_dir), build(app_dir)])
    text = render(tree, "text", title="GET /users/{user_id}")
    first, second = text.splitlines()[:2]
    assert first == "GET /users/{user_id}"
    assert second == "backend: test  duration: 200.00 ms  samples: 10  merged: 2 profiles"


def test_await_only_shown_when_nonzero(app_dir: Path) -> None:
    lines = render(build(app_dir), "text").splitlines()
    assert [line for line in lines if "await" in line] == [lines[3]]
    assert lines[3].startswith("├─ 70.00 ms 70.0%  fetch")


def test_color_marks_user_code_apart_from_library(app_dir: Path) -> None:
    plain = render(build(app_dir), "text")
    assert "\x1b[" not in plain
    colored = render(build(app_dir), "text", color=True)
    lines = colored.splitlines()
    handler = next(line for line in lines if "handler" in line)
    dumps = next(line for line in lines if "dumps" in line)
    assert "\x1b[1mhandler\x1b[0m" in handler  # user code: bold
    assert "\x1b[2mdumps\x1b[0m" in dumps  # library: dim
    strip = [_strip_ansi(line) for line in colored.splitlines(keepends=True)]
    assert "".join(strip) == plain


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_control_characters_are_escaped() -> None:
    tree = CallTree()
    tree.add_stack([("evil\x1b[2J\n", "/srv/x\x07.py", 1)], 1.0)
    text = render(tree, "text", title="t\x1b]0;pwned\x07")
    assert "\x1b" not in text and "\x07" not in text
    assert "evil\\x1b[2J\\x0a" in text
    assert "/srv/x\\x07.py:1" in text
    assert text.startswith("t\\x1b]0;pwned\\x07\n")


def test_empty_tree() -> None:
    assert render(CallTree(backend="x"), "text").endswith("(no frames to show)\n")


def test_deep_tree_does_not_hit_the_recursion_limit() -> None:
    tree = CallTree()
    tree.add_stack([(f"f{i}", "app.py", i) for i in range(3000)], 1.0)
    assert len(render(tree, "text").splitlines()) == 3000 + 2


def test_short_path(tmp_path: Path) -> None:
    cwd = str(tmp_path)
    assert short_path(os.path.join(cwd, "app", "main.py"), cwd) == os.path.join("app", "main.py")
    assert short_path("/opt/venv/lib/python3.12/site-packages/starlette/routing.py", cwd) == (
        "starlette/routing.py"
    )
    assert short_path("/elsewhere/code.py", cwd) == "/elsewhere/code.py"
    assert short_path("<frozen runpy>", cwd) == "<frozen runpy>"
    assert location("", 0, cwd) == ""
    assert location("/elsewhere/code.py", 0, cwd) == "/elsewhere/code.py"


def test_render_unknown_format_lists_names(app_dir: Path) -> None:
    with pytest.raises(ValueError, match="collapsed, html, speedscope, svg, text"):
        render(build(app_dir), "pdf")


@pytest.mark.parametrize("name", sorted(RENDERERS))
def test_every_registered_renderer_resolves(name: str, app_dir: Path) -> None:
    cls = renderer_class(name)
    assert issubclass(cls, Renderer)
    assert cls.name == name
    assert cls.extension.startswith(".")
    assert "handler" in render(build(app_dir), name)


def test_renderer_class_accepts_a_subclass_and_rejects_others() -> None:
    class Upper(Renderer):
        name = "upper"
        extension = ".up"

        def render(self, tree: CallTree, *, title: str = "") -> str:
            return title.upper()

    assert render(CallTree(), Upper, title="hi") == "HI"
    with pytest.raises(ValueError, match="not a fastprof Renderer"):
        renderer_class(dict)  # type: ignore[arg-type]
