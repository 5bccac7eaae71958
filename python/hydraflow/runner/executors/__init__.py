"""Executors: one per job kind (`run`, `call`, `submit`), behind one
interface (`base.Executor`) — what options it accepts, how it plans, runs
and dry-runs a job. The CLI asks the executor; nothing else branches on the kind."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from hydraflow.runner.executors.base import Executor, RunOptions
from hydraflow.runner.executors.event_log import EventLog
from hydraflow.runner.executors.progress import PlainReporter
from hydraflow.runner.jobs import Job
from hydraflow.runner.plan import Command, JobPlan, command_words

if TYPE_CHECKING:
    from hydraflow.runner.executors.warm import WarmInterpreter

__all__ = ["EXECUTORS", "Executor", "RunOptions", "executor_for"]


class RunExecutor(Executor):
    """Each command a subprocess; `-j N` runs N at once."""

    kind = "run"
    accepts_jobs = True
    accepts_cold = True

    def preflight(self, plan: JobPlan) -> None:
        from hydraflow.runner.executors.processes import check_argument_sizes, check_program

        check_program(plan, self.kind)
        check_argument_sizes(plan)

    def run(
        self, plan: JobPlan, reporter: PlainReporter, events: EventLog, options: RunOptions
    ) -> None:
        from hydraflow.runner.executors.handoff import handed_off
        from hydraflow.runner.executors.processes import PER_COMMAND, run_commands
        from hydraflow.runner.finished import FinishedProof

        commands = plan.commands()
        proof = None if options.rerun else FinishedProof(Path.cwd())
        warm = warm_interpreter(reporter, options)
        try:
            # The workers of a warm command's process pool start warm too.
            with handed_off(warm, PER_COMMAND):
                run_commands(
                    commands,
                    reporter,
                    events,
                    jobs=options.jobs,
                    keep_going=options.keep_going,
                    proof=proof,
                    warm=warm,
                )
        finally:
            if warm is not None:
                warm.close()


def warm_interpreter(reporter: PlainReporter, options: RunOptions) -> WarmInterpreter | None:
    """The job's warm interpreter (None with --cold); with -v, it says once
    each why commands start cold, or that they start warm."""
    from hydraflow.runner.executors.warm import WarmInterpreter

    note = reporter.message if options.verbose else None
    if options.cold:
        if note is not None:
            note("commands start cold: --cold")
        return None
    stopping = lambda: reporter.execution.signal is not None  # noqa: E731
    return WarmInterpreter(note, stopping, reporter.message)


class CallExecutor(Executor):
    """`module.function(argv)` per command, in this process."""

    kind = "call"
    no_run_hint = "only a @hydraflow.main app reports its runs"

    def program(self, job: Job) -> list[str]:
        """The arguments after `module.function`."""
        return command_words(job)[1:]

    def dry_lines(self, plan: JobPlan) -> Iterator[str]:
        from hydraflow.remote import masked

        return (masked(self.command_text(plan, command)) for command in plan.commands())

    def command_text(self, plan: JobPlan, command: Command) -> str:
        """`module.function([...])`, the call made."""
        return f"{plan.job.command.split()[0]}({command.argv!r})"

    def run(
        self, plan: JobPlan, reporter: PlainReporter, events: EventLog, options: RunOptions
    ) -> None:
        from hydraflow.runner.executors.call import run_calls

        run_calls(plan, reporter, events, keep_going=options.keep_going)


class SubmitExecutor(Executor):
    """One run of the user's handler with a file of every command's parameters."""

    kind = "submit"
    no_run_hint = (
        "does the handler wait for the runs to end, and does the app's script call its "
        '@hydraflow.main function (if __name__ == "__main__": app())?'
    )
    accepts_keep_going = False
    # The handler's `python APP PARAMS` children may start warm (handoff.py).
    accepts_cold = True

    def program(self, job: Job) -> list[str]:
        """The handler's words; hydraflow's own handler is checked as it will
        check them, so `show` and `--dry-run` find a mistake, not the run."""
        from hydraflow.errors import ConfigError
        from hydraflow.runner.slurm import handler_line_error, slurm_handler_options

        words = command_words(job)
        options = slurm_handler_options(words)
        if options is not None:
            error = handler_line_error(options)
            if error is not None:
                where = f"jobs.{job.name}.{job.kind}"
                raise ConfigError(job.file, where, f"hydraflow slurm: {error}")
        return words

    def preflight(self, plan: JobPlan) -> None:
        from hydraflow.runner.executors.processes import check_program

        check_program(plan, self.kind)

    def dry_lines(self, plan: JobPlan) -> Iterator[str]:
        from hydraflow.remote import masked
        from hydraflow.runner.executors.submit import handler_argv, params_path

        yield masked(shlex.join(handler_argv(plan, params_path())))
        yield from plan.shell_lines(with_head=False, masking=True)

    def events_directory(self) -> Path | None:
        """The current directory: a handler may run the commands elsewhere
        (a cluster node), where the project directory is shared."""
        return Path.cwd()

    def run(
        self, plan: JobPlan, reporter: PlainReporter, events: EventLog, options: RunOptions
    ) -> None:
        from hydraflow.runner.executors.submit import run_submit

        warm = warm_interpreter(reporter, options)
        try:
            run_submit(plan, reporter, events, rerun=options.rerun, warm=warm)
        finally:
            if warm is not None:
                warm.close()


EXECUTORS: dict[str, Executor] = {
    e.kind: e for e in (RunExecutor(), CallExecutor(), SubmitExecutor())
}


def executor_for(job: Job) -> Executor:
    return EXECUTORS[job.kind]
