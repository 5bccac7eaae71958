"""Executors: how a planned job runs (subprocesses, a submit handler, or
Python calls), and `dry_run`, which shows what would run."""

from __future__ import annotations

import shlex
import sys
from typing import TextIO

from hydraflow.executors.progress import Tally, make_reporter
from hydraflow.plan import JobPlan


def execute(plan: JobPlan, *, jobs: int = 1, keep_going: bool = False) -> int:
    """Runs the job; returns the exit status for the CLI."""
    from hydraflow.executors.processes import Outcome

    outcome: Outcome
    if plan.job.kind == "submit":
        from hydraflow.executors.submit import run_submit

        outcome, tally = run_submit(plan)
    else:
        tally = Tally(plan.total_commands, plan.total_runs)
        reporter = make_reporter(tally, parallel=jobs > 1)
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


def report(plan: JobPlan, outcome: object, tally: Tally) -> None:
    from hydraflow.executors.processes import Outcome

    assert isinstance(outcome, Outcome)
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


def dry_run(plan: JobPlan, out: TextIO) -> None:
    """Prints what would run, touching nothing; a summary goes to stderr."""
    kind = plan.job.kind
    if kind == "submit":
        from hydraflow.executors.submit import handler_argv, params_lines, params_path

        out.write(shlex.join(handler_argv(plan, params_path())) + "\n")
        out.writelines(line + "\n" for line in params_lines(plan))
    elif kind == "call":
        from hydraflow.executors.call import function_name

        name = function_name(plan)
        out.writelines(f"{name}({command.argv!r})\n" for command in plan.commands())
    else:
        out.writelines(shlex.join(command.argv) + "\n" for command in plan.commands())
    out.flush()
    sys.stderr.write(
        f"hydraflow: {plan.job.name}: {plan.total_commands} commands, "
        f"{plan.total_runs} runs (dry run: nothing was run)\n"
    )
