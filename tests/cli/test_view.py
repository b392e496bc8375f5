from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from fastprof.backends import TreeSource
from fastprof.cli import CommandError, main
from fastprof.model import CallTree
from fastprof.record import ProfileRecord
from fastprof.renderers import RENDERERS, renderer_class


def build() -> CallTree:
    tree = CallTree(backend="test", duration=0.05)
    tree.add_stack([("handler", "app/main.py", 10), ("fetch", "app/db.py", 3)], 0.03)
    tree.add_stack([("handler", "app/main.py", 10)], 0.02, awaiting=True)
    return tree


@pytest.fixture
def tree_file(tmp_path: Path) -> Path:
    path = tmp_path / "tree.json"
    path.write_bytes(build().to_json())
    return path


@pytest.fixture
def record_file(tmp_path: Path) -> Path:
    record = ProfileRecord(
        id="abc",
        trigger="slow",
        backend="test",
        source=TreeSource.of(build()),
        method="GET",
        route="/users/{user_id}",
        path="/users/42",
        status=200,
        duration=0.0512,
    )
    path = tmp_path / "profile.json"
    path.write_bytes(record.to_json())
    return path


def run(*args: str) -> click.testing.Result:
    return CliRunner().invoke(main, list(args))


def test_text_from_a_call_tree(tree_file: Path) -> None:
    result = run("view", str(tree_file))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "backend: test  duration: 50.00 ms  samples: 2"
    assert lines[2] == "50.00 ms 100.0%  handler  app/main.py:10  (self 0.00 ms, await 20.00 ms)"
    assert "\x1b[" not in result.stdout  # not a terminal: no colour unless asked
    assert result.stderr == ""


def test_text_from_a_profile_record_shows_the_request(record_file: Path) -> None:
    result = run("view", str(record_file))
    assert result.exit_code == 0, result.output
    header = result.stdout.splitlines()[0]
    assert header == "GET /users/{user_id} (/users/42) → 200 in 51.20 ms, trigger: slow"


def test_text_options(tree_file: Path) -> None:
    assert "fetch" not in run("view", str(tree_file), "--max-depth", "1").stdout
    assert "fetch" not in run("view", str(tree_file), "--min-percent", "70").stdout
    assert "\x1b[" in run("view", str(tree_file), "--color").stdout


@pytest.mark.parametrize("fmt", sorted(RENDERERS))
def test_every_format_to_stdout_and_to_a_file(fmt: str, record_file: Path, tmp_path: Path) -> None:
    to_stdout = run("view", str(record_file), "--format", fmt)
    assert to_stdout.exit_code == 0, to_stdout.output
    assert "handler" in to_stdout.stdout
    out = tmp_path / f"out{renderer_class(fmt).extension}"
    to_file = run("view", str(record_file), "-f", fmt, "-o", str(out))
    assert to_file.exit_code == 0, to_file.output
    assert to_file.stdout == ""
    assert out.read_text(encoding="utf-8") == to_stdout.stdout
    assert str(out) in to_file.stderr


def test_html_and_speedscope_carry_the_request_title(record_file: Path) -> None:
    page = run("view", str(record_file), "-f", "html").stdout
    assert "<title>GET /users/{user_id} (/users/42) → 200 in 51.20 ms" in page
    doc = json.loads(run("view", str(record_file), "-f", "speedscope").stdout)
    assert doc["profiles"][0]["name"].startswith("GET /users/{user_id}")


def bad_input(tmp_path: Path, name: str, content: str | None) -> Path:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    return path


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.json", None, "no such file"),
        ("notes.txt", "hello", "not JSON"),
        ("empty.json", "", "not JSON"),
        ("other.json", '{"schema": "something/9"}', "schema is 'something/9', expected"),
        ("list.json", "[1, 2]", "schema is a JSON list"),
        ("noschema.json", '{"root": {}}', "schema is None"),
        ("broken.json", '{"schema": "fastprof.tree/1"}', "malformed fastprof.tree/1 file"),
        ("badrec.json", '{"schema": "fastprof.profile/1"}', "malformed fastprof.profile/1"),
    ],
)
def test_bad_input_is_one_line_naming_the_file_with_exit_2(
    tmp_path: Path, name: str, content: str | None, message: str
) -> None:
    path = bad_input(tmp_path, name, content)
    result = run("view", str(path))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: {path}: ")
    assert message in result.stderr


def test_directory_is_bad_input(tmp_path: Path) -> None:
    result = run("view", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr == f"error: {tmp_path}: is a directory, not a profile file\n"


def test_unwritable_output_exits_1(tree_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "no" / "such" / "dir" / "out.html"
    result = run("view", str(tree_file), "-f", "html", "-o", str(out))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {out}: cannot write")


def test_unknown_format_is_a_usage_error(tree_file: Path) -> None:
    result = run("view", str(tree_file), "-f", "pdf")
    assert result.exit_code == 2
    assert "'pdf' is not one of" in result.stderr


def test_command_error_is_turned_into_one_line_and_its_exit_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    @click.command()
    def boom() -> None:
        raise CommandError("first line\nsecond line", 7)

    monkeypatch.setitem(main.commands, "boom", boom)
    result = run("boom")
    assert result.exit_code == 7
    assert result.stderr == "error: first line second line\n"


def test_help_and_version() -> None:
    help_ = run("--help")
    assert help_.exit_code == 0
    assert "view" in help_.stdout
    view_help = run("view", "--help")
    assert "stored profile or call tree" in view_help.stdout
    assert "text|speedscope|collapsed|html" in view_help.stdout.replace("\n", "")
    version = run("--version")
    assert version.exit_code == 0
    assert version.stdout.startswith("fastprof, version ")
