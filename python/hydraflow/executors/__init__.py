"""Executors: how a planned job runs (subprocesses, a submit handler, or
Python calls), and `dry_run`, which shows what would run."""

from __future__ import annotations

import itertools
import shlex
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, TextIO

from hydraflow.executors.progress import Tally, make_reporter
from hydraflow.plan import JobPlan

if TYPE_CHECKING:
    from hydraflow.executors.processes import Outcome


def execute(plan: JobPlan, *, jobs: int = 1, keep_going: bool = False) -> int:
    """Runs the job; returns the exit status for the CLI."""
    outcome: Outcome
    if plan.job.kind == "submit":
        from hydraflow.executors.submit import run_submit

        outcome, tally = run_submit(plan)
    else:
        tally = Tally(plan.total_commands, plan.total_runs)
        reporter = make_reporter(tally, parallel=jobs > 1, label=plan.job.name)
        try:
            if plan.job.kind == "call":
                from hydraflow.executors.call import run_calls

                outcome = run_calls(plan, reporter, keep_going=keep_going)
            else:
                from hydraflow.executors.processes import run_commands

                commands = plan.commands()
                outcome = run_commands(commands, reporter, jobs=jobs, keep_going=keep_going)
        finally:
            reporter.close()
    report(plan, outcome, tally)
    return outcome.status


def report(plan: JobPlan, outcome: Outcome, tally: Tally) -> None:
    err = sys.stderr
    failure = outcome.first_failure
    if outcome.interrupted:
        err.write(f"hydraflow: interrupted; {tally.not_started} commands not started\n")
    elif failure is not None:
        err.write(
            f"hydraflow: command {failure.index} failed with status {outcome.status}: "
            f"{shlex.join(failure.argv)}\n"
        )
    if plan.job.kind != "submit":
        err.write(f"hydraflow: {tally.summary(plan.job.name)}\n")
    err.flush()


def write_lines(out: TextIO, lines: Iterator[str]) -> None:
    """Writes in chunks: a million lines one write call each would be slow."""
    while chunk := list(itertools.islice(lines, 8192)):
        out.write("\n".join(chunk) + "\n")


def dry_run(plan: JobPlan, out: TextIO) -> None:
    """Prints what would run, touching nothing; a summary goes to stderr."""
    kind = plan.job.kind
    if kind == "submit":
        from hydraflow.executors.submit import handler_argv, params_path

        out.write(shlex.join(handler_argv(plan, params_path())) + "\n")
        write_lines(out, plan.shell_lines(with_head=False))
    elif kind == "call":
        from hydraflow.executors.call import function_name

        name = function_name(plan)
        out.writelines(f"{name}({command.argv!r})\n" for command in plan.commands())
    else:
        write_lines(out, plan.shell_lines())
    out.flush()
    sys.stderr.write(
        f"hydraflow: {plan.job.name}: {plan.total_commands} commands, "
        f"{plan.total_runs} runs (dry run: nothing was run)\n"
    )
