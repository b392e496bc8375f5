from __future__ import annotations

import os
from pathlib import Path

from fastprof.report.source import MAX_LINE, excerpt


def write(tmp_path: Path, lines: list[str], name: str = "mod.py") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_lines_around_the_location(tmp_path: Path) -> None:
    path = write(tmp_path, [f"line {i}" for i in range(1, 21)])
    found = excerpt(str(path), 10, cwd=str(tmp_path))
    assert found["error"] is None
    assert found["path"] == "mod.py"
    assert found["start"] == 6 and found["line"] == 10
    assert found["lines"] == [f"line {i}" for i in range(6, 15)]


def test_window_is_clipped_at_the_ends(tmp_path: Path) -> None:
    path = write(tmp_path, ["a", "b", "c"])
    assert excerpt(str(path), 1)["lines"] == ["a", "b", "c"]
    assert excerpt(str(path), 3, context=1)["lines"] == ["b", "c"]
    assert excerpt(str(path), 3, context=1)["start"] == 2


def test_tabs_expanded_and_long_lines_cut(tmp_path: Path) -> None:
    path = write(tmp_path, ["\tx = 1", "y = '" + "z" * 1000 + "'"])
    lines = excerpt(str(path), 1)["lines"]
    assert lines[0] == "    x = 1"
    assert len(lines[1]) == MAX_LINE and lines[1].endswith("\u2026")


def test_missing_file_says_so(tmp_path: Path) -> None:
    found = excerpt(str(tmp_path / "gone.py"), 3)
    assert found["lines"] == []
    assert found["error"] is not None and "cannot read" in found["error"]


def test_line_past_the_end_says_the_file_changed(tmp_path: Path) -> None:
    path = write(tmp_path, ["a"])
    found = excerpt(str(path), 40)
    assert found["lines"] == [] and "changed" in str(found["error"])


def test_only_python_files_are_read(tmp_path: Path) -> None:
    secret = write(tmp_path, ["root:x:0:0"], name="passwd")
    found = excerpt(str(secret), 1)
    assert found["lines"] == [] and "not a Python source file" in str(found["error"])
    if os.path.exists("/etc/passwd"):
        assert excerpt("/etc/passwd", 1)["lines"] == []


def test_undecodable_bytes_do_not_fail(tmp_path: Path) -> None:
    path = tmp_path / "bin.py"
    path.write_bytes(b"x = 1\ny = b'\xff\xfe'\n")
    assert excerpt(str(path), 2)["lines"][1].startswith("y = b'")
