"""Instructions per request of each middleware variant, counted by callgrind.

Wall-clock time on a shared 2-core machine moves by several percent from one minute to the
next; an instruction count does not (about ±2k of a hello-world request's 352k, from memory
layout). For each variant of ``bench/apps.py`` this runs two processes under
``valgrind --tool=callgrind`` - one driving 500 requests, one 2,500, both through
``bench/hotpath.py``'s ASGI driver at 32 in flight, after a warm-up, ``gc.collect()`` and
``gc.freeze()`` - and prints the difference divided by 2,000: what one request costs, the
process's start-up and the warm-up cancelled out.

    .venv/bin/python -m bench.icount                                   # bare,noop,idle,timing
    .venv/bin/python -m bench.icount --variants bare,continuous --continuous-interval 1.0

``--continuous-interval`` sets the sampler's interval of every variant: under callgrind a
request takes about 50 times as long, so 100 Hz ticks would land 50 times as often per
request as in a real server; 1.0 leaves them out. Needs valgrind (Debian: ``apt-get install
valgrind``). Results and method: docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMALL, LARGE = 500, 2500


def _child(variant: str, requests: int, continuous_interval: float | None) -> None:
    from bench.apps import build
    from bench.hotpath import _drive
    from fastprof.backends.continuous import Sampler
    from fastprof.middleware import FastprofMiddleware

    if continuous_interval is not None:
        defaults = FastprofMiddleware.__init__.__kwdefaults__
        assert defaults is not None
        defaults["continuous_interval"] = continuous_interval

    async def run() -> None:
        app = build(variant)
        await _drive(app, 300, 32)
        gc.collect()
        gc.freeze()  # start-up's objects out of every collection; both runs start alike
        await _drive(app, requests, 32)

    asyncio.run(run())
    Sampler.shared().stop()  # a timer left armed can outlive the handler under valgrind


def _total(path: Path) -> int:
    match = re.search(r"^(?:summary|totals):\s+(\d+)", path.read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no instruction total in {path}")
    return int(match.group(1))


def count(variant: str, continuous_interval: float | None) -> float:
    """Instructions per request of ``variant``."""
    with tempfile.TemporaryDirectory() as tmp:
        outputs = {n: Path(tmp) / f"callgrind.{n}" for n in (SMALL, LARGE)}
        procs = []
        for n, out in outputs.items():
            cmd = [
                "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                sys.executable, "-m", "bench.icount", "--child", variant, "--requests", str(n),
            ]  # fmt: skip
            if continuous_interval is not None:
                cmd += ["--continuous-interval", str(continuous_interval)]
            env = {**os.environ, "PYTHONHASHSEED": "0"}
            procs.append(
                subprocess.Popen(
                    cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
                )
            )
        for proc in procs:
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"{variant}: valgrind run failed:\n{err.decode()[-2000:]}")
        return (_total(outputs[LARGE]) - _total(outputs[SMALL])) / (LARGE - SMALL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.icount", description=__doc__)
    parser.add_argument("--variants", default="bare,noop,idle,timing")
    parser.add_argument("--continuous-interval", type=float, default=None)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=LARGE, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.requests, args.continuous_interval)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind not found on PATH (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if "bare" not in variants:
        variants.insert(0, "bare")
    results = {v: count(v, args.continuous_interval) for v in variants}
    bare = results["bare"]
    print(f"{'variant':<20} {'instructions/request':>21} {'vs bare':>9}")
    for variant, value in results.items():
        print(f"{variant:<20} {value:>21,.0f} {value - bare:>+9,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
