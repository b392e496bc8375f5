"""What the continuous sampler's ticks cost inside a real uvicorn server under load.

Runs ``bench/apps.py``'s ``continuous`` variant in a uvicorn server in this process (pinned to
``--server-cpu``), wraps the sampler's methods with timers, loads it with ``wrk -t1 -c32`` from
``--wrk-cpu`` (a warm-up, then ``--duration`` seconds measured) and prints, for each method,
calls a second, calls a tick, microseconds a call and its share of the measured time.
``bench/hotpath.py`` measures ticks in its in-process driver, whose requests are suspended in
other places than a server's; this is the server's view.

    .venv/bin/python -m bench.tickcost
    .venv/bin/python -m bench.tickcost --duration 8 --port 8931

The timers add about a microsecond a call (the outer ones include the inner ones' timers).
Needs ``wrk`` and ``taskset``; loads only 127.0.0.1.
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

from bench.overhead import HOST, parse_wrk

#: (owner, method): outer first.
TIMED = [
    ("Sampler", "_on_signal"),
    ("Sampler", "_sample_passive"),
    ("continuous", "_live_tasks"),
    ("Sampler", "_below_anchor"),
    ("Sampler", "_above_anchor"),
    ("Sampler", "promote"),
    ("continuous", "_holder_in"),
    ("continuous", "_holder_of"),
    ("FastprofMiddleware", "_end_sampled"),
]


def _timed(func: Callable[..., Any], name: str, spent: dict[str, float], calls: Any) -> Any:
    clock = time.perf_counter

    @functools.wraps(func)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = clock()
        try:
            return func(*args, **kwargs)
        finally:
            spent[name] += clock() - started
            calls[name] += 1

    return timed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tickcost", description=__doc__)
    parser.add_argument("--duration", type=int, default=5, help="seconds measured (wrk -d)")
    parser.add_argument("--port", type=int, default=8923)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--wrk-cpu", default="1")
    args = parser.parse_args(argv)

    import uvicorn

    import fastprof.backends.continuous as continuous
    import fastprof.middleware as middleware
    from bench.apps import build

    owners = {
        "Sampler": continuous.Sampler,
        "continuous": continuous,
        "FastprofMiddleware": middleware.FastprofMiddleware,
    }
    spent: dict[str, float] = collections.defaultdict(float)
    calls: collections.Counter[str] = collections.Counter()
    for owner, name in TIMED:
        target = owners[owner]
        setattr(target, name, _timed(getattr(target, name), name, spent, calls))

    server = uvicorn.Server(
        uvicorn.Config(
            build("continuous"), host=HOST, port=args.port, log_level="warning", access_log=False
        )
    )
    result: dict[str, Any] = {}

    def load() -> None:
        try:
            while not server.started:
                time.sleep(0.05)
            url = f"http://{HOST}:{args.port}/"
            wrk = ["taskset", "-c", args.wrk_cpu, "wrk", "-t1", "-c32"]
            subprocess.run([*wrk, "-d2s", url], capture_output=True, check=True)  # warm-up
            spent.clear()
            calls.clear()
            started = time.perf_counter()
            out = subprocess.run(
                [*wrk, f"-d{args.duration}s", url], capture_output=True, text=True, check=True
            ).stdout
            result["seconds"] = time.perf_counter() - started
            result["wrk"] = parse_wrk(out)
        finally:
            server.should_exit = True

    threading.Thread(target=load, daemon=True).start()
    os.sched_setaffinity(0, {args.server_cpu})
    server.run()
    if "seconds" not in result:
        print("the load did not run (is wrk on PATH?)")
        return 1
    seconds = result["seconds"]
    ticks = calls["_on_signal"] or 1
    print(f"{result['wrk']['rps']:.0f} req/s; {calls['_on_signal'] / seconds:.0f} ticks/s")
    print(f"{'method':<16} {'calls/s':>8} {'calls/tick':>10} {'us/call':>8} {'share':>7}")
    for name in sorted(spent, key=lambda n: -spent[n]):
        print(
            f"{name:<16} {calls[name] / seconds:>8.1f} {calls[name] / ticks:>10.2f} "
            f"{spent[name] / calls[name] * 1e6:>8.1f} {spent[name] / seconds * 100:>6.2f}%"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
