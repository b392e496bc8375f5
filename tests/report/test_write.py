"""fastprof.scan.report: the files a scan writes and reads back."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from fastprof.scan.report import load_trees, slug, write_report
from tests.report.fixtures import sample


def test_route_files(tmp_path: Path) -> None:
    result, trees = sample(tmp_path / "src")
    out = tmp_path / "out"
    write_report(result, trees, str(out))  # type: ignore[arg-type]
    saved = json.loads((out / "findings.json").read_text())
    files = saved["routes"][1]["files"]
    assert files == {
        "speedscope": "routes/GET_authors.speedscope.json",
        "collapsed": "routes/GET_authors.collapsed",
        "svg": "routes/GET_authors.svg",
        "tree": "routes/GET_authors.tree.json",
    }
    svg = ET.parse(out / files["svg"]).getroot()
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    assert (out / "index.html").read_text().count("GET /authors") >= 1
    assert load_trees(str(out), saved) == trees


def test_slugs_stay_unique(tmp_path: Path) -> None:
    result, trees = sample(tmp_path / "src")
    result["routes"][0]["route"] = "GET /a-b"
    result["routes"][2]["route"] = "GET /a_b"
    trees = {"GET /a-b": trees["GET /"], "GET /a_b": trees["GET /health"]}
    write_report(result, trees, str(tmp_path / "out"))  # type: ignore[arg-type]
    names = {r["route"]: r.get("files", {}).get("tree") for r in result["routes"]}
    assert names["GET /a-b"] == "routes/GET_a_b.tree.json"
    assert names["GET /a_b"] == "routes/GET_a_b_2.tree.json"
    assert slug("GET /") == "GET" and slug("") == "root"


def test_load_trees_skips_missing_and_broken_files(tmp_path: Path) -> None:
    result, trees = sample(tmp_path / "src")
    out = tmp_path / "out"
    write_report(result, trees, str(out))  # type: ignore[arg-type]
    (out / result["routes"][0]["files"]["tree"]).unlink()
    (out / result["routes"][1]["files"]["tree"]).write_text("{not json")
    result["routes"][2]["files"]["tree"] = "/etc/passwd"
    assert load_trees(str(out), result) == {}  # type: ignore[arg-type]
