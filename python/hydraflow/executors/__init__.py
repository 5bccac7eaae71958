"""Executors: one per job kind (`run`, `call`, `submit`), behind one
interface — what options it accepts, how it plans, runs and dry-runs a job.
The CLI asks the executor; nothing else branches on the kind."""

from __future__ import annotations

import itertools
import shlex
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, TextIO

from hydraflow.errors import HydraflowError
from hydraflow.executors.events import EventLog, event_log
from hydraflow.executors.progress import Execution, PlainReporter, make_reporter
from hydraflow.jobs import Job
from hydraflow.plan import CommandLine, JobPlan, command_words, plan_job
from hydraflow.signals import handled, raise_interrupted, signal_of


@dataclass(frozen=True)
class Options:
    """How the user asked the job to run."""

    jobs: int = 1
    keep_going: bool = False


class Executor:
    """One kind of job. Subclasses say what they accept and how they run."""

    kind: ClassVar[str]
    accepts_jobs: ClassVar[bool] = False
    accepts_keep_going: ClassVar[bool] = True

    def check_options(self, job: Job, options: Options) -> None:
        """Options that cannot apply to this kind of job are refused, not ignored."""
        if options.jobs > 1 and not self.accepts_jobs:
            raise HydraflowError(f"-j/--jobs does not apply to {self.kind} jobs ('{job.name}')")
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
        """What `--dry-run` prints, one line each."""
        return plan.shell_lines()

    def events_directory(self) -> Path | None:
        """Where the events files go (None: the system's temporary directory)."""
        return None

    def total_commands(self, plan: JobPlan) -> int:
        return plan.total_commands

    def run(
        self, plan: JobPlan, reporter: PlainReporter, events: EventLog, options: Options
    ) -> None:
        raise NotImplementedError

    def execute(self, plan: JobPlan, options: Options) -> Execution:
        """Checks, runs and reports the job; returns its one record."""
        self.preflight(plan)
        execution = Execution(plan.job.name, self.total_commands(plan), plan.total_runs)
        try:
            with handled(raise_interrupted):
                self.run_reported(plan, execution, options)
        except KeyboardInterrupt as interrupt:
            # A signal between the executor's own handling (setting up, tearing down).
            execution.interrupt(signal_of(interrupt))
        execution.close()
        report(execution)
        return execution

    def run_reported(self, plan: JobPlan, execution: Execution, options: Options) -> None:
        reporter = make_reporter(execution, parallel=options.jobs > 1)
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
        runs = "?" if plan.total_runs is None else plan.total_runs
        sys.stderr.write(
            f"hydraflow: {plan.job.name}: {plan.total_commands} commands, "
            f"{runs} runs (dry run: nothing was run)\n"
        )


class RunExecutor(Executor):
    """Each command a subprocess; `-j N` runs N at once."""

    kind = "run"
    accepts_jobs = True

    def preflight(self, plan: JobPlan) -> None:
        from hydraflow.executors.processes import check_argument_sizes, check_program

        check_program(plan, self.kind)
        check_argument_sizes(plan)

    def run(
        self, plan: JobPlan, reporter: PlainReporter, events: EventLog, options: Options
    ) -> None:
        from hydraflow.executors.processes import FinishedProof, run_commands

        commands = plan.commands()
        proof = FinishedProof(Path.cwd())
        run_commands(
            commands,
            reporter,
            events,
            jobs=options.jobs,
            keep_going=options.keep_going,
            proof=proof,
        )


class CallExecutor(Executor):
    """`module.function(argv)` per command, in this process."""

    kind = "call"

    def program(self, job: Job) -> list[str]:
        """The arguments after `module.function`."""
        return command_words(job)[1:]

    def dry_lines(self, plan: JobPlan) -> Iterator[str]:
        name = plan.job.command.split()[0]
        return (f"{name}({command.argv!r})" for command in plan.commands())

    def run(
        self, plan: JobPlan, reporter: PlainReporter, events: EventLog, options: Options
    ) -> None:
        from hydraflow.executors.call import run_calls

        run_calls(plan, reporter, events, keep_going=options.keep_going)


class SubmitExecutor(Executor):
    """One run of the user's handler with a file of every command's parameters."""

    kind = "submit"
    accepts_keep_going = False

    def preflight(self, plan: JobPlan) -> None:
        from hydraflow.executors.processes import check_program

        check_program(plan, self.kind)

    def dry_lines(self, plan: JobPlan) -> Iterator[str]:
        from hydraflow.executors.submit import handler_argv, params_path

        yield shlex.join(handler_argv(plan, params_path()))
        yield from plan.shell_lines(with_head=False)

    def events_directory(self) -> Path | None:
        """The current directory: a handler may run the commands elsewhere
        (a cluster node), where the project directory is shared."""
        return Path.cwd()

    def total_commands(self, plan: JobPlan) -> int:
        return 1  # the handler

    def run(
        self, plan: JobPlan, reporter: PlainReporter, events: EventLog, options: Options
    ) -> None:
        from hydraflow.executors.submit import run_submit

        run_submit(plan, reporter, events)


EXECUTORS: dict[str, Executor] = {
    e.kind: e for e in (RunExecutor(), CallExecutor(), SubmitExecutor())
}


def executor_for(job: Job) -> Executor:
    return EXECUTORS[job.kind]


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
