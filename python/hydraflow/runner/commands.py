"""What the click commands share: how a user mistake is shown, and how the
arguments after `--` are set aside for the program."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import NoReturn

import click

from hydraflow.errors import HydraflowError, closest


def fail(error: HydraflowError) -> NoReturn:
    """Shows a user mistake as `Error: ...` (no traceback, no password a URI
    in it held) and exits with its status."""
    from hydraflow.remote import masked

    click.echo(f"Error: {masked(str(error))}", err=True)
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


# The options of a Hydra app's own parser (Hydra 1.3's `get_args_parser`),
# which `hydraflow run` hands to the program as they are (`--cfg job`).
HYDRA_APP_OPTIONS = frozenset(
    {
        *("--help", "-h", "--hydra-help", "--version", "--cfg", "-c", "--resolve"),
        *("--package", "-p", "--run", "-r", "--multirun", "-m", "--shell-completion", "-sc"),
        *("--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd"),
        *("--experimental-rerun", "--info", "-i"),
    }
)


def refuse_unknown_options(ctx: click.Context, args: Iterable[str]) -> None:
    """An option before `--` that is neither this command's nor the Hydra
    app's (`--tracking-uri` after the job name, `--dryrun`) would make every
    command fail in Hydra's parser: refused at once, with where it belongs."""
    for arg in args:
        name = arg.split("=", 1)[0]
        if is_option(name) and name not in HYDRA_APP_OPTIONS:
            raise HydraflowError(unknown_option_message(ctx, name))


def is_option(name: str) -> bool:
    """`--name` or `-x`; not `-1` (a negative number) nor `-`."""
    if name.startswith("--"):
        return len(name) > 2
    return name[:1] == "-" and name[1:2].isalpha()


def unknown_option_message(ctx: click.Context, name: str) -> str:
    command = ctx.command_path
    own = [opt for param in ctx.command.params for opt in param.opts if opt.startswith("--")]
    meant = closest(name, own)
    if meant is not None:
        hint = f"did you mean {meant}?"
    elif name == "--tracking-uri":
        hint = "the apps' store is set by MLFLOW_TRACKING_URI=URI before the command"
    else:
        hint = f"an option for the program goes after '--': {command} JOB -- {name} ..."
    return f"{command}: no such option {name} (neither hydraflow's nor Hydra's); {hint}"


def warn_own_options_after_dashes(ctx: click.Context) -> None:
    """`hydraflow run JOB -- a=1 --dry-run` runs for real (`--dry-run` is the
    program's there): said once, so nobody takes a real run for a dry one."""
    own = {opt for param in ctx.command.params for opt in param.opts if opt.startswith("-")}
    for arg in after_dashes(ctx):
        name = arg.split("=", 1)[0]
        if name in own:
            click.echo(
                f"hydraflow: warning: {name} comes after '--', so it goes to the program, "
                "not to hydraflow",
                err=True,
            )
