"""What the click commands share: how a user mistake is shown, and how the
arguments after `--` are set aside for the program."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from hydraflow.errors import HydraflowError


def fail(error: HydraflowError) -> NoReturn:
    """Shows a user mistake as `Error: ...` (no traceback) and exits with its status."""
    click.echo(f"Error: {error}", err=True)
    sys.exit(error.exit_code)


class SplitAtDashes(click.Command):
    """Sets aside everything after `--` (`after_dashes`): it goes to the
    program verbatim, never parsed as this command's options."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            cut = args.index("--")
            ctx.meta["after_dashes"] = args[cut + 1 :]
            args = args[:cut]
        return super().parse_args(ctx, args)


def after_dashes(ctx: click.Context) -> list[str]:
    return list(ctx.meta.get("after_dashes", []))
