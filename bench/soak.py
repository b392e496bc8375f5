"""A healthy load run: the demo's fixed twins under load for 10+ minutes must produce no finding.

    .venv/bin/python -m bench.soak                 # about 10.5 minutes
    .venv/bin/python -m bench.soak --minutes 2     # shorter

Runs ``fastprof scan demo_app.main:fixed_app`` on every fixed route (``/fixed/...`` and ``/``)
with every detector, long enough per route to reach the total, and prints the findings (there
should be none) and the per-route numbers. A script, not a test: it takes minutes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

from demo_app.catalog import PAIRS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.5)
    args = parser.parse_args()
    routes = ["GET /"] + [
        f"GET {fix}" for pair in PAIRS if not pair.app_level for fix in pair.fixes
    ]
    per_route = max(1.0, args.minutes * 60 / len(routes) - 0.5)
    out = tempfile.mkdtemp(prefix="fastprof-soak-")
    command = [
        sys.executable,
        "-m",
        "fastprof",
        "scan",
        "demo_app.main:fixed_app",
        "--json",
        "--out",
        out,
        "--duration",
        f"{per_route:.1f}",
        "--warmup",
        "0.5",
    ]
    for route in routes:
        command += ["--route", route]
    print(f"{len(routes)} routes x {per_route:.1f} s; report in {out}", file=sys.stderr)
    started = time.monotonic()
    run = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if run.returncode != 0:
        print(run.stderr, file=sys.stderr)
        return run.returncode
    result = json.loads(run.stdout)
    requests = sum(r["requests"] for r in result["routes"])
    print(f"{elapsed / 60:.1f} min, {len(result['routes'])} routes, {requests} requests")
    for route in result["routes"]:
        lat = route["latency_ms"]
        print(
            f"  {route['route']:45} {route['requests']:7} req  p99 {lat['p99']:8.1f} ms  "
            f"errors {route['errors']}"
        )
    print(f"findings: {len(result['findings'])}")
    for finding in result["findings"]:
        print(f"  {finding['kind']} {finding['route']}: {finding['title']}")
    return 1 if result["findings"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
