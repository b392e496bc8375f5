"""``fastprof view``: render a stored profile or call tree."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import orjson

from fastprof.cli import EXIT_FAILURE, EXIT_USAGE, CommandError
from fastprof.model import SCHEMA as TREE_SCHEMA
from fastprof.model import CallTree
from fastprof.record import RECORD_SCHEMA, ProfileRecord
from fastprof.renderers import RENDERERS, render
from fastprof.renderers.text import ms


@dataclass(frozen=True, slots=True)
class Loaded:
    """What ``view`` renders: a tree and the line that describes where it came from."""

    tree: CallTree
    title: str


def describe(record: ProfileRecord) -> str:
    """``GET /users/{user_id} (/users/42) → 200 in 12.30 ms, trigger: slow``."""
    if record.method:
        what = f"{record.method} {record.route or record.path}"
        if record.path and record.route and record.path != record.route:
            what += f" ({record.path})"
        what += f" → {record.status}"
    else:
        what = record.label or "profile"
    text = f"{what} in {ms(record.duration)}, trigger: {record.trigger}"
    if record.error:
        text += f", error: {record.error}"
    return text


def load(path: Path) -> Loaded:
    """Read ``path`` as a stored profile or a bare call tree; CommandError(exit 2) if it is not."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CommandError(f"{path}: no such file", EXIT_USAGE) from None
    except IsADirectoryError:
        raise CommandError(f"{path}: is a directory, not a profile file", EXIT_USAGE) from None
    except OSError as exc:
        raise CommandError(f"{path}: cannot read: {exc.strerror or exc}", EXIT_USAGE) from None
    try:
        data: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CommandError(f"{path}: not JSON ({exc})", EXIT_USAGE) from None
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema not in (RECORD_SCHEMA, TREE_SCHEMA):
        found = repr(schema) if isinstance(data, dict) else f"a JSON {type(data).__name__}"
        raise CommandError(
            f"{path}: not a fastprof profile or call tree (schema is {found}, "
            f"expected {RECORD_SCHEMA!r} or {TREE_SCHEMA!r})",
            EXIT_USAGE,
        )
    try:
        if schema == RECORD_SCHEMA:
            record = ProfileRecord.from_dict(data)
            return Loaded(record.tree, describe(record))
        return Loaded(CallTree.from_dict(data), "")
    except KeyError as exc:
        raise CommandError(f"{path}: malformed {schema} file (missing {exc})", EXIT_USAGE) from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise CommandError(f"{path}: malformed {schema} file ({exc})", EXIT_USAGE) from None
    except RecursionError:
        raise CommandError(f"{path}: call tree too deep to load", EXIT_USAGE) from None


@click.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(list(RENDERERS)),
    default="text",
    show_default=True,
    help="Output format.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False, writable=True),
    help="Write to this file instead of stdout.",
)
@click.option(
    "--min-percent",
    type=click.FloatRange(min=0),
    default=0.5,
    show_default=True,
    help="text: hide frames under this share of the total.",
)
@click.option(
    "--max-depth", type=click.IntRange(min=1), help="text: show at most this many levels."
)
@click.option(
    "--color/--no-color",
    default=None,
    help="text: ANSI colours (default: when writing to a terminal).",
)
def view(
    file: Path,
    fmt: str,
    output: Path | None,
    min_percent: float,
    max_depth: int | None,
    color: bool | None,
) -> None:
    """Render FILE, a stored profile or call tree: text, speedscope, collapsed, HTML or SVG.

    FILE is a profile fastprof stored (schema fastprof.profile/1) or a bare call tree (schema
    fastprof.tree/1). Without -o the result goes to stdout.

    Exit status: 0 success, 1 the output could not be written, 2 usage error or bad input.
    """
    loaded = load(file)
    options: dict[str, Any] = {}
    if fmt == "text":
        if color is None:
            color = output is None and sys.stdout.isatty()
        options = {"min_percent": min_percent, "max_depth": max_depth, "color": color}
    rendered = render(loaded.tree, fmt, title=loaded.title, **options)
    if output is None:
        # color=True: the renderer already decided about ANSI codes; echo must not strip them.
        click.echo(rendered, nl=False, color=True)
        return
    try:
        output.write_text(rendered, encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"{output}: cannot write: {exc.strerror or exc}", EXIT_FAILURE) from None
    click.echo(f"wrote {fmt} to {output}", err=True)
