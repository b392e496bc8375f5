"""``fastprof report`` and ``fastprof diff --html``."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from fastprof.cli import main
from fastprof.scan.report import write_report
from tests.report.fixtures import sample


def scan_dir(tmp_path: Path, name: str) -> Path:
    result, trees = sample(tmp_path / f"{name}-src")
    out = tmp_path / name
    write_report(result, trees, str(out))  # type: ignore[arg-type]
    return out


def test_report_renders_again_from_the_saved_files(tmp_path: Path) -> None:
    out = scan_dir(tmp_path, "scan")
    (out / "index.html").unlink()
    (out / "routes" / "GET_authors.svg").unlink()
    run = CliRunner().invoke(main, ["report", str(out)])
    assert run.exit_code == 0, run.output
    page = (out / "index.html").read_text()
    assert "GET /authors" in page and "endpoint_authors" in page  # the tree made it in
    assert (out / "routes" / "GET_authors.svg").read_text().startswith("<svg")


def test_report_to_another_file_and_from_findings_json(tmp_path: Path) -> None:
    out = scan_dir(tmp_path, "scan")
    target = tmp_path / "elsewhere.html"
    run = CliRunner().invoke(main, ["report", str(out / "findings.json"), "-o", str(target)])
    assert run.exit_code == 0, run.output
    assert "fastprof-report" in target.read_text()


def test_report_of_something_else_is_a_usage_error(tmp_path: Path) -> None:
    run = CliRunner().invoke(main, ["report", str(tmp_path / "nope")])
    assert run.exit_code == 2 and "no such file" in run.output
    (tmp_path / "findings.json").write_text(json.dumps({"schema": "other"}))
    run = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert run.exit_code == 2 and "not a fastprof scan result" in run.output


def test_diff_html(tmp_path: Path) -> None:
    a, b = scan_dir(tmp_path, "a"), scan_dir(tmp_path, "b")
    page = tmp_path / "diff.html"
    run = CliRunner().invoke(main, ["diff", str(a), str(b / "findings.json"), "--html", str(page)])
    assert run.exit_code == 0, run.output
    text = page.read_text()
    start = text.index('id="fastprof-report">') + len('id="fastprof-report">')
    data = json.loads(text[start : text.index("</script>", start)])
    assert data["kind"] == "diff" and len(data["flames"]) == 3
    assert all(r["flame"] is not None for r in data["routes"])
    flame = data["flames"][0]
    assert flame["diff"]["a"][0] == flame["diff"]["b"][0]  # the same scan twice: no change


def test_diff_html_unwritable(tmp_path: Path) -> None:
    a = scan_dir(tmp_path, "a")
    run = CliRunner().invoke(main, ["diff", str(a), str(a), "--html", str(tmp_path / "no" / "x")])
    assert run.exit_code == 1 and "cannot write" in run.output
