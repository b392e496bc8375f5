"""``fastprof scan``: load every route of an app and report what fastprof finds."""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson

from fastprof.cli import CommandError
from fastprof.findings import SEVERITIES, SEVERITY_RANK


@click.command()
@click.argument("app", required=False)
@click.option("--factory", is_flag=True, help="APP is a factory: call it to get the app.")
@click.option(
    "--url",
    metavar="URL",
    help="Scan an app already running on this machine (only what HTTP shows is measured).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 32),
    default=1,
    show_default=True,
    help="Worker processes to run the app in; their profiles are merged.",
)
@click.option(
    "--port", type=click.IntRange(1, 65535), help="Port for the app (default: a free one)."
)
@click.option(
    "--duration",
    type=click.FloatRange(0.1),
    default=1.0,
    show_default=True,
    help="Seconds of load per route (after warm-up).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1000),
    default=8,
    show_default=True,
    help="Keep-alive connections sending requests.",
)
@click.option(
    "--rate", type=click.FloatRange(0.1), help="Fixed requests/s instead of closed-loop load."
)
@click.option(
    "--warmup",
    type=click.FloatRange(0),
    default=0.25,
    show_default=True,
    help="Seconds of unmeasured warm-up per route.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1),
    default=5.0,
    show_default=True,
    help="Seconds before a request counts as timed out.",
)
@click.option(
    "--scenario",
    "scenarios",
    multiple=True,
    metavar="FILE",
    help="A scenario TOML file (repeatable): requests with parameters, bodies, weights.",
)
@click.option(
    "--replay", metavar="FILE", help="Replay recorded traffic (JSONL from the middleware, or HAR)."
)
@click.option(
    "--pace",
    type=click.Choice(["fast", "original"]),
    default="fast",
    show_default=True,
    help="Replay as fast as possible or at the recorded pace.",
)
@click.option(
    "--out", default="fastprof-report", show_default=True, help="Directory for the report."
)
@click.option(
    "--fail-on",
    type=click.Choice(list(SEVERITIES)),
    help="Exit 1 when a finding at or above this severity exists.",
)
@click.option(
    "--budget", metavar="FILE", help="Exit 1 when a route exceeds a limit in this TOML file."
)
@click.option(
    "--detector",
    "detectors",
    multiple=True,
    metavar="NAME",
    help=(
        "Run only this detector (repeatable; default: all but cache_opportunity, "
        "which needs --replay traffic)."
    ),
)
@click.option(
    "--threads",
    type=click.IntRange(1, 1000),
    help="Threadpool size for def endpoints and sync dependencies (AnyIO's default: 40).",
)
@click.option(
    "--route",
    "routes",
    multiple=True,
    metavar="KEY",
    help='Load only this route, e.g. "GET /users" (repeatable; default: every route found).',
)
@click.option(
    "--sweep",
    "sweeps",
    multiple=True,
    metavar="NAME=V1,V2",
    help="Measure the app once per server setting: workers=1,2,4, threads=1,40, "
    "keepalive=on,off (repeatable: a grid of every combination).",
)
@click.option(
    "--sweep-duration",
    type=click.FloatRange(0.1),
    default=1.5,
    show_default=True,
    help="Seconds of measured load per sweep setting and round (after 0.5 s of warm-up).",
)
@click.option(
    "--sweep-rounds",
    type=click.IntRange(1, 10),
    default=3,
    show_default=True,
    help="Measure every sweep setting this many times (interleaved) and report the medians.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result JSON to stdout.")
@click.option(
    "--openapi-url",
    default="/openapi.json",
    show_default=True,
    help="Where the app publishes its OpenAPI schema.",
)
def scan(app: str | None, **options: Any) -> None:
    """Start APP (MODULE:ATTR) under uvicorn, load every route, and report findings.

    Routes come from the app's OpenAPI schema and from --scenario files; routes that need
    parameters, bodies or auth and have no scenario are listed as skipped. Writes
    findings.json, index.html and per-route flame graphs (speedscope, collapsed, SVG) to --out.

    With --sweep, the app is then restarted once per setting, unprofiled, and the same mix of
    routes is measured for each; the table, the recommendation and a chart go to the terminal,
    findings.json ("sweep") and the report. With --url, the server's keep-alive, HTTP version
    and compression are checked first ("server" and server_config findings).

    Exit status: 0 done; 1 --fail-on or --budget tripped; 2 bad option or input file;
    3 the app could not be loaded; 4 the app crashed or never answered at startup;
    5 the port is in use; 130 interrupted.
    """
    try:
        from fastprof.scan.budget import BudgetError, check_budget, load_budget
        from fastprof.scan.runner import EXIT_USAGE, ScanError, ScanSettings, run_scan
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise CommandError(
            f"fastprof scan needs uvicorn: pip install 'fastprof-asgi[scan]' ({exc})", 2
        ) from None

    if bool(app) == bool(options["url"]):
        raise CommandError("give either APP (module:attr) or --url URL, not both or neither", 2)
    budget = None
    if options["budget"]:
        try:
            budget = load_budget(options["budget"])
        except BudgetError as exc:
            raise CommandError(str(exc), EXIT_USAGE) from None
    settings = ScanSettings(
        app=app,
        url=options["url"],
        factory=options["factory"],
        workers=options["workers"],
        port=options["port"],
        duration=options["duration"],
        concurrency=options["concurrency"],
        rate=options["rate"],
        warmup=options["warmup"],
        timeout=options["timeout"],
        scenarios=list(options["scenarios"]),
        replay=options["replay"],
        replay_pace=options["pace"],
        out=options["out"],
        openapi_url=options["openapi_url"],
        detect=list(options["detectors"]) or None,
        threads=options["threads"],
        routes=list(options["routes"]),
        sweep=list(options["sweeps"]),
        sweep_duration=options["sweep_duration"],
        sweep_rounds=options["sweep_rounds"],
    )
    progress = _Progress(quiet=options["as_json"])
    try:
        with progress:
            result = run_scan(settings, progress.update)
    except ScanError as exc:
        for line in exc.details:
            click.echo(f"  | {line}", err=True)
        raise CommandError(exc.message, exc.exit_code) from None
    except KeyboardInterrupt:
        raise CommandError("interrupted; the app was stopped", 130) from None

    if options["as_json"]:
        click.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    else:
        _summary(result, settings.out)

    failures = []
    if options["fail_on"]:
        bar = SEVERITY_RANK[options["fail_on"]]
        hits = [f for f in result["findings"] if SEVERITY_RANK[f["severity"]] >= bar]
        if hits:
            failures.append(f"{len(hits)} finding(s) at or above {options['fail_on']}")
    if budget is not None:
        failures.extend(check_budget(result, budget))
    if failures:
        for line in failures:
            click.echo(f"fail: {line}", err=True)
        sys.exit(1)


class _Progress:
    """A rich progress bar on stderr (nothing when quiet or when rich is missing)."""

    def __init__(self, quiet: bool) -> None:
        self.bar: Any = None
        self.task: Any = None
        if quiet:
            return
        try:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
        except ImportError:  # pragma: no cover
            return
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )

    def __enter__(self) -> _Progress:
        if self.bar is not None:
            self.bar.__enter__()
            self.task = self.bar.add_task("starting", total=1)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def update(self, what: str, done: int, total: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=what[:60], completed=done, total=max(total, 1))


def _summary(result: Any, out: str) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover
        for route in result["routes"]:
            click.echo(
                f"{route['route']}: {route['rps']} req/s p99 {route['latency_ms']['p99']} ms"
            )
        if result.get("sweep"):
            from fastprof.scan.sweep import table as sweep_rows

            for row in sweep_rows(result["sweep"])[1]:
                click.echo("  ".join(row).rstrip())
            click.echo(result["sweep"]["recommendation"])
        return
    console = Console()
    table = Table(title=f"fastprof scan: {result['target']}")
    for name in (
        "route",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "queries/req",
        "blocked ms",
        "findings",
    ):
        table.add_column(name, justify="left" if name == "route" else "right")
    per_route: dict[str, list[str]] = {}
    for finding in result["findings"]:
        per_route.setdefault(finding["route"] or "", []).append(finding["kind"])
    for route in result["routes"]:
        kinds = per_route.get(route["route"], [])
        table.add_row(
            route["route"],
            f"{route['rps']:.0f}",
            f"{route['latency_ms']['p50']:.1f}",
            f"{route['latency_ms']['p99']:.1f}",
            str(route["errors"]),
            f"{route['queries_per_request']:.1f}",
            f"{route['blocked_ms']:.1f}",
            ", ".join(sorted(set(kinds))),
        )
    console.print(table)
    app_level = per_route.get("", [])
    if app_level:
        console.print(f"app-level findings: {', '.join(sorted(set(app_level)))}")
    counts = {s: sum(f["severity"] == s for f in result["findings"]) for s in SEVERITIES}
    console.print(
        f"{len(result['findings'])} findings (high {counts['high']}, medium {counts['medium']}, "
        f"low {counts['low']}); {len(result['skipped'])} routes skipped. "
        f"Report: {out}/index.html"
    )
    if result.get("sweep"):
        _sweep_summary(console, result["sweep"])


def _sweep_summary(console: Any, sweep: Any) -> None:
    from rich.table import Table

    from fastprof.scan.sweep import table as sweep_rows

    table = Table(
        title=f"sweep: {sweep['parameter']} ({len(sweep['routes'])} routes mixed, "
        f"{sweep['duration']:g} s x {sweep.get('rounds', 1)} round(s) each, "
        f"{sweep['concurrency']} connections)"
    )
    header, rows = sweep_rows(sweep)
    for name in header:
        table.add_column(name, justify="left" if name in ("setting", "") else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(sweep["recommendation"], markup=False)
    for line in sweep["notes"]:
        console.print(f"- {line}", markup=False)
