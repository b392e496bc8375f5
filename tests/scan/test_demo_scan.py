"""The README's main job: `fastprof scan demo_app.main:app` finds every pitfall of the demo, with
the right kind and route, and nothing on the fixed twins (checked from findings.json)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from demo_app.catalog import PAIRS

ROOT = Path(__file__).resolve().parents[2]


def test_scan_of_the_demo_finds_each_pitfall_and_nothing_on_the_twins(tmp_path: Path) -> None:
    started = time.monotonic()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastprof",
            "scan",
            "demo_app.main:app",
            "--json",
            "--out",
            str(tmp_path / "report"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = time.monotonic() - started
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout)
    assert not result["skipped"], result["skipped"]
    found = {(f["kind"], f["route"]) for f in result["findings"]}
    expected = set()
    for pair in PAIRS:
        if pair.kind is None:
            continue
        expected.add((pair.kind, None if pair.app_level else f"GET {pair.pitfall}"))
    missing = expected - found
    extra = found - expected
    assert not missing, f"missed: {sorted(missing, key=str)}"
    twins = {f"GET {fix}" for pair in PAIRS for fix in pair.fixes}
    on_twins = [f for f in result["findings"] if f["route"] in twins]
    assert not on_twins, on_twins
    assert not extra, f"unexpected: {sorted(extra, key=str)}"
    assert (tmp_path / "report" / "index.html").exists()
    print(f"demo scan: {len(result['routes'])} routes, {len(found)} findings, {elapsed:.0f} s")
