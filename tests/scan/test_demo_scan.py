"""The README's main job: `fastprof scan demo_app.main:app` finds every pitfall of the demo, with
the right kind and route, and nothing on the fixed twins (checked from findings.json).

cache_opportunity judges repeated traffic and is off in a scan of discovered routes (the
scan's own load repeats every route): its pair is scanned on its own, with the detector named.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from demo_app.catalog import PAIRS
from fastprof.scan.runner import TRAFFIC_DETECTORS

ROOT = Path(__file__).resolve().parents[2]


def scan(tmp_path: Path, *options: str) -> dict[str, Any]:
    run = subprocess.run(
        [sys.executable, "-m", "fastprof", "scan", "demo_app.main:app", "--json", *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result: dict[str, Any] = json.loads(run.stdout)
    return result


def test_scan_of_the_demo_finds_each_pitfall_and_nothing_on_the_twins(tmp_path: Path) -> None:
    started = time.monotonic()
    result = scan(tmp_path, "--out", str(tmp_path / "report"))
    elapsed = time.monotonic() - started
    assert not result["skipped"], result["skipped"]
    found = {(f["kind"], f["route"]) for f in result["findings"]}
    expected = set()
    allowed = set()
    for pair in PAIRS:
        route = None if pair.app_level else f"GET {pair.pitfall}"
        if pair.kind is not None and pair.kind not in TRAFFIC_DETECTORS:
            expected.add((pair.kind, route))
        for kind in pair.also:  # a deliberately slow stand-in, in the pitfall and its twins
            allowed.update((kind, r) for r in [route, *(f"GET {fix}" for fix in pair.fixes)])
    missing = expected - found
    extra = found - expected - allowed
    assert not missing, f"missed: {sorted(missing, key=str)}"
    twins = {f"GET {fix}" for pair in PAIRS for fix in pair.fixes}
    on_twins = [
        f
        for f in result["findings"]
        if f["route"] in twins and (f["kind"], f["route"]) not in allowed
    ]
    assert not on_twins, on_twins
    assert not extra, f"unexpected: {sorted(extra, key=str)}"
    assert (tmp_path / "report" / "index.html").exists()
    print(f"demo scan: {len(result['routes'])} routes, {len(found)} findings, {elapsed:.0f} s")


def test_a_traffic_scan_of_the_cache_pair_finds_the_uncached_route_only(tmp_path: Path) -> None:
    pairs = [pair for pair in PAIRS if pair.kind in TRAFFIC_DETECTORS]
    assert pairs
    for pair in pairs:
        routes = [pair.pitfall, *pair.fixes]
        # One connection: with 8 on a saturated machine, even the cached twin's hits queue
        # past cache_opportunity's 5 ms of work (see docs/detectors/cache_opportunity.md).
        options = ["--out", str(tmp_path / "report"), "--detector", pair.kind or ""]
        options += ["--concurrency", "1"]
        for route in routes:
            options += ["--route", f"GET {route}"]
        result = scan(tmp_path, *options)
        found = {(f["kind"], f["route"]) for f in result["findings"]}
        assert found == {(pair.kind, f"GET {pair.pitfall}")}, result["findings"]
