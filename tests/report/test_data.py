from __future__ import annotations

import os
from pathlib import Path

from fastprof.report.data import scan_payload
from fastprof.scan.results import ScanResult
from tests.report.fixtures import sample


def test_findings_come_with_their_source_lines(tmp_path: Path) -> None:
    result, trees = sample(tmp_path)
    data = scan_payload(result, trees)  # type: ignore[arg-type]
    high = data["findings"][0]
    assert high["severity"] == "high"
    source = high["source"]
    assert source is not None and source["error"] is None
    assert source["line"] == 12
    at = source["lines"][12 - source["start"]]
    assert "select * from book where author_id" in at
    assert high["where"] is not None and high["where"].endswith("views.py:12 in list_authors")


def test_unreadable_source_is_reported_not_fatal(tmp_path: Path) -> None:
    result, trees = sample(tmp_path)
    data = scan_payload(result, trees)  # type: ignore[arg-type]
    gone = next(f for f in data["findings"] if f["kind"] == "middleware_overhead")
    assert gone["source"] is not None and gone["source"]["lines"] == []
    assert "cannot read" in str(gone["source"]["error"])
    assert gone["route"] is None


def test_routes_index_their_findings_and_flames(tmp_path: Path) -> None:
    result, trees = sample(tmp_path)
    del trees["GET /health"]
    data = scan_payload(result, trees)  # type: ignore[arg-type]
    by_key = {r["route"]: r for r in data["routes"]}
    assert by_key["GET /health"]["flame"] is None
    assert by_key["GET /"]["findings"] == []
    assert len(data["flames"]) == 2
    assert {data["findings"][i]["route"] for i in by_key["GET /authors"]["findings"]} == {
        "GET /authors"
    }


def test_findings_sorted_by_severity(tmp_path: Path) -> None:
    result, trees = sample(tmp_path)
    result["findings"].reverse()
    data = scan_payload(result, trees)  # type: ignore[arg-type]
    assert [f["severity"] for f in data["findings"]] == ["high", "medium"]


def test_a_minimal_older_result_still_renders(tmp_path: Path) -> None:
    result: ScanResult = {  # no histogram, no workers, findings without count
        "schema": "fastprof.scan/1",
        "target": "x:app",
        "started_at": "",
        "settings": {},
        "routes": [],
        "skipped": [],
        "findings": [
            {  # type: ignore[typeddict-item]
                "kind": "k",
                "severity": "low",
                "route": None,
                "title": "t",
                "evidence": {},
                "location": None,
                "advice": "",
            }
        ],
    }
    data = scan_payload(result, {})
    assert data["findings"][0]["count"] == 1 and data["findings"][0]["source"] is None
    assert data["workers"] == []


def test_each_source_file_is_read_once(tmp_path: Path, monkeypatch: object) -> None:
    result, trees = sample(tmp_path)
    result["findings"].append(dict(result["findings"][0], route="GET /"))
    opened: list[str] = []
    real_open = open

    def counting_open(file: str, *args: object, **kwargs: object) -> object:
        if str(file).endswith("views.py"):
            opened.append(str(file))
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    import fastprof.report.source as source_module

    monkeypatch.setattr(source_module, "open", counting_open, raising=False)  # type: ignore[attr-defined]
    scan_payload(result, trees)  # type: ignore[arg-type]
    assert len(opened) == 1 and os.path.basename(opened[0]) == "views.py"
