"""fastprof's load client (fastprof/load) against wrk, on one uvicorn hello-world server.

One server (``bench/hello_app.py``, one worker, no access log, uvicorn's ``auto`` loop and HTTP
implementation) is started once. Each round then runs the following; the runs compared with each
other run back to back, the clients' order alternating and the kinds' order rotating from round
to round, so that the drift of a shared machine hits every client alike:

* throughput: ``wrk -t1 -c32 -d5s`` and our client at concurrency 32 for 5 s, closed loop;
* latency, for the p50: the same two at concurrency 8 and at 1 on ``/``, and at concurrency 8
  on ``/sleep5`` (5 ms of ``asyncio.sleep``). On ``/`` at 8 the server's one core is saturated
  and requests queue in it, so the p50 is mostly queueing - how the client's arrivals
  interleave; at 1 there is no queue and the p50 is one round trip, the server's work plus the
  client's own overhead; on ``/sleep5`` the latency is known (5 ms plus the round trip) and no
  queue forms, which checks the measurement itself.

Our client runs in its own process (``python -m bench.loadclient --child ...``), like wrk,
started before its timed run; its warm-up is 0 s, since wrk has none. With ``--pin split``
(the default on 2+ CPUs) the server is pinned to CPU 0 and every client to CPU 1 with taskset,
so a client never takes CPU from the server it measures; ``--pin none`` lets the kernel place
them. Reported: the median req/s and p50 of each client over the rounds, the median of the
per-round ratios ours/wrk, and each client's own CPU time per request (from rusage).

    .venv/bin/python -m bench.loadclient                      # 5 rounds x 8 runs x 5 s: ~4 min
    .venv/bin/python -m bench.loadclient --loops uvloop,asyncio --json bench/results/loadclient.json
    .venv/bin/python -m bench.loadclient --parser-only        # hand-written parser vs h11

Targets (from the issue): our req/s >= 0.8x wrk's at c32; our p50 within 20 % of wrk's (checked
at every latency concurrency; "within" read both ways).
Needs ``wrk`` on PATH (Debian: ``apt-get install wrk``). Loads only 127.0.0.1; every run is
bounded by ``--duration``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


#: Latency runs: kind -> (connections, path).
KINDS: dict[str, tuple[int, str]] = {
    "latency-c8": (8, "/"),
    "latency-c1": (1, "/"),
    "sleep5-c8": (8, "/sleep5"),
}
LATENCY_KINDS = list(KINDS)


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


# -- the server --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(port: int, cpus: str, log: Path, kind: str) -> subprocess.Popen[bytes]:
    if kind == "uvicorn":
        cmd = [
            sys.executable, "-m", "uvicorn", "bench.hello_app:app", "--host", HOST,
            "--port", str(port), "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip
    else:
        cmd = [sys.executable, "-m", "bench.hello_app", str(port)]
    if cpus:
        cmd = ["taskset", "-c", cpus, *cmd]
    with log.open("wb") as out:
        return subprocess.Popen(
            cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def wait_ready(proc: subprocess.Popen[bytes], port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise BenchError(f"server not ready after {timeout:.0f} s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
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


# -- the clients -------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise BenchError(f"not a wrk duration: {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(
    port: int, connections: int, duration: int, cpus: str, path: str = "/"
) -> dict[str, Any]:
    url = f"http://{HOST}:{port}{path}"
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url]
    if cpus:
        cmd = ["taskset", "-c", cpus, *cmd]
    before = _children_cpu()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30, check=False)
    cpu = _children_cpu() - before
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    out = done.stdout
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    total = re.search(r"^\s*(\d+) requests in", out, re.M)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    if rps is None or total is None or p50 is None or p99 is None:
        raise BenchError(f"could not read wrk's output:\n{out}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "rps": float(rps[1]),
        "requests": int(total[1]),
        "p50_ms": _ms(p50[1]),
        "p99_ms": _ms(p99[1]),
        "errors": errors + (int(non2xx[1]) if non2xx else 0),
        "cpu_us_per_req": cpu / int(total[1]) * 1e6 if int(total[1]) else None,
    }


def run_ours(
    port: int, connections: int, duration: int, cpus: str, loop: str, variant: str, path: str
) -> dict[str, Any]:
    cmd = [
        sys.executable, "-m", "bench.loadclient", "--child", "--port", str(port),
        "--connections", str(connections), "--duration", str(duration), "--loop", loop,
        "--variant", variant, "--path", path,
    ]  # fmt: skip
    if cpus:
        cmd = ["taskset", "-c", cpus, *cmd]
    done = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=duration + 60, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"our client failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def child(args: argparse.Namespace) -> int:
    """One timed run of our client, in this process; prints one JSON line."""
    from fastprof.load import RequestSpec, loop_factory, run_load

    if args.variant == "streams":
        coro = _streams_load(args.port, args.connections, args.duration, args.path)
    else:
        coro = run_load(
            HOST, args.port, [RequestSpec("GET", args.path)], concurrency=args.connections,
            duration=args.duration, warmup=0.0, timeout=10.0,
        )  # fmt: skip
    factory = loop_factory() if args.loop == "uvloop" else asyncio.new_event_loop
    cpu_before = time.process_time()
    with asyncio.Runner(loop_factory=factory) as runner:
        result = runner.run(coro)
    cpu = time.process_time() - cpu_before
    summary = result.to_dict()
    print(
        json.dumps(
            {
                "rps": summary["rps"],
                "requests": summary["requests"],
                "p50_ms": summary["latency_ms"]["p50"],
                "p99_ms": summary["latency_ms"]["p99"],
                "errors": summary["errors"],
                "cpu_us_per_req": cpu / result.requests * 1e6 if result.requests else None,
            }
        )
    )
    return 0


async def _streams_load(port: int, connections: int, duration: float, path: str) -> Any:
    """The same closed loop on asyncio streams instead of a Protocol, for comparison."""
    from fastprof.load.client import LoadResult
    from fastprof.load.histogram import Histogram
    from fastprof.load.parser import ResponseParser

    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
    latency = Histogram()
    count = 0
    start = time.perf_counter()
    end = start + duration

    async def worker() -> None:
        nonlocal count
        reader, writer = await asyncio.open_connection(HOST, port)
        parser = ResponseParser()
        try:
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                parser.reset()
                writer.write(request)
                while not parser.feed(await reader.read(65536)):
                    pass
                latency.record(time.perf_counter() - t0)
                count += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return LoadResult(count, 0, time.perf_counter() - start, latency, {200: count}, [], 0)


# -- parsers -----------------------------------------------------------------------------------


def parser_bench(n: int = 50_000) -> dict[str, float]:
    """µs per response: ours vs h11 (and httptools if installed), Content-Length and chunked."""
    import h11

    try:
        import httptools
    except ImportError:
        httptools = None  # type: ignore[assignment]

    from fastprof.load.parser import ResponseParser

    plain = (
        b"HTTP/1.1 200 OK\r\ndate: Wed, 25 Nov 2026 10:00:00 GMT\r\nserver: uvicorn\r\n"
        b"content-length: 19\r\ncontent-type: application/json\r\n\r\n"
        b'{"message":"hello"}'
    )
    chunked = (
        b"HTTP/1.1 200 OK\r\ndate: Wed, 25 Nov 2026 10:00:00 GMT\r\nserver: uvicorn\r\n"
        b"content-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n"
        + b"".join(b"6\r\nchunk%d\r\n" % i for i in range(5))
        + b"0\r\n\r\n"
    )
    results: dict[str, float] = {}
    for label, raw in (("content-length", plain), ("chunked", chunked)):
        ours = ResponseParser()
        t0 = time.perf_counter()
        for _ in range(n):
            ours.reset()
            if not ours.feed(raw):
                raise BenchError("our parser did not finish")
        results[f"ours_{label}_us"] = (time.perf_counter() - t0) / n * 1e6

        conn = h11.Connection(our_role=h11.CLIENT)
        t0 = time.perf_counter()
        for _ in range(n):
            conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
            conn.send(h11.EndOfMessage())
            conn.receive_data(raw)
            while not isinstance(conn.next_event(), h11.EndOfMessage):
                pass
            conn.start_next_cycle()
        # h11's state machine needs the request sent through it too: that is its real cost.
        results[f"h11_{label}_us"] = (time.perf_counter() - t0) / n * 1e6

        if httptools is not None:
            sink = _HttptoolsSink()
            parser = httptools.HttpResponseParser(sink)
            t0 = time.perf_counter()
            for _ in range(n):
                sink.done, sink.head = False, b""
                parser.feed_data(raw)
                if not sink.done:
                    raise BenchError("httptools did not finish")
                parser.get_status_code()
                parser.should_keep_alive()
            results[f"httptools_{label}_us"] = (time.perf_counter() - t0) / n * 1e6
    return results


class _HttptoolsSink:
    """The callbacks a client would need: the first bytes of the body, and the end."""

    __slots__ = ("done", "head")

    def __init__(self) -> None:
        self.done = False
        self.head = b""

    def on_body(self, body: bytes) -> None:
        if len(self.head) < 200:
            self.head += body[: 200 - len(self.head)]

    def on_message_complete(self) -> None:
        self.done = True


# -- main --------------------------------------------------------------------------------------


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    cpus = os.cpu_count() or 1
    parser = argparse.ArgumentParser(
        prog="python -m bench.loadclient",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5, help="seconds per run (whole: wrk)")
    parser.add_argument("--connections", type=int, default=32, help="throughput runs")
    parser.add_argument(
        "--pin", choices=["split", "none"], default="split" if cpus >= 2 else "none",
        help="split: server on CPU 0, clients on CPU 1 (taskset); none: unpinned",
    )  # fmt: skip
    parser.add_argument(
        "--loops", default="uvloop", help="event loops for our client: uvloop, asyncio or both"
    )
    parser.add_argument("--streams", action="store_true", help="also run a streams-based client")
    parser.add_argument(
        "--ceiling", action="store_true",
        help="also load a canned-answer server (no ASGI) to show each client's own ceiling",
    )  # fmt: skip
    parser.add_argument("--json", metavar="OUT", type=Path)
    parser.add_argument("--parser-only", action="store_true")
    # The child: one run of our client.
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--loop", default="uvloop", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="protocol", help=argparse.SUPPRESS)
    parser.add_argument("--path", default="/", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.loops = [x.strip() for x in args.loops.split(",") if x.strip()]
    if any(loop not in ("uvloop", "asyncio") for loop in args.loops) or not args.loops:
        parser.error("--loops takes uvloop, asyncio or both")
    if args.rounds < 1 or args.duration < 1:
        parser.error("--rounds and --duration must be >= 1")
    return args


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def measure(
    args: argparse.Namespace,
    server: str,
    clients: list[str],
    kinds: list[str],
    runs: list[dict[str, Any]],
) -> None:
    """Start ``server``, warm it up, and run every client x kind per round, order rotated."""
    server_cpus, client_cpus = ("0", "1") if args.pin == "split" else ("", "")
    port = free_port()
    log = Path(f"/tmp/fastprof-bench-loadclient-{server}-{port}.log")
    print(f"server {server} on port {port}, log {log}", flush=True)
    proc = start_server(port, server_cpus, log, server)
    try:
        wait_ready(proc, port)
        run_wrk(port, args.connections, 2, client_cpus)  # server warm-up
        for rnd in range(args.rounds):
            # The runs compared with each other follow each other: kinds rotate from round to
            # round, and within a kind the clients' order alternates.
            shift = rnd % len(kinds)
            order = clients if rnd % 2 == 0 else clients[::-1]
            pairs = [(c, kind) for kind in kinds[shift:] + kinds[:shift] for c in order]
            for client, kind in pairs:
                connections, path = KINDS.get(kind, (args.connections, "/"))
                time.sleep(0.3)
                if client == "wrk":
                    result = run_wrk(port, connections, args.duration, client_cpus, path)
                else:
                    variant, loop = client.split("-")
                    variant = "streams" if variant == "streams" else "protocol"
                    result = run_ours(
                        port, connections, args.duration, client_cpus, loop, variant, path
                    )
                if proc.poll() is not None:
                    raise BenchError("the server died")
                runs.append(
                    {"server": server, "round": rnd, "client": client, "kind": kind, **result}
                )
                print(
                    f"{server:<7} round {rnd + 1}/{args.rounds} {kind:<12} {client:<15}"
                    f" c={connections:<3} {result['rps']:>8.0f} req/s"
                    f"  p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms"
                    f"  client CPU {result['cpu_us_per_req'] or 0:.1f} µs/req"
                    + (f"  {result['errors']} errors" if result["errors"] else ""),
                    flush=True,
                )
    finally:
        stop(proc)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child(args)
    if args.parser_only:
        for key, value in parser_bench().items():
            print(f"{key:<28} {value:6.2f} µs")
        return 0
    if shutil.which("wrk") is None:
        print("wrk not found on PATH (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    if args.pin == "split" and shutil.which("taskset") is None:
        print("taskset not found; use --pin none", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    clients = ["wrk", *(f"ours-{loop}" for loop in args.loops)]
    if args.streams:
        clients.append("streams-uvloop")
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, loadavg "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; pin={args.pin}; "
        f"{args.rounds} rounds x {args.duration} s; c={args.connections} (throughput), "
        + ", ".join(f"{kind}: c={c} {path}" for kind, (c, path) in KINDS.items()),
        flush=True,
    )
    runs: list[dict[str, Any]] = []
    try:
        measure(args, "uvicorn", clients, ["throughput", *LATENCY_KINDS], runs)
        if args.ceiling:
            measure(args, "canned", clients, ["throughput"], runs)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    summary = summarize(runs, clients)
    print_summary(summary)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "command": " ".join(["python", "-m", "bench.loadclient", *(argv or sys.argv[1:])]),
            "settings": {k: str(v) for k, v in vars(args).items()},
            "loadavg_end": os.getloadavg(),
            "runs": runs,
            "summary": summary,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def summarize(runs: list[dict[str, Any]], clients: list[str]) -> dict[str, Any]:
    def pick(server: str, client: str, kind: str) -> dict[int, dict[str, Any]]:
        return {
            r["round"]: r
            for r in runs
            if (r["server"], r["client"], r["kind"]) == (server, client, kind)
        }

    summary: dict[str, Any] = {"rows": [], "targets": []}
    measured = dict.fromkeys((r["server"], r["kind"]) for r in runs)
    for server, kind in measured:
        for client in clients:
            mine, wrk = pick(server, client, kind), pick(server, "wrk", kind)
            if not mine:
                continue
            both = sorted(mine.keys() & wrk.keys())
            summary["rows"].append(
                {
                    "server": server,
                    "kind": kind,
                    "client": client,
                    "median_rps": _median([r["rps"] for r in mine.values()]),
                    "rps_ratio_to_wrk": _median([mine[i]["rps"] / wrk[i]["rps"] for i in both]),
                    "median_p50_ms": _median([r["p50_ms"] for r in mine.values()]),
                    "p50_ratio_to_wrk": _median(
                        [mine[i]["p50_ms"] / wrk[i]["p50_ms"] for i in both]
                    ),
                    "median_p99_ms": _median([r["p99_ms"] for r in mine.values()]),
                    "cpu_us_per_req": _median([r["cpu_us_per_req"] for r in mine.values()]),
                    "errors": sum(r["errors"] for r in mine.values()),
                }
            )
    for row in summary["rows"]:
        if row["server"] != "uvicorn" or not row["client"].startswith("ours"):
            continue
        if row["kind"] == "throughput":
            value, label = row["rps_ratio_to_wrk"], "req/s >= 0.8x wrk's"
            ok = value is not None and value >= 0.8
        else:
            value, label = row["p50_ratio_to_wrk"], "p50 within 20% of wrk's"
            ok = value is not None and abs(value - 1) <= 0.2
        summary["targets"].append(
            {
                "label": f"{row['client']} {row['kind']}: {label}",
                "value": value,
                "status": "PASS" if ok else "FAIL",
            }
        )
    return summary


def print_summary(summary: dict[str, Any]) -> None:
    def f(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    header = (
        f"{'server':<8} {'kind':<12} {'client':<15} {'req/s':>8} {'x wrk':>6} {'p50 ms':>7}"
        f" {'x wrk':>6} {'p99 ms':>7} {'CPU µs/req':>10}"
    )
    print("\nmedians over the rounds; x wrk = median of the per-round ratios")
    print(header + "\n" + "-" * len(header))
    for r in summary["rows"]:
        print(
            f"{r['server']:<8} {r['kind']:<12} {r['client']:<15} {f(r['median_rps'], '.0f'):>8}"
            f" {f(r['rps_ratio_to_wrk'], '.3f'):>6} {f(r['median_p50_ms'], '.2f'):>7}"
            f" {f(r['p50_ratio_to_wrk'], '.3f'):>6} {f(r['median_p99_ms'], '.2f'):>7}"
            f" {f(r['cpu_us_per_req'], '.1f'):>10}"
            + (f"  ({r['errors']} errors)" if r["errors"] else "")
        )
    print()
    for target in summary["targets"]:
        print(f"{target['status']}  {target['label']}: {f(target['value'], '.3f')}")


if __name__ == "__main__":
    sys.exit(main())
