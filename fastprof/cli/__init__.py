"""The ``fastprof`` command line.

Subcommands live one per module in this package and are listed in :data:`COMMANDS` as
``"module:attr"`` strings, imported only when that command runs (or ``--help`` lists them).

Exit status: 0 success, 1 the command failed (e.g. the output could not be written), 2 usage
error or bad input (a missing file, a file that is not a fastprof profile).
"""

from __future__ import annotations

import importlib
from typing import Any

import click

__all__ = ["COMMANDS", "EXIT_FAILURE", "EXIT_USAGE", "CommandError", "main"]

EXIT_FAILURE = 1
EXIT_USAGE = 2

COMMANDS: dict[str, str] = {
    "view": "fastprof.cli.view:view",
    "scan": "fastprof.cli.scan:scan",
    "diff": "fastprof.cli.diff:diff",
    "report": "fastprof.cli.report:report",
}


class CommandError(Exception):
    """A command failed in a way the user can act on.

    Raise it from any subcommand; the group turns it into one ``error: ...`` line on stderr and
    exit status ``exit_code``, in one place (:meth:`_LazyGroup.invoke`).
    """

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        self.message = " ".join(message.split())  # one line, whatever the cause text holds
        self.exit_code = exit_code
        super().__init__(self.message)


class _LazyGroup(click.Group):
    """A group whose commands come from :data:`COMMANDS`, imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *super().list_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module_name), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CommandError as exc:
            click.echo(f"error: {exc.message}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fastprof-asgi", prog_name="fastprof")
def main() -> None:
    """fastprof: profiling and diagnostics for FastAPI and other ASGI apps.

    Exit status: 0 success, 1 the command failed, 2 usage error or bad input.
    """
