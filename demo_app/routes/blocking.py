"""Blocking the event loop (guide 001's first pitfall; 003 and 004: async routes, offloading).

An ``async def`` route runs on the event loop: while it sleeps, spins the CPU or waits on a
socket without ``await``, no other request of the worker makes progress. Each pitfall stalls the
loop for about 150 ms; its twins do the same work awaited, in the threadpool, or in a ``def``
route (which FastAPI runs in the threadpool itself).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from demo_app.resources import ResourcesDep
from demo_app.schemas import Primes, Rates, Slept

router = APIRouter(tags=["blocking"])

SLEEP_SECONDS = 0.15
CPU_SECONDS = 0.15
PRIMES_BELOW = 3000


def count_primes(below: int) -> int:
    return sum(1 for n in range(2, below) if all(n % d for d in range(2, int(n**0.5) + 1)))


def busy_primes(seconds: float = CPU_SECONDS, below: int = PRIMES_BELOW) -> Primes:
    """``seconds`` of this thread's CPU time in pure Python (a fixed computation, repeated).

    CPU time, not wall time: on a busy machine the work takes longer but stays CPU work, and
    the answer is the same everywhere.
    """
    deadline = time.thread_time() + seconds
    count = count_primes(below)
    while time.thread_time() < deadline:
        count = count_primes(below)
    return Primes(below=below, count=count)


def fetch_rates_blocking(url: str) -> Rates:
    with urllib.request.urlopen(url, timeout=10) as response:
        return Rates.model_validate(json.load(response))


@router.get("/pitfall/blocking/sleep")
async def sleep_blocking() -> Slept:
    time.sleep(SLEEP_SECONDS)  # blocks the loop: every other request waits
    return Slept(seconds=SLEEP_SECONDS)


@router.get("/fixed/blocking/sleep")
async def sleep_awaited() -> Slept:
    await asyncio.sleep(SLEEP_SECONDS)
    return Slept(seconds=SLEEP_SECONDS)


@router.get("/fixed/blocking/sleep-threadpool")
async def sleep_in_threadpool() -> Slept:
    await run_in_threadpool(time.sleep, SLEEP_SECONDS)
    return Slept(seconds=SLEEP_SECONDS)


@router.get("/fixed/blocking/sleep-def")
def sleep_in_def_route() -> Slept:
    time.sleep(SLEEP_SECONDS)  # fine here: a def route runs in the threadpool
    return Slept(seconds=SLEEP_SECONDS)


@router.get("/pitfall/blocking/cpu")
async def cpu_on_loop() -> Primes:
    return busy_primes()  # ~150 ms of Python on the loop thread


@router.get("/fixed/blocking/cpu")
async def cpu_in_threadpool() -> Primes:
    # The loop keeps serving (the worker thread hands it the GIL every few ms); for heavy
    # CPU work guide 004 goes further: a process pool.
    return await run_in_threadpool(busy_primes)


@router.get("/pitfall/blocking/http")
async def http_blocking(resources: ResourcesDep) -> Rates:
    return fetch_rates_blocking(resources.upstream.url)  # urllib waits on the loop thread


@router.get("/fixed/blocking/http")
async def http_awaited(resources: ResourcesDep) -> Rates:
    response = await resources.http.get(resources.upstream.url)
    response.raise_for_status()
    return Rates.model_validate(response.json())
