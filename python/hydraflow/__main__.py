"""The `hydraflow` command's entry point. It sets the signal handler before
importing the CLI, so a Ctrl-C at any moment, even while Python imports
click, ends with one line, never a traceback."""

from __future__ import annotations


def main() -> None:
    from hydraflow.signals import exit_on_interrupt_from_now_on

    exit_on_interrupt_from_now_on("hydraflow")
    from hydraflow.cli import cli

    cli(prog_name="hydraflow")


if __name__ == "__main__":
    main()
