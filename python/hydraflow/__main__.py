"""The `hydraflow` command's entry point. It sets the signal handler before
importing the CLI, so a Ctrl-C at any moment, even while Python imports
click, ends with one line, never a traceback."""

from __future__ import annotations


def main() -> None:
    import signal

    from hydraflow.signals import STOPPING, exit_on_interrupt

    for signum in STOPPING:
        signal.signal(signum, exit_on_interrupt("hydraflow"))
    from hydraflow.cli import cli

    cli(prog_name="hydraflow")


if __name__ == "__main__":
    main()
