"""``fastprof report``: render a scan's HTML report again from the files it wrote."""

from __future__ import annotations

import os

import click

from fastprof.cli import EXIT_FAILURE, EXIT_USAGE, CommandError


@click.command()
@click.argument("result_dir", metavar="RESULT_DIR", type=click.Path(path_type=str))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=str),
    help="Write the page here instead of RESULT_DIR/index.html.",
)
def report(result_dir: str, output: str | None) -> None:
    """Re-render RESULT_DIR/index.html from findings.json and routes/*.tree.json.

    RESULT_DIR is what `fastprof scan --out` wrote (or its findings.json). Source lines around
    each finding are read again from disk, so the page shows the code as it is now. Each
    route's static flame graph (routes/<route>.svg) is written again too.

    Exit status: 0 done; 1 a file could not be written; 2 RESULT_DIR is not a scan result.
    """
    from fastprof.renderers import render
    from fastprof.scan.diff import result_dir as directory_of
    from fastprof.scan.report import load_trees, render_html, slug
    from fastprof.scan.results import load_result

    try:
        result = load_result(result_dir)
    except FileNotFoundError as exc:
        raise CommandError(f"{exc.filename}: no such file", EXIT_USAGE) from None
    except (ValueError, OSError) as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    base = directory_of(result_dir)
    trees = load_trees(base, result)
    try:
        for route in result["routes"]:
            tree = trees.get(route["route"])
            if tree is None:
                continue
            files = route.setdefault("files", {})
            tree_file = files.get("tree", "")
            name = (
                tree_file[: -len(".tree.json")]
                if tree_file.endswith(".tree.json")
                else os.path.join("routes", slug(route["route"]))
            )
            files["svg"] = name + ".svg"
            with open(os.path.join(base, files["svg"]), "w", encoding="utf-8") as f:
                f.write(render(tree, "svg", title=route["route"]))
        target = output or os.path.join(base, "index.html")
        with open(target, "w", encoding="utf-8") as f:
            f.write(render_html(result, trees))
    except OSError as exc:
        raise CommandError(
            f"{exc.filename}: cannot write: {exc.strerror or exc}", EXIT_FAILURE
        ) from None
    missing = len(result["routes"]) - len(trees)
    note = f" ({missing} routes have no call tree file)" if missing else ""
    click.echo(f"wrote {target}{note}", err=True)
