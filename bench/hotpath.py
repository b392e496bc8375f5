"""CPU cost per request of each middleware variant, without a server or a network.

Drives the apps of ``bench/apps.py`` directly through ASGI (a GET / scope like wrk's, a
``receive`` that returns an empty body, a ``send`` that drops the messages) in one asyncio loop,
one request after another (or ``--concurrency`` of them interleaved), and reports microseconds
per request and the difference to bare.
Much steadier than ``bench/overhead.py`` on a noisy machine (best of several repeats, no
sockets), so it is the tool for "what does the middleware itself cost"; overhead.py is the one
for throughput as a client sees it.

    .venv/bin/python -m bench.hotpath
    .venv/bin/python -m bench.hotpath --variants bare,noop,idle,timing --requests 20000
    .venv/bin/python -m bench.hotpath --concurrency 32   # requests interleaved, as under wrk -c32
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from bench.apps import DESCRIPTIONS, build

DEFAULT_VARIANTS = [v for v in DESCRIPTIONS if v != "yappi_all"]

_HEADERS = [
    (b"host", b"127.0.0.1:8000"),
    (b"user-agent", b"wrk"),
    (b"accept", b"*/*"),
]


def _scope() -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": list(_HEADERS),
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Any) -> None:
    return None


async def _send_yielding(message: Any) -> None:
    # Like a server writing to a socket: other requests run before this one goes on.
    if message["type"] == "http.response.start":
        await asyncio.sleep(0)


async def _drive(app: Any, requests: int, concurrency: int = 1) -> float:
    """Seconds for ``requests`` requests through ``app``, ``concurrency`` of them in flight."""
    send = _send if concurrency == 1 else _send_yielding

    async def worker(count: int) -> None:
        for _ in range(count):
            await app(_scope(), _receive, send)

    share, extra = divmod(requests, concurrency)
    started = time.perf_counter()
    await asyncio.gather(*(worker(share + (i < extra)) for i in range(concurrency)))
    return time.perf_counter() - started


async def measure(variant: str, requests: int, concurrency: int) -> float:
    """Microseconds per request (after a warm-up: lazy imports, caches)."""
    app = build(variant)
    await _drive(app, max(requests // 5, 200), concurrency)
    return await _drive(app, requests, concurrency) / requests * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__)
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
    parser.add_argument("--requests", type=int, default=10_000, help="requests per repeat")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="requests in flight at once (they interleave at each response start, as in a "
        "server); 1 = one after another, the middleware's own cost and nothing else",
    )
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if "bare" not in variants:
        variants.insert(0, "bare")
    results: dict[str, list[float]] = {}
    # Variants interleaved repeat by repeat, so drift of the machine hits them all alike.
    for _ in range(args.repeats):
        for variant in variants:
            us = asyncio.run(measure(variant, args.requests, args.concurrency))
            results.setdefault(variant, []).append(us)
    bare = min(results["bare"])
    print(f"{'variant':<20} {'best us/req':>11} {'median':>8} {'+us vs bare':>11}  what")
    for variant in variants:
        times = results[variant]
        best = min(times)
        print(
            f"{variant:<20} {best:>11.2f} {statistics.median(times):>8.2f} {best - bare:>+11.2f}"
            f"  {DESCRIPTIONS[variant]}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
