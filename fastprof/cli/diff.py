"""``fastprof diff A B``: two scan results side by side."""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson

from fastprof.cli import EXIT_FAILURE, EXIT_USAGE, CommandError


@click.command()
@click.argument("a", metavar="A")
@click.argument("b", metavar="B")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.option(
    "--fail-on-regression",
    type=click.FloatRange(0),
    metavar="PCT",
    help="Exit 1 when a route's req/s fell, or p50/p99 rose, by more than PCT percent.",
)
@click.option(
    "--html",
    "html_out",
    type=click.Path(dir_okay=False, writable=True),
    metavar="OUT",
    help="Also write the comparison as a self-contained HTML page, with a differential flame "
    "graph per route (needs each result's routes/*.tree.json).",
)
def diff(
    a: str, b: str, as_json: bool, fail_on_regression: float | None, html_out: str | None
) -> None:
    """Compare two scans (a findings.json or the directory holding one): A is the baseline.

    Per route: req/s and latency with the change in percent, queries per request and
    event-loop blocked time; findings fixed, new and still open. With --html, a page that
    shows the same and, per route, a flame graph coloured by the time B gained or lost.

    Exit status: 0 done; 1 a regression past --fail-on-regression; 2 a file is missing or
    not a scan result.
    """
    from fastprof.scan.diff import diff_results, regressions
    from fastprof.scan.results import load_result

    try:
        result_a, result_b = load_result(a), load_result(b)
    except FileNotFoundError as exc:
        raise CommandError(f"{exc.filename}: no such file", EXIT_USAGE) from None
    except (ValueError, OSError) as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    compared = diff_results(result_a, result_b, a, b)
    if html_out is not None:
        _write_html(html_out, compared, a, b, result_a, result_b, fail_on_regression)
    if as_json:
        click.echo(orjson.dumps(compared, option=orjson.OPT_INDENT_2).decode())
    else:
        _print(compared)
    if fail_on_regression is not None:
        found = regressions(compared, fail_on_regression)
        for line in found:
            click.echo(f"regression: {line}", err=True)
        if found:
            sys.exit(1)


def _write_html(
    out: str,
    compared: Any,
    a: str,
    b: str,
    result_a: Any,
    result_b: Any,
    threshold: float | None,
) -> None:
    from fastprof.report.diff import diff_payload, render_diff
    from fastprof.scan.diff import load_result_trees

    payload = diff_payload(
        compared,
        result_a,
        result_b,
        load_result_trees(a, result_a),
        load_result_trees(b, result_b),
        threshold_pct=threshold if threshold is not None else 5.0,
    )
    try:
        with open(out, "w", encoding="utf-8") as f:
            f.write(render_diff(payload))
    except OSError as exc:
        raise CommandError(f"{out}: cannot write: {exc.strerror or exc}", EXIT_FAILURE) from None
    click.echo(f"wrote the diff page to {out}", err=True)


def _fmt(value: float | None, change: float | None) -> str:
    if value is None:
        return "-"
    if change is None:
        return f"{value:g}"
    sign = "+" if change > 0 else ""
    return f"{value:g} ({sign}{change:g}%)"


def _print(compared: Any) -> None:
    lines = [f"A = {compared['a']}", f"B = {compared['b']}", ""]
    header = (
        f"{'route':40} {'req/s A':>9} {'req/s B':>18} {'p99 A':>9} {'p99 B':>18} "
        f"{'queries B':>14} {'blocked B':>14}"
    )
    lines.append(header)
    for route in compared["routes"]:
        a, b, change = route["a"] or {}, route["b"] or {}, route["change_pct"]
        lines.append(
            f"{route['route'][:40]:40} {_fmt(a.get('rps'), None):>9} "
            f"{_fmt(b.get('rps'), change['rps']):>18} {_fmt(a.get('p99'), None):>9} "
            f"{_fmt(b.get('p99'), change['p99']):>18} "
            f"{_fmt(b.get('queries_per_request'), change['queries_per_request']):>14} "
            f"{_fmt(b.get('blocked_ms'), change['blocked_ms']):>14}"
        )
    for title, key in (("fixed", "fixed"), ("new", "new"), ("still open", "still_open")):
        items = compared[key]
        lines.append("")
        lines.append(f"findings {title}: {len(items)}")
        for finding in items:
            where = finding["route"] or "app"
            lines.append(f"  [{finding['severity']}] {finding['kind']} {where}: {finding['title']}")
    click.echo("\n".join(lines))
