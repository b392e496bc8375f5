"""Throughput cost of FastprofMiddleware on a hello-world FastAPI app, against its rivals.

Every variant in ``bench/apps.py`` runs as its own uvicorn server (one worker, no access log,
the loop and HTTP implementation uvicorn picks with ``auto``), all started once and kept up for
the whole run. wrk loads them in interleaved rounds - each round visits every variant once, the
order rotated from round to round - so that drift of a shared machine hits all variants alike.

Reported per variant: median req/s over the rounds; the ratio to bare, as the median of the
per-round ratios ``variant / bare of the same round`` (what the targets use) and, as a cross-check
that pairs nothing, median/median; min/max req/s; median p50/p99 latency; and the server's CPU
time per request (user+system of the server process, all threads, from /proc) with its
difference to bare - steadier than req/s when the machine is noisy. Then a PASS/FAIL line per
target.

    .venv/bin/python -m bench.overhead                       # defaults: about 6 minutes
    .venv/bin/python -m bench.overhead --rounds 10 --duration 5 --json bench/results/overhead.json
    .venv/bin/python -m bench.overhead --variants bare,noop,idle --rounds 3

Needs ``wrk`` on PATH (Debian: ``apt-get install wrk``) and the dev extra (fastapi, uvicorn,
fastapi-profiler). Loads only 127.0.0.1. Results and method: docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from bench.apps import DESCRIPTIONS

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Target:
    """``variant`` must reach ``at_least`` times ``baseline``'s req/s (median per-round ratio)."""

    label: str
    variant: str
    baseline: str
    at_least: float


# From the issue that asked for this benchmark.
TARGETS = [
    Target("idle >= 0.98x bare", "idle", "bare", 0.98),
    Target("timing-only >= 0.95x bare", "timing", "bare", 0.95),
    Target("sample rate 0.01 >= 0.95x bare", "sample_1pct", "bare", 0.95),
    Target("continuous >= 0.97x bare", "continuous", "bare", 0.97),
    Target(
        "pyinstrument every request >= 2x fastapi-profiler",
        "pyinstrument_all",
        "fastapi_profiler",
        2.0,
    ),
    Target(
        "pyinstrument every request >= 1.0x pyinstrument recipe",
        "pyinstrument_all",
        "pyinstrument_recipe",
        1.0,
    ),
]


@dataclass
class Run:
    round: int
    variant: str
    rps: float
    requests: int
    p50_ms: float | None
    p99_ms: float | None
    cpu_us_per_req: float | None
    errors: int


@dataclass
class Server:
    variant: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    runs: list[Run] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


# -- servers -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(
    variant: str, args: argparse.Namespace, logdir: Path, servers: list[Server]
) -> Server:
    port = free_port()
    log = logdir / f"{variant}.log"
    cmd = [
        sys.executable, "-m", "uvicorn", f"bench.apps:{variant}",
        "--host", HOST, "--port", str(port),
        "--no-access-log", "--log-level", "warning",
        "--loop", args.loop, "--http", args.http,
    ]  # fmt: skip
    if args.server_cpus:
        cmd = ["taskset", "-c", args.server_cpus, *cmd]
    with log.open("wb") as out:
        # Own session: a Ctrl-C in the terminal reaches this script, which stops the servers
        # itself (gracefully, then by force) instead of racing them.
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    server = Server(variant, port, proc, log)
    servers.append(server)  # registered before waiting, so it is stopped whatever happens
    return server


def wait_ready(server: Server, timeout: float = 30.0) -> str | None:
    """None when the server answers 200 on /; else why not (it is then stopped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            return f"exited with {server.proc.returncode}: {last_error(server.log)}"
        try:
            with urllib.request.urlopen(server.url, timeout=2) as response:
                body = json.loads(response.read())
                if response.status == 200 and body == {"message": "hello"}:
                    return None
                return f"unexpected answer {response.status} {body!r}"
        except OSError:
            time.sleep(0.1)
    stop_server(server)
    return f"not ready after {timeout:.0f} s: {last_error(server.log)}"


def last_error(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "error" in line]
    return (errors or lines or ["(no output)"])[-1].strip()


def stop_server(server: Server, timeout: float = 5.0) -> None:
    proc = server.proc
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` (all its threads), seconds."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


# -- wrk ---------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def parse_wrk(output: str) -> dict[str, Any]:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    total = re.search(r"^\s*(\d+) requests in", output, re.M)
    if rps is None or total is None:
        raise BenchError(f"could not read wrk's output:\n{output}")
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", output, re.M))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return {
        "rps": float(rps[1]),
        "requests": int(total[1]),
        "p50_ms": _ms(latency["50"]) if "50" in latency else None,
        "p99_ms": _ms(latency["99"]) if "99" in latency else None,
        "errors": errors + (int(non2xx[1]) if non2xx else 0),
    }


def wrk(server: Server, duration: int, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        "wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{duration}s", "--latency",
        server.url,
    ]  # fmt: skip
    if args.wrk_cpus:
        cmd = ["taskset", "-c", args.wrk_cpus, *cmd]
    cpu_before = cpu_seconds(server.proc.pid)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30, check=False)
    cpu_after = cpu_seconds(server.proc.pid)
    if result.returncode != 0:
        raise BenchError(f"wrk failed ({result.returncode}): {result.stderr or result.stdout}")
    parsed = parse_wrk(result.stdout)
    if cpu_before is not None and cpu_after is not None and parsed["requests"]:
        parsed["cpu_us_per_req"] = (cpu_after - cpu_before) / parsed["requests"] * 1e6
    else:
        parsed["cpu_us_per_req"] = None
    if server.proc.poll() is not None:
        raise BenchError(f"server {server.variant} died under load: {last_error(server.log)}")
    return parsed


# -- results -----------------------------------------------------------------------------------


def ratios(runs: dict[str, dict[int, Run]], variant: str, baseline: str) -> list[float]:
    """``variant / baseline`` req/s, per round in which both ran."""
    mine, theirs = runs.get(variant, {}), runs.get(baseline, {})
    return [mine[r].rps / theirs[r].rps for r in sorted(mine.keys() & theirs.keys())]


def cpu_ratios(runs: dict[str, dict[int, Run]], variant: str, baseline: str) -> list[float]:
    """``baseline / variant`` server CPU per request, per round: the throughput ratio a
    CPU-bound server would show, without wrk's or the neighbours' noise in it."""
    mine, theirs = runs.get(variant, {}), runs.get(baseline, {})
    out = []
    for r in sorted(mine.keys() & theirs.keys()):
        a, b = mine[r].cpu_us_per_req, theirs[r].cpu_us_per_req
        if a and b:
            out.append(b / a)
    return out


def cpu_deltas(runs: dict[str, dict[int, Run]], variant: str) -> list[float]:
    """Server CPU us/request of ``variant`` minus bare's, per round in which both were read."""
    mine, bare = runs.get(variant, {}), runs.get("bare", {})
    deltas = []
    for r in sorted(mine.keys() & bare.keys()):
        a, b = mine[r].cpu_us_per_req, bare[r].cpu_us_per_req
        if a is not None and b is not None:
            deltas.append(a - b)
    return deltas


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(runs: list[Run], order: list[str]) -> dict[str, Any]:
    by_round: dict[str, dict[int, Run]] = {}
    for run in runs:
        by_round.setdefault(run.variant, {})[run.round] = run
    summary: dict[str, Any] = {}
    bare_median = _median([run.rps for run in by_round.get("bare", {}).values()])
    for variant in order:
        mine = list(by_round.get(variant, {}).values())
        if not mine:
            continue
        rps = [run.rps for run in mine]
        per_round = ratios(by_round, variant, "bare")
        summary[variant] = {
            "median_rps": statistics.median(rps),
            "min_rps": min(rps),
            "max_rps": max(rps),
            "ratio_to_bare": _median(per_round),
            "ratio_min": min(per_round, default=None),
            "ratio_max": max(per_round, default=None),
            # Cross-check that does not pair runs: one disturbed bare run cannot tilt a round.
            "ratio_of_medians": statistics.median(rps) / bare_median if bare_median else None,
            "cpu_ratio_to_bare": _median(cpu_ratios(by_round, variant, "bare")),
            "p50_ms": _median([run.p50_ms for run in mine if run.p50_ms is not None]),
            "p99_ms": _median([run.p99_ms for run in mine if run.p99_ms is not None]),
            "cpu_us_per_req": _median(
                [run.cpu_us_per_req for run in mine if run.cpu_us_per_req is not None]
            ),
            "cpu_delta_us": _median(cpu_deltas(by_round, variant)),
            "errors": sum(run.errors for run in mine),
        }
    targets = []
    for target in TARGETS:
        per_round = ratios(by_round, target.variant, target.baseline)
        if not per_round:
            targets.append({**asdict(target), "status": "SKIP", "ratio": None})
            continue
        ratio = statistics.median(per_round)
        targets.append(
            {
                **asdict(target),
                "status": "PASS" if ratio >= target.at_least else "FAIL",
                "ratio": ratio,
                "ratio_min": min(per_round),
                "ratio_max": max(per_round),
                # The threshold lies inside the per-round spread: more rounds would tell.
                "borderline": min(per_round) < target.at_least <= max(per_round),
                "cpu_ratio": _median(cpu_ratios(by_round, target.variant, target.baseline)),
            }
        )
    return {"variants": summary, "targets": targets}


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_report(summary: dict[str, Any], order: list[str]) -> None:
    header = (
        f"{'variant':<20} {'median req/s':>12} {'x bare':>7} {'(per-round range)':>17} "
        f"{'med/med':>7} {'CPU x':>6} "
        f"{'min req/s':>9} {'max req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'CPU us/req':>10} "
        f"{'+CPU us':>7}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for variant in order:
        row = summary["variants"].get(variant)
        if row is None:
            continue
        spread = (
            f"({row['ratio_min']:.3f}-{row['ratio_max']:.3f})"
            if row["ratio_min"] is not None
            else ""
        )
        print(
            f"{variant:<20} {row['median_rps']:>12.0f} {_fmt(row['ratio_to_bare'], '.3f'):>7} "
            f"{spread:>17} {_fmt(row['ratio_of_medians'], '.3f'):>7} "
            f"{_fmt(row['cpu_ratio_to_bare'], '.3f'):>6} "
            f"{row['min_rps']:>9.0f} {row['max_rps']:>9.0f} "
            f"{_fmt(row['p50_ms'], '.2f'):>7} {_fmt(row['p99_ms'], '.2f'):>7} "
            f"{_fmt(row['cpu_us_per_req'], '.0f'):>10} {_fmt(row['cpu_delta_us'], '+.1f'):>7}"
            + (f"  ({row['errors']} errors)" if row["errors"] else "")
        )
    print()
    for target in summary["targets"]:
        if target["status"] == "SKIP":
            print(f"SKIP  {target['label']}  (not measured)")
            continue
        note = "  borderline: threshold within the per-round range" if target["borderline"] else ""
        print(
            f"{target['status']}  {target['label']}: {target['ratio']:.3f}x "
            f"(per-round {target['ratio_min']:.3f}-{target['ratio_max']:.3f}; "
            f"from server CPU/request {_fmt(target['cpu_ratio'], '.3f')}x){note}"
        )


def environment(args: argparse.Namespace) -> dict[str, Any]:
    """What uvicorn's loop/http choice resolves to here, and the versions that matter."""
    from importlib.metadata import PackageNotFoundError, version

    from uvicorn.config import HTTP_PROTOCOLS, LOOP_FACTORIES
    from uvicorn.importer import import_from_string

    http = import_from_string(HTTP_PROTOCOLS[args.http]) if args.http in HTTP_PROTOCOLS else None
    loop_name = args.loop
    factory_path = LOOP_FACTORIES.get(args.loop)
    if factory_path is not None:
        loop = import_from_string(factory_path)(use_subprocess=False)()
        loop_name = f"{type(loop).__module__}.{type(loop).__qualname__}"
        loop.close()
    versions: dict[str, str | None] = {}
    for package in ("fastprof-asgi", "fastapi", "starlette", "uvicorn", "uvloop", "httptools",
                    "pyinstrument", "yappi", "fastapi-profiler"):  # fmt: skip
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    # What was measured: the commit and any uncommitted files (no index refresh, no locks).
    git = {"GIT_OPTIONAL_LOCKS": "0", **os.environ}
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, env=git
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=ROOT, capture_output=True, text=True, env=git,
    ).stdout.split("\n")  # fmt: skip
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout
    return {
        "loop": loop_name,
        "http": f"{http.__module__}.{http.__qualname__}" if http is not None else args.http,
        "python": platform.python_version(),
        "versions": versions,
        "wrk": wrk_version.split("[")[0].strip(),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "loadavg_start": os.getloadavg(),
        "git_head": head or None,
        "git_modified": [line[3:] for line in dirty if line.strip()],
    }


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    cpus = os.cpu_count() or 1
    parser = argparse.ArgumentParser(
        prog="python -m bench.overhead",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--duration", type=int, default=4, help="seconds of load per run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of load per server first")
    parser.add_argument(
        "--variants",
        default=",".join(DESCRIPTIONS),
        help="comma-separated subset of: " + ", ".join(DESCRIPTIONS) + " (bare is always added)",
    )
    parser.add_argument("--json", metavar="OUT", type=Path, help="write all runs and the summary")
    parser.add_argument(
        "--report",
        metavar="IN",
        type=Path,
        help="run nothing: summarize the runs in a file written by --json (with --json OUT, "
        "write it again with the summary recomputed)",
    )
    parser.add_argument("--connections", type=int, default=32, help="wrk -c")
    parser.add_argument("--threads", type=int, default=1, help="wrk -t")
    parser.add_argument("--loop", default="auto", help="uvicorn --loop")
    parser.add_argument("--http", default="auto", help="uvicorn --http")
    parser.add_argument(
        "--server-cpus",
        default="0" if cpus >= 2 else "",
        help="taskset CPU list for the servers ('' = no pinning)",
    )
    parser.add_argument(
        "--wrk-cpus",
        default="1" if cpus >= 2 else "",
        help="taskset CPU list for wrk ('' = no pinning)",
    )
    parser.add_argument("--pause", type=float, default=0.5, help="seconds between runs")
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in DESCRIPTIONS]
    if unknown:
        parser.error(
            f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(DESCRIPTIONS)}"
        )
    if "bare" not in variants:
        variants.insert(0, "bare")  # every ratio is against bare
    args.variants = [v for v in DESCRIPTIONS if v in variants]
    if args.rounds < 1 or args.duration < 1 or args.warmup < 0:
        parser.error("--rounds and --duration must be >= 1, --warmup >= 0 (whole seconds: wrk)")
    if (args.server_cpus or args.wrk_cpus) and shutil.which("taskset") is None:
        parser.error("taskset not found; pass --server-cpus '' --wrk-cpus '' to run unpinned")
    return args


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def report(source: Path, out: Path | None) -> int:
    payload = json.loads(source.read_text())
    runs = [Run(**run) for run in payload["runs"]]
    order = payload["settings"]["variants"]
    summary = summarize(runs, order)
    print(f"{payload['command']}  (code {payload['environment'].get('git_head')})")
    print_report(summary, order)
    if out is not None:
        out.write_text(json.dumps({**payload, **summary}, indent=2, default=str) + "\n")
        print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        return report(args.report, args.json)
    if shutil.which("wrk") is None:
        print("wrk not found on PATH (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    # SIGTERM/SIGHUP stop the run like Ctrl-C: the finally below stops every server.
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    signal.signal(signal.SIGTERM, _interrupt)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # under nohup, stay ignored
        signal.signal(signal.SIGHUP, _interrupt)
    env = environment(args)
    logdir = Path(tempfile.mkdtemp(prefix="fastprof-bench-"))
    print(
        f"uvicorn loop={args.loop} -> {env['loop']}, http={args.http} -> {env['http']}; "
        f"python {env['python']}, {env['cpus']} CPUs ({env['cpu_model']}), "
        f"loadavg {' '.join(f'{x:.2f}' for x in env['loadavg_start'])}"
    )
    print(
        f"code: {env['git_head']}"
        + (f" + uncommitted {', '.join(env['git_modified'])}" if env["git_modified"] else "")
    )
    print(
        f"servers pinned to CPUs {args.server_cpus or '(any)'}, wrk to {args.wrk_cpus or '(any)'}; "
        f"wrk -t{args.threads} -c{args.connections}; {args.rounds} rounds x {args.duration:g} s; "
        f"server logs in {logdir}"
    )
    servers: list[Server] = []
    skipped: dict[str, str] = {}
    started = time.monotonic()
    try:
        for variant in args.variants:
            start_server(variant, args, logdir, servers)
        for server in list(servers):
            problem = wait_ready(server)
            if problem is not None:
                servers.remove(server)
                skipped[server.variant] = problem
                print(f"skip {server.variant}: {problem}")
        if "bare" in skipped:
            raise BenchError(f"the bare server did not start: {skipped['bare']}")
        for server in servers:
            print(f"warm-up {server.variant} (pid {server.proc.pid}, port {server.port})")
            if args.warmup:
                wrk(server, args.warmup, args)
        for rnd in range(args.rounds):
            # Rotate the order so no variant always follows the same neighbour or goes first.
            shift = rnd % len(servers)
            for server in servers[shift:] + servers[:shift]:
                time.sleep(args.pause)
                result = wrk(server, args.duration, args)
                run = Run(round=rnd, variant=server.variant, **result)
                server.runs.append(run)
                print(
                    f"round {rnd + 1}/{args.rounds}  {server.variant:<20} {run.rps:>9.0f} req/s"
                    f"  p99 {_fmt(run.p99_ms, '.2f')} ms"
                    f"  CPU {_fmt(run.cpu_us_per_req, '.0f')} us/req"
                    + (f"  {run.errors} errors" if run.errors else ""),
                    flush=True,
                )
    except KeyboardInterrupt:
        print("\ninterrupted; stopping servers", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        # A second Ctrl-C must not leave servers behind: stop them first, then exit.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        for server in servers:
            stop_server(server)
        signal.signal(signal.SIGINT, previous)
    all_runs = [run for server in servers for run in server.runs]
    summary = summarize(all_runs, args.variants)
    print_report(summary, args.variants)
    for variant, why in skipped.items():
        print(f"SKIP  variant {variant}: {why}")
    log_bytes = {s.variant: s.log.stat().st_size for s in servers}
    noisy = {v: n for v, n in log_bytes.items() if n > 4096}
    if noisy:
        print(f"note: servers that logged more than 4 KiB: {noisy} (see {logdir})")
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    if load > cpus + 0.75:  # the server and wrk account for about 2 of it
        print(
            f"warning: the machine was busy (load average {load:.1f} on {cpus} CPUs, about 2 of "
            "it this benchmark's): req/s ratios swing with the neighbours; the CPU x column "
            "(server CPU time per request) is the steadier estimate"
        )
    print(f"total {time.monotonic() - started:.0f} s")
    if args.json:
        payload = {
            "command": " ".join([Path(sys.executable).name, "-m", "bench.overhead", *sys.argv[1:]]),
            "settings": {k: v for k, v in vars(args).items() if k != "json"},
            "environment": env,
            "loadavg_end": os.getloadavg(),
            "descriptions": {v: DESCRIPTIONS[v] for v in args.variants},
            "skipped": skipped,
            "server_log_bytes": log_bytes,
            "runs": [asdict(run) for run in all_runs],
            **summary,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
