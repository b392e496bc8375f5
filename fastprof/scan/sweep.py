"""Server tuning sweeps: ``fastprof scan APP --sweep workers=1,2,4``.

A sweep measures the same load once per server setting, restarting the app for each, and says
which setting served the most requests per second without a worse tail. The parameters
(:data:`PARAMETERS`):

``workers``
    uvicorn worker processes (``uvicorn --workers N``).
``threads``
    the size of AnyIO's default thread limiter: how many ``def`` endpoints and sync
    dependencies run at once (FastAPI's threadpool; AnyIO's default is 40).
``keepalive``
    ``on``: the load client keeps its connections open (HTTP/1.1 keep-alive, as a proxy with
    upstream keep-alive does); ``off``: every request says ``Connection: close`` and the next
    one opens a new connection, as a reverse proxy without upstream keep-alive does (guide 002
    measured nginx->app both ways).

Several ``--sweep`` options form a grid: every combination is measured (at most
:data:`MAX_SETTINGS`). Each setting's load is one mix of the scan's routes, equally weighted,
sent closed-loop for ``duration`` seconds after ``warmup`` to the app as it is - no profiling
middleware - so the numbers are the app's own. With several ``rounds``, every round measures
every setting (in a rotated order) and each setting reports the medians of its rounds.

The recommendation (:func:`recommend`):

1. settings whose error rate is more than 1 point above the lowest are left out;
2. so are settings whose p99 is more than 50% above the best p99 of the rest (two runs of one
   setting differed by up to a fifth in p99 on the demo app: a tighter bar would judge noise);
3. of the rest, the one with the most req/s wins,
4. unless a cheaper one (fewer workers or threads, the other parameters equal) is within 5% of
   its req/s, in which case the cheapest such setting wins.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from itertools import product
from statistics import median
from typing import TypedDict

from fastprof.load import loop_factory
from fastprof.load.client import LoadResult, RequestSpec, run_load

Value = int | str
Setting = dict[str, Value]

#: at most this many settings (the product of the values of every --sweep)
MAX_SETTINGS = 12
#: rule 1: error rate allowed above the lowest one
ERROR_SLACK = 0.01
#: rule 2: p99 allowed above the best one
P99_SLACK = 0.5
#: rule 4: req/s differences smaller than this are noise
NOISE = 0.05
#: with fewer measured requests than this, a p99 is close to the maximum: say so
FEW_REQUESTS = 200


class SweepError(ValueError):
    """A --sweep option that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str
    #: a value from its text; raises ValueError
    parse: Callable[[str], Value]
    #: smaller values cost less (workers, threads); keepalive is not ordered
    ordered: bool
    help: str


def _count(low: int, high: int) -> Callable[[str], Value]:
    def parse(text: str) -> Value:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"must be within {low}-{high}")
        return value

    return parse


def _switch(text: str) -> Value:
    word = text.lower()
    if word in ("on", "true", "yes", "1"):
        return "on"
    if word in ("off", "false", "no", "0"):
        return "off"
    raise ValueError("must be on or off")


PARAMETERS: dict[str, Parameter] = {
    p.name: p
    for p in (
        Parameter("workers", _count(1, 32), True, "uvicorn worker processes"),
        Parameter("threads", _count(1, 1000), True, "threadpool size for def endpoints"),
        Parameter("keepalive", _switch, False, "client keep-alive: on, or off"),
    )
}


@dataclass(frozen=True, slots=True)
class Sweep:
    """One ``--sweep NAME=V1,V2,...``."""

    name: str
    values: tuple[Value, ...]


def parse_sweep(text: str) -> Sweep:
    """``"workers=1,2,4"`` -> ``Sweep("workers", (1, 2, 4))``; raises :class:`SweepError`."""
    name, sep, rest = text.partition("=")
    name = name.strip().lower()
    known = ", ".join(PARAMETERS)
    if not sep or not name:
        raise SweepError(f"--sweep {text!r}: write NAME=V1,V2 (NAME: {known})")
    parameter = PARAMETERS.get(name)
    if parameter is None:
        raise SweepError(f"--sweep {text!r}: unknown parameter {name!r} (known: {known})")
    values: list[Value] = []
    for part in rest.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = parameter.parse(part)
        except ValueError as exc:
            raise SweepError(f"--sweep {text!r}: {name} {part!r}: {exc}") from None
        if value not in values:
            values.append(value)
    if len(values) < 2:
        raise SweepError(f"--sweep {text!r}: give at least two different values")
    return Sweep(name, tuple(values))


def parse_sweeps(texts: Sequence[str]) -> list[Sweep]:
    """Every --sweep option, checked together: each parameter once, the grid not too big."""
    sweeps = [parse_sweep(text) for text in texts]
    names = [s.name for s in sweeps]
    for name in names:
        if names.count(name) > 1:
            raise SweepError(f"--sweep {name} given more than once; list its values in one")
    size = 1
    for s in sweeps:
        size *= len(s.values)
    if size > MAX_SETTINGS:
        raise SweepError(
            f"--sweep: {size} settings to measure (at most {MAX_SETTINGS}); sweep fewer values"
        )
    return sweeps


def grid(sweeps: Sequence[Sweep]) -> list[Setting]:
    """Every combination, the first parameter varying slowest."""
    names = [s.name for s in sweeps]
    return [dict(zip(names, combo, strict=True)) for combo in product(*(s.values for s in sweeps))]


def label(setting: Mapping[str, Value]) -> str:
    return " ".join(f"{name}={value}" for name, value in setting.items())


def specs_for(specs: Sequence[RequestSpec], setting: Mapping[str, Value]) -> list[RequestSpec]:
    """The requests to send under ``setting``: with ``keepalive=off``, ``Connection: close``."""
    if setting.get("keepalive") != "off":
        return list(specs)
    return [
        RequestSpec(
            method=s.method,
            path=s.path,
            headers=(
                *((k, v) for k, v in s.headers if k.lower() != "connection"),
                ("Connection", "close"),
            ),
            body=s.body,
            weight=s.weight,
            expect_status=s.expect_status,
            name=s.name,
        )
        for s in specs
    ]


def mix(routes: Mapping[str, Sequence[RequestSpec]]) -> list[RequestSpec]:
    """One request mix in which every route is equally likely, whatever its number of specs."""
    mixed: list[RequestSpec] = []
    for key, specs in routes.items():
        total = sum(s.weight for s in specs) or 1.0
        for s in specs:
            mixed.append(
                RequestSpec(
                    method=s.method,
                    path=s.path,
                    headers=s.headers,
                    body=s.body,
                    weight=s.weight / total,
                    expect_status=s.expect_status,
                    name=key,
                )
            )
    return mixed


# -- results -----------------------------------------------------------------------------------


class SweepPoint(TypedDict):
    #: the swept value (one parameter), or the setting's label (a grid)
    value: Value
    setting: Setting
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    timeouts: int
    error_samples: list[str]
    #: each round's numbers, in the order they ran (one entry with --sweep-rounds 1)
    runs: list[RunDict]


class SweepResult(TypedDict):
    #: the swept parameter, or the parameters joined by "," (a grid)
    parameter: str
    parameters: list[str]
    results: list[SweepPoint]
    #: index into results, None when nothing could be recommended
    recommended: int | None
    recommendation: str
    notes: list[str]
    routes: list[str]
    duration: float
    warmup: float
    concurrency: int
    rounds: int
    #: the parameters not swept, as the app ran for every setting
    base: dict[str, Value]
    cpu_count: int | None


class RunDict(TypedDict):
    """One round's measurement of a setting."""

    rps: float
    p99_ms: float


def point(setting: Setting, single: bool, loads: Sequence[LoadResult]) -> SweepPoint:
    """A setting's numbers over its rounds: medians of req/s, p50 and p99; sums of counts."""
    summaries = [load.latency.summary_ms() for load in loads]
    value: Value = next(iter(setting.values())) if single else label(setting)
    samples: list[str] = []
    for load in loads:
        samples.extend(s for s in load.error_samples if s not in samples)
    return {
        "value": value,
        "setting": dict(setting),
        "requests": sum(load.requests for load in loads),
        "rps": round(median(load.rps for load in loads), 1),
        "p50_ms": round(median(s["p50"] or 0.0 for s in summaries), 3),
        "p99_ms": round(median(s["p99"] or 0.0 for s in summaries), 3),
        "errors": sum(load.errors for load in loads),
        "timeouts": sum(load.timeouts for load in loads),
        "error_samples": samples[:3],
        "runs": [
            {"rps": round(load.rps, 1), "p99_ms": round(s["p99"] or 0.0, 3)}
            for load, s in zip(loads, summaries, strict=True)
        ],
    }


def _error_rate(p: SweepPoint) -> float:
    return p["errors"] / p["requests"] if p["requests"] else 1.0


def _cheaper(a: Mapping[str, Value], b: Mapping[str, Value]) -> bool:
    """``a`` costs less than ``b``: no ordered value larger, one smaller, the others equal."""
    smaller = False
    for name, value in a.items():
        other = b.get(name)
        if PARAMETERS[name].ordered and isinstance(value, int) and isinstance(other, int):
            if value > other:
                return False
            smaller = smaller or value < other
        elif value != other:
            return False
    return smaller


def _cost(p: SweepPoint) -> tuple[int, ...]:
    return tuple(v for v in p["setting"].values() if isinstance(v, int))


def _describe(p: SweepPoint) -> str:
    return f"{label(p['setting'])} ({p['rps']:.0f} req/s, p99 {p['p99_ms']:.1f} ms)"


def recommend(
    results: Sequence[SweepPoint], cpu_count: int | None
) -> tuple[int | None, str, list[str]]:
    """The recommended setting's index, the recommendation line, and notes; see the module."""
    measured = [i for i, p in enumerate(results) if p["requests"] > 0]
    if not measured:
        return None, "No setting completed a request; see the errors of each setting.", []
    lowest = min(_error_rate(results[i]) for i in measured)
    clean = [i for i in measured if _error_rate(results[i]) <= lowest + ERROR_SLACK]
    best_p99 = min(results[i]["p99_ms"] for i in clean)
    tail_ok = [i for i in clean if results[i]["p99_ms"] <= best_p99 * (1 + P99_SLACK)]
    top = max(tail_ok, key=lambda i: results[i]["rps"])
    pick = top
    cheaper = [
        i
        for i in tail_ok
        if _cheaper(results[i]["setting"], results[top]["setting"])
        and results[i]["rps"] >= results[top]["rps"] * (1 - NOISE)
    ]
    if cheaper:
        pick = min(cheaper, key=lambda i: _cost(results[i]))
    chosen = results[pick]
    line = f"Recommended: {_describe(chosen)}"
    if pick != top:
        line += (
            f"; {label(results[top]['setting'])} served the most ({results[top]['rps']:.0f} "
            f"req/s) but is within {NOISE:.0%} of it, which is noise, at a higher cost."
        )
    else:
        line += (
            f": the most req/s of the settings whose p99 is within {P99_SLACK:.0%} of the best "
            f"({best_p99:.1f} ms)."
        )
    notes: list[str] = []
    for i in measured:
        p = results[i]
        if i not in clean:
            notes.append(
                f"{label(p['setting'])} left out: {_error_rate(p):.0%} of requests failed."
            )
        elif i not in tail_ok and p["rps"] > chosen["rps"]:  # it mattered: it served more
            notes.append(
                f"{label(p['setting'])} served more ({p['rps']:.0f} req/s) but was left out: "
                f"p99 {p['p99_ms']:.1f} ms, more than {P99_SLACK:.0%} above the best."
            )
    for i, p in enumerate(results):
        if i not in measured:
            notes.append(f"{label(p['setting'])}: no request completed.")
    few = [
        label(results[i]["setting"])
        for i in measured
        if results[i]["requests"] / max(1, len(results[i]["runs"])) < FEW_REQUESTS
    ]
    if few:
        notes.append(
            f"Under {FEW_REQUESTS} requests measured for {', '.join(few)}: a p99 of so few is "
            "close to their maximum and moves from run to run. Lengthen --sweep-duration, or "
            "load fewer, faster routes with --route."
        )
    notes.extend(_worse_with_more(results, measured))
    notes.extend(_keepalive_note(results, measured, chosen))
    if "workers" in chosen["setting"]:
        notes.append(
            f"This machine has {cpu_count or '?'} CPUs (os.cpu_count()) and the load client ran "
            "on it too, taking CPU the workers would otherwise get. The guides' starting points "
            "- $(nproc) workers for CPU-bound apps, 2 x $(nproc) + 1 for I/O-bound ones "
            "(guide 001), 2-4x the cores under gunicorn (guide 004) - are to be measured on the "
            "machine you deploy to, as here."
        )
    return pick, line, notes


def _worse_with_more(results: Sequence[SweepPoint], measured: Sequence[int]) -> list[str]:
    """Where raising workers or threads, the rest equal, lost more than noise."""
    notes = []
    for name, parameter in PARAMETERS.items():
        if not parameter.ordered:
            continue
        worst: tuple[float, SweepPoint, SweepPoint] | None = None
        for i in measured:
            best = results[i]
            if name not in best["setting"]:
                continue
            for j in measured:
                more = results[j]
                mine, theirs = best["setting"][name], more["setting"].get(name)
                if not (isinstance(mine, int) and isinstance(theirs, int) and theirs > mine):
                    continue
                rest_equal = all(
                    more["setting"][k] == v for k, v in best["setting"].items() if k != name
                )
                if not rest_equal or not best["rps"]:
                    continue
                drop = 1 - more["rps"] / best["rps"]
                if drop > NOISE and (worst is None or drop > worst[0]):
                    worst = (drop, best, more)
        if worst is not None:
            drop, best, more = worst
            note = (
                f"More {name} made it worse: {label(more['setting'])} served {drop:.0%} fewer "
                f"req/s than {label(best['setting'])}"
            )
            if name == "workers":
                note += (
                    ": workers beyond the free cores compete for them (guide 001: too many "
                    "workers can degrade performance)."
                )
            else:
                note += "."
            notes.append(note)
    return notes


def _keepalive_note(
    results: Sequence[SweepPoint], measured: Sequence[int], chosen: SweepPoint
) -> list[str]:
    if "keepalive" not in chosen["setting"]:
        return []
    twins: dict[Value, SweepPoint] = {}
    for i in measured:
        p = results[i]
        if all(p["setting"][k] == v for k, v in chosen["setting"].items() if k != "keepalive"):
            twins[p["setting"]["keepalive"]] = p
    on, off = twins.get("on"), twins.get("off")
    if on is None or off is None or not off["rps"]:
        return []
    gain = on["rps"] / off["rps"] - 1
    return [
        f"Keep-alive on served {gain:+.0%} req/s against off (guide 002 measured +10% for a "
        "sync and +15% for an async endpoint between nginx and the app). Behind a proxy, keep "
        "upstream connections alive: nginx `keepalive N;` in the upstream block with "
        '`proxy_http_version 1.1;` and `proxy_set_header Connection "";`.'
    ]


# -- the run -----------------------------------------------------------------------------------

#: starts the app under a setting and yields (host, port); stops it on exit
Serve = Callable[[Setting], AbstractContextManager[tuple[str, int]]]
Progress = Callable[[str, int, int], None]


def run_sweep(
    sweeps: Sequence[Sweep],
    routes: Mapping[str, Sequence[RequestSpec]],
    serve: Serve,
    *,
    concurrency: int,
    duration: float,
    warmup: float,
    timeout: float,
    rounds: int = 1,
    base: Mapping[str, Value] | None = None,
    progress: Progress | None = None,
) -> SweepResult:
    """Measure ``routes`` (route key -> requests) under every setting of the grid of ``sweeps``.

    With ``rounds`` > 1 every round measures every setting once, each round starting one
    setting later than the last, so that a machine's drift or a neighbour's burst falls on
    different settings; each setting then reports the medians of its rounds.
    """
    if not routes:
        raise SweepError("--sweep: no route to load (none discovered, or all skipped)")
    if rounds < 1:
        raise SweepError(f"--sweep-rounds must be at least 1, got {rounds}")
    note = progress or (lambda what, done, total: None)
    settings = grid(sweeps)
    single = len(sweeps) == 1
    requests = mix(routes)
    loads: list[list[LoadResult]] = [[] for _ in settings]
    total = rounds * len(settings)
    for round_ in range(rounds):
        for step in range(len(settings)):
            index = (round_ + step) % len(settings)
            setting = settings[index]
            note(f"sweep {label(setting)}", round_ * len(settings) + step, total)
            with serve(setting) as (host, port):
                loads[index].append(
                    _measure(
                        host,
                        port,
                        specs_for(requests, setting),
                        concurrency=concurrency,
                        duration=duration,
                        warmup=warmup,
                        timeout=timeout,
                    )
                )
    note("sweep done", total, total)
    results = [point(setting, single, loads[i]) for i, setting in enumerate(settings)]
    cpus = os.cpu_count()
    pick, line, notes = recommend(results, cpus)
    names = [s.name for s in sweeps]
    return {
        "parameter": ",".join(names),
        "parameters": names,
        "results": results,
        "recommended": pick,
        "recommendation": line,
        "notes": notes,
        "routes": list(routes),
        "duration": duration,
        "warmup": warmup,
        "concurrency": concurrency,
        "rounds": rounds,
        "base": {k: v for k, v in (base or {}).items() if k not in names},
        "cpu_count": cpus,
    }


def _measure(
    host: str,
    port: int,
    specs: Sequence[RequestSpec],
    *,
    concurrency: int,
    duration: float,
    warmup: float,
    timeout: float,
) -> LoadResult:
    # uvloop when installed: the client shares the machine, the less CPU it takes the better
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(
            run_load(
                host,
                port,
                specs,
                concurrency=concurrency,
                duration=duration,
                warmup=warmup,
                timeout=timeout,
            )
        )


def table(result: SweepResult) -> tuple[list[str], list[list[str]]]:
    """The terminal table: header and rows (setting, req/s, p50, p99, errors, [rounds], pick)."""
    rounds = result.get("rounds", 1) > 1
    header = ["setting", "req/s", "p50 ms", "p99 ms", "errors"]
    header += ["req/s per round"] if rounds else []
    rows = []
    for index, p in enumerate(result["results"]):
        row = [
            label(p["setting"]),
            f"{p['rps']:.0f}",
            f"{p['p50_ms']:.1f}",
            f"{p['p99_ms']:.1f}",
            str(p["errors"]),
        ]
        if rounds:
            row.append(" ".join(f"{run['rps']:.0f}" for run in p.get("runs", [])))
        rows.append([*row, "<- pick" if index == result["recommended"] else ""])
    return [*header, ""], rows
