"""Side-by-side throughput of variants that run at the same time on one core.

``bench/overhead.py`` runs one variant at a time in interleaved rounds: on a shared host whose
speed drifts from one second to the next, its per-round ratios ranged 0.67-1.12 on a bad day.
Here every variant's uvicorn server is pinned to the same core at once, each loaded by its
own ``wrk`` on the other core for the same seconds: the kernel shares the core fairly between
them, so their req/s ratio is the inverse ratio of their cost per request, and a slow second
of the host slows them all alike. An A/A run (bare beside bare, 6 rounds x 4 s) came out at
1.002 (0.967-1.009).

Two cautions. Each of N servers gets 1/N of the core, so a cost paid per second (the
continuous sampler's 100 Hz ticks) weighs N times as much per request as in a server of its
own: read it as an upper bound, and use ``overhead.py`` for the targets. And the servers
share the core's caches.

    .venv/bin/python -m bench.simultaneous --variants bare,continuous --rounds 8 --duration 5
    .venv/bin/python -m bench.simultaneous --variants bare,continuous,continuous@/tmp/old

``NAME@PATH`` runs variant NAME of a checkout at PATH (a ``git worktree`` of another commit)
beside this one's. Besides ``bench/apps.py``'s variants, those of ``bench/ablation.py`` (the
continuous mode's request path, part by part). Needs ``wrk`` and ``taskset``; loads only
127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench import ablation
from bench.apps import DESCRIPTIONS
from bench.overhead import HOST, cpu_seconds, free_port, parse_wrk

ROOT = Path(__file__).resolve().parent.parent


def start(label: str, cpu: str) -> tuple[subprocess.Popen[bytes], int]:
    variant, _, root = label.partition("@")
    if variant in DESCRIPTIONS:
        target = f"bench.apps:{variant}"
    elif variant in ablation.DESCRIPTIONS:
        target = f"bench.ablation:{variant}"
    else:
        known = [*DESCRIPTIONS, *ablation.DESCRIPTIONS]
        raise SystemExit(f"unknown variant {variant!r}; choose from {', '.join(known)}")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": root or str(ROOT)}
    cmd = [
        "taskset", "-c", cpu, sys.executable, "-m", "uvicorn", target,
        "--host", HOST, "--port", str(port), "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=root or ROOT, env=env, stdin=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/", timeout=2):
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{label}: the server did not answer within 30 s")


def one_round(
    servers: dict[str, tuple[subprocess.Popen[bytes], int]], seconds: int, cpu: str
) -> dict[str, tuple[float, float]]:
    """req/s and server CPU microseconds per request of every variant, loaded together."""
    before = {label: cpu_seconds(proc.pid) for label, (proc, _) in servers.items()}
    loads = {}
    for label, (_, port) in servers.items():
        cmd = [
            "taskset",
            "-c",
            cpu,
            "wrk",
            "-t1",
            "-c32",
            f"-d{seconds}s",
            f"http://{HOST}:{port}/",
        ]
        loads[label] = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    results = {}
    for label, load in loads.items():
        parsed = parse_wrk(load.communicate()[0])
        used = (cpu_seconds(servers[label][0].pid) or 0.0) - (before[label] or 0.0)
        results[label] = (parsed["rps"], used / max(parsed["requests"], 1) * 1e6)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.simultaneous", description=__doc__)
    parser.add_argument("--variants", default="bare,continuous")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--duration", type=int, default=5, help="seconds a round (wrk -d)")
    parser.add_argument("--server-cpu", default="0")
    parser.add_argument("--wrk-cpu", default="1")
    args = parser.parse_args(argv)
    labels = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not labels or args.rounds < 1 or args.duration < 1:
        parser.error("give at least one variant, --rounds >= 1 and --duration >= 1")
    servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    runs: dict[str, list[tuple[float, float]]] = {label: [] for label in labels}
    try:
        for label in labels:
            servers[label] = start(label, args.server_cpu)
        one_round(servers, 2, args.wrk_cpu)  # warm-up
        for _ in range(args.rounds):
            for label, result in one_round(servers, args.duration, args.wrk_cpu).items():
                runs[label].append(result)
    finally:
        for proc, _ in servers.values():
            proc.send_signal(signal.SIGTERM)
        for proc, _ in servers.values():
            proc.wait(10)
    base = runs[labels[0]]
    print(f"{'variant':<28} {'req/s':>7} {'x first (range)':>22} {'CPU us/req':>11} {'CPU x':>6}")
    for label in labels:
        ratios = [mine[0] / theirs[0] for mine, theirs in zip(runs[label], base, strict=True)]
        cpu = [theirs[1] / mine[1] for mine, theirs in zip(runs[label], base, strict=True)]
        print(
            f"{label:<28} {statistics.median(r[0] for r in runs[label]):>7.0f} "
            f"{statistics.median(ratios):>7.3f} ({min(ratios):.3f}-{max(ratios):.3f}) "
            f"{statistics.median(r[1] for r in runs[label]):>11.1f} {statistics.median(cpu):>6.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
