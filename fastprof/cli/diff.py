"""``fastprof diff A B``: two scan results side by side."""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson

from fastprof.cli import EXIT_USAGE, CommandError


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
def diff(a: str, b: str, as_json: bool, fail_on_regression: float | None) -> None:
    """Compare two scans (a findings.json or the directory holding one): A is the baseline.

    Per route: req/s and latency with the change in percent, queries per request and
    event-loop blocked time; findings fixed, new and still open.

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
