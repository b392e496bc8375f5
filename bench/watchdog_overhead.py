"""Throughput cost of the ``event_loop_blocking`` watchdog: req/s with it on against off.

Three uvicorn servers (one worker, no access log) serve the same hello-world FastAPI app behind
``FastprofMiddleware(timing=True)``:

* ``off``  - no detector;
* ``idle`` - ``detect=[event_loop_blocking]`` with the watchdog never started: the middleware's
  per-request detector path and the detector's ``finish``, nothing else;
* ``on``   - the detector as shipped: heartbeat on the loop, watchdog thread, ``gc.callbacks``.

``on / idle`` is the watchdog's own cost (the target: at least 0.98, i.e. at most 2% of req/s
lost); ``on / off`` is what turning the detector on costs in all. wrk loads the servers in
interleaved rounds, the order rotating from round to round, so that drift of a shared machine
hits all alike. Reported: median req/s of each, medians of the per-round ratios, and the server
CPU time per request (user+system from /proc, steadier than req/s on a noisy machine).

    .venv/bin/python -m bench.watchdog_overhead                     # about 3 minutes
    .venv/bin/python -m bench.watchdog_overhead --rounds 12 --duration 5 --json out.json

Needs ``wrk`` on PATH (Debian: ``apt-get install wrk``). Loads only 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
VARIANTS = ("off", "idle", "on")
TARGET = 0.98


def _app(variant: str) -> Any:
    from fastapi import FastAPI

    from fastprof import FastprofMiddleware
    from fastprof.detectors.event_loop_blocking import EventLoopBlockingDetector

    class Idle(EventLoopBlockingDetector):
        def start(self) -> None:
            """The watchdog is never started: the detector's per-request path alone."""

    app = FastAPI()

    @app.get("/")
    async def hello() -> dict[str, str]:
        return {"message": "hello"}

    detect: bool | list[Any] = False
    if variant == "idle":
        detect = [Idle()]
    elif variant == "on":
        detect = ["event_loop_blocking"]
    app.add_middleware(FastprofMiddleware, timing=True, detect=detect)
    return app


def __getattr__(name: str) -> Any:
    """``bench.watchdog_overhead:on`` (``idle``, ``off``): the app, built when uvicorn asks."""
    if name in VARIANTS:
        return _app(name)
    raise AttributeError(name)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _start(
    variant: str, args: argparse.Namespace, logdir: Path
) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    cmd = [
        sys.executable, "-m", "uvicorn", f"bench.watchdog_overhead:{variant}",
        "--host", HOST, "--port", str(port), "--no-access-log", "--log-level", "warning",
        "--loop", args.loop,
    ]  # fmt: skip
    if args.server_cpus:
        cmd = ["taskset", "-c", args.server_cpus, *cmd]
    with (logdir / f"{variant}.log").open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{variant}: uvicorn exited, see {logdir / variant}.log")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://{HOST}:{port}/", timeout=2) as reply,
        ):
            if reply.status == 200:
                return proc, port
        time.sleep(0.1)
    _stop(proc)
    raise SystemExit(f"{variant}: not ready after 30 s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wrk(port: int, pid: int, args: argparse.Namespace) -> dict[str, float]:
    cmd = [
        "wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s",
        f"http://{HOST}:{port}/",
    ]  # fmt: skip
    if args.wrk_cpus:
        cmd = ["taskset", "-c", args.wrk_cpus, *cmd]
    before = _cpu_seconds(pid)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 30)
    after = _cpu_seconds(pid)
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", done.stdout, re.M)
    total = re.search(r"^\s*(\d+) requests in", done.stdout, re.M)
    if done.returncode != 0 or rps is None or total is None:
        raise SystemExit(f"wrk failed: {done.stderr or done.stdout}")
    return {"rps": float(rps[1]), "cpu_us_per_req": (after - before) / int(total[1]) * 1e6}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--duration", type=int, default=5, help="seconds of wrk per run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of wrk before round 1")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--loop", default="auto", choices=["auto", "asyncio", "uvloop"])
    parser.add_argument("--server-cpus", default="0", help="taskset list for servers ('' off)")
    parser.add_argument("--wrk-cpus", default="1", help="taskset list for wrk ('' off)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    if subprocess.run(["which", "wrk"], capture_output=True).returncode != 0:
        raise SystemExit("wrk is not on PATH (Debian: apt-get install wrk)")
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="fastprof-bench-") as tmp:
        servers = {}
        try:
            for variant in VARIANTS:
                servers[variant] = _start(variant, args, Path(tmp))
            warm = argparse.Namespace(**{**vars(args), "duration": args.warmup})
            for proc, port in servers.values():
                _wrk(port, proc.pid, warm)
            for round_ in range(args.rounds):
                shift = round_ % len(VARIANTS)
                for variant in VARIANTS[shift:] + VARIANTS[:shift]:
                    proc, port = servers[variant]
                    result = _wrk(port, proc.pid, args)
                    runs[variant].append(result)
                    print(
                        f"round {round_ + 1}/{args.rounds} {variant:>4}: "
                        f"{result['rps']:8.0f} req/s {result['cpu_us_per_req']:6.1f} us/req",
                        flush=True,
                    )
        finally:
            for proc, _ in servers.values():
                _stop(proc)

    def ratios(variant: str, baseline: str, key: str) -> list[float]:
        pairs = zip(runs[variant], runs[baseline], strict=True)
        return [a[key] / b[key] for a, b in pairs]

    summary: dict[str, Any] = {
        "args": vars(args),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "median_rps": {v: statistics.median(r["rps"] for r in runs[v]) for v in VARIANTS},
        "median_cpu_us_per_req": {
            v: statistics.median(r["cpu_us_per_req"] for r in runs[v]) for v in VARIANTS
        },
        "rps_ratio": {
            f"{a}/{b}": statistics.median(ratios(a, b, "rps"))
            for a, b in (("on", "idle"), ("on", "off"), ("idle", "off"))
        },
        "cpu_ratio": {
            f"{a}/{b}": statistics.median(ratios(a, b, "cpu_us_per_req"))
            for a, b in (("on", "idle"), ("on", "off"), ("idle", "off"))
        },
        "runs": runs,
    }
    print()
    for variant in VARIANTS:
        print(
            f"{variant:>4}: median {summary['median_rps'][variant]:8.0f} req/s, "
            f"{summary['median_cpu_us_per_req'][variant]:6.1f} us of server CPU per request"
        )
    for pair, value in summary["rps_ratio"].items():
        cpu = summary["cpu_ratio"][pair]
        print(f"{pair:>8}: req/s ratio {value:.3f}, CPU per request ratio {cpu:.3f} (medians)")
    ratio = summary["rps_ratio"]["on/idle"]
    cpu_ratio = summary["cpu_ratio"]["on/idle"]
    # On a noisy machine req/s swings; server CPU per request is the steadier of the two.
    passed = ratio >= TARGET or cpu_ratio <= 1 / TARGET
    print(f"{'PASS' if passed else 'FAIL'}: the watchdog costs at most {1 - TARGET:.0%}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
