"""The executors' interface: what options a job kind accepts, how it
plans, runs and dry-runs a job, and how its run is reported."""

from __future__ import annotations

import functools
import itertools
import os
import shlex
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, TextIO

from hydraflow.errors import HydraflowError
from hydraflow.protocol import RERUN_ENV, set_stopping
from hydraflow.runner.executors.event_log import EventLog, event_log
from hydraflow.runner.executors.progress import Execution, PlainReporter, make_reporter
from hydraflow.runner.jobs import Job
from hydraflow.runner.plan import Command, CommandLine, JobPlan, command_words, plan_job
from hydraflow.signals import handled, raise_interrupted, signal_of
from hydraflow.tables import counted


@dataclass(frozen=True)
class RunOptions:
    """How the user asked the job to run."""

    jobs: int = 1
    keep_going: bool = False
    # Run every config again, as new runs: no command is skipped as proven finished.
    rerun: bool = False
    # Start every command as a fresh process, never from the warm interpreter.
    cold: bool = False
    # Say how commands start (warm, or cold and why).
    verbose: bool = False


class Executor:
    """One kind of job. Subclasses say what they accept and how they run."""

    kind: ClassVar[str]
    accepts_jobs: ClassVar[bool] = False
    accepts_keep_going: ClassVar[bool] = True
    # Whether commands may start from the warm interpreter (so --cold means something).
    accepts_cold: ClassVar[bool] = False
    # What to ask when commands end well and report no run (the runs are not reported).
    no_run_hint: ClassVar[str] = (
        "is the app decorated with @hydraflow.main, and does its script call it "
        '(if __name__ == "__main__": app())?'
    )

    def check_options(self, job: Job, options: RunOptions) -> None:
        """RunOptions that cannot apply to this kind of job are refused, not ignored."""
        if options.jobs > 1 and not self.accepts_jobs:
            raise HydraflowError(f"-j/--jobs does not apply to {self.kind} jobs ('{job.name}')")
        if options.cold and not self.accepts_cold:
            raise HydraflowError(f"--cold does not apply to {self.kind} jobs ('{job.name}')")
        if options.keep_going and not self.accepts_keep_going:
            message = f"--keep-going does not apply to {self.kind} jobs ('{job.name}')"
            raise HydraflowError(message)

    def program(self, job: Job) -> list[str]:
        """What comes before each command's parameters."""
        return command_words(job)

    def plan(self, job: Job, command_line: CommandLine | None = None) -> JobPlan:
        return plan_job(job, command_line or CommandLine(), program=self.program(job))

    def preflight(self, plan: JobPlan) -> None:
        """Checks made before anything starts; raises HydraflowError."""

    def dry_lines(self, plan: JobPlan) -> Iterator[str]:
        """What `--dry-run` prints, one line each, passwords masked."""
        return plan.shell_lines(masking=True)

    def command_text(self, plan: JobPlan, command: Command) -> str:
        """A command as a failure names it (unmasked), as `--dry-run` shows it."""
        return shlex.join(command.argv)

    def events_directory(self) -> Path | None:
        """Where the events files go (None: the system's temporary directory)."""
        return None

    def total_commands(self, plan: JobPlan) -> int:
        return plan.total_commands

    def run(
        self, plan: JobPlan, reporter: PlainReporter, events: EventLog, options: RunOptions
    ) -> None:
        raise NotImplementedError

    def execute(self, plan: JobPlan, options: RunOptions) -> Execution:
        """Checks, runs and reports the job; returns its one record."""
        self.preflight(plan)
        execution = Execution(plan.job.name, self.total_commands(plan), plan.total_runs)
        execution.no_run_hint = self.no_run_hint
        execution.command_text = functools.partial(self.command_text, plan)
        try:
            with handled(raise_interrupted):
                self.run_reported(plan, execution, options)
        except KeyboardInterrupt as interrupt:
            # A signal between the executor's own handling (setting up, tearing down).
            execution.interrupt(signal_of(interrupt))
        execution.close()
        report(execution)
        return execution

    def run_reported(self, plan: JobPlan, execution: Execution, options: RunOptions) -> None:
        reporter = make_reporter(execution, parallel=options.jobs > 1)
        if options.rerun:
            os.environ[RERUN_ENV] = "1"  # every kind of job passes it on to its apps
        set_stopping(plan.job.stopping)  # the job's own, not the last job's
        try:
            with self.events(reporter) as events:
                execution.runs = events.counts
                self.run(plan, reporter, events, options)
        finally:
            execution.close()
            reporter.close()

    def events(self, reporter: PlainReporter) -> AbstractContextManager[EventLog]:
        return event_log(reporter.refresh, where=self.events_directory())

    def dry_run(self, plan: JobPlan, out: TextIO) -> None:
        """Prints what would run, touching nothing; a summary goes to stderr."""
        write_lines(out, self.dry_lines(plan))
        out.flush()
        commands = counted(plan.total_commands, "command")
        runs = plan.runs_described()
        sys.stderr.write(
            f"hydraflow: {plan.job.name}: {commands}, {runs} (dry run: nothing was run)\n"
        )


def report(execution: Execution) -> None:
    err = sys.stderr
    for line in execution.closing_report():
        err.write(f"hydraflow: {line}\n")
    err.write(f"hydraflow: {execution.summary()}\n")
    err.flush()


def write_lines(out: TextIO, lines: Iterator[str]) -> None:
    """Writes in chunks: a million lines one write call each would be slow."""
    while chunk := list(itertools.islice(lines, 8192)):
        out.write("\n".join(chunk) + "\n")
