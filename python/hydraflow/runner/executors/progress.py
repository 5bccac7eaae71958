"""One record of one execution, and what the user sees while a job runs: the
children's output, live, and progress — a rich display on a terminal, plain
lines elsewhere — then a one-paragraph summary."""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from hydraflow.protocol import OUTCOMES
from hydraflow.remote import masked
from hydraflow.runner.executors.event_log import RunCounts
from hydraflow.runner.plan import Command
from hydraflow.signals import signal_name
from hydraflow.tables import counted


@dataclass
class Execution:
    """How a job's execution went: commands by state, runs by outcome (from
    the events), the first failure, the signal that interrupted it."""

    job: str
    total_commands: int
    total_runs: int | None
    finished: int = 0
    skipped: int = 0
    failed: int = 0
    interrupted: int = 0
    # Commands a submit handler handed to a scheduler without waiting for them.
    submitted: int = 0
    running: dict[int, Command] = field(default_factory=dict)
    first_failure: Command | None = None
    failure_status: int = 0
    signal: int | None = None
    runs: RunCounts = field(default_factory=RunCounts)
    started_at: float = field(default_factory=time.monotonic)
    closed: bool = False
    # What to ask when commands exit 0 having reported no run (the executor's words).
    no_run_hint: str = ""
    # A submit handler that did not end with status 0 ("failed with status 1",
    # "was interrupted"): which of its commands ran, only their runs tell.
    handler_ending: str | None = None
    # How a failure names its command (a call job: `module.function([...])`).
    command_text: Callable[[Command], str] = field(default=lambda command: shlex.join(command.argv))

    @property
    def status(self) -> int:
        """The exit status: 128+N after signal N, else the first failure's."""
        return 128 + self.signal if self.signal is not None else self.failure_status

    @property
    def ended(self) -> int:
        return self.done + self.interrupted

    @property
    def done(self) -> int:
        """Commands that ran to their end (or were proven finished before, or
        handed to a scheduler by a handler that did not wait)."""
        return self.finished + self.skipped + self.failed + self.submitted

    @property
    def not_started(self) -> int:
        running = sum(commands_in(c) for c in self.running.values())
        return self.total_commands - self.ended - running

    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    def command_started(self, command: Command) -> None:
        self.running[command.index] = command

    def command_ended(self, command: Command, status: int) -> None:
        """Counts the command: once interrupted, whatever ends was interrupted."""
        self.running.pop(command.index, None)
        count = commands_in(command)
        if is_handler(command) and (self.signal is not None or status != 0):
            self.handler_ending = handler_ending(status, self.signal)
        if self.signal is not None:
            self.interrupted += count
        elif status == 0 and is_handler(command) and self.runs.unwaited_commands:
            self.submitted += count
        elif status == 0:
            self.finished += count
        else:
            self.failed += count
            if self.first_failure is None:
                self.first_failure, self.failure_status = command, status

    def interrupt(self, signum: int) -> None:
        """The first stopping signal is the one the execution reports."""
        if self.signal is None:
            self.signal = signum

    def close(self) -> None:
        """After the last command: one still running (an interrupt cut its
        bookkeeping short) was interrupted."""
        self.interrupted += sum(commands_in(c) for c in self.running.values())
        if any(is_handler(c) for c in self.running.values()):
            self.handler_ending = handler_ending(None, self.signal)
        self.running.clear()
        self.closed = True

    def runs_through(self) -> int:
        """Runs that went through, for the progress: as the summary counts
        them, never a run that failed or was killed, nor a failed command's
        unreported runs."""
        return self.runs.through

    def commands_progress(self) -> str:
        """`1/2 commands` ended of the plan's."""
        return f"{self.done}/{counted(self.total_commands, 'command')}"

    def planned_runs(self) -> int | None:
        """The plan's count of runs; None when only Hydra knows it, or once
        more runs came than it said (a sweep in the app's own config, which
        the plan cannot read): then the runs are counted as they come."""
        seen = max(self.runs.started, self.runs.done)
        if self.total_runs is None or seen > self.total_runs:
            return None
        return self.total_runs

    def runs_progress(self) -> str:
        """`3/6 runs` through of the plan's; `3 runs` when only Hydra knows the total."""
        through = self.runs_through()
        total = self.planned_runs()
        if total is None:
            return counted(through, "run")
        return f"{through}/{counted(total, 'run')}"

    def command_skipped(self, command: Command) -> None:
        self.skipped += 1

    def eta(self) -> float | None:
        """Seconds left, from runs ended so far (or whole commands when the
        program reports no runs); None until there is a basis, and once interrupted."""
        if self.signal is not None:
            return None
        elapsed = self.elapsed()
        # Runs whose fate is known (a failed command's too): what is left to run.
        done = self.runs.accounted or self.runs.done
        total = self.planned_runs()
        if total and done:
            return max(0.0, elapsed / done * (total - done))
        if self.ended:
            return elapsed / self.ended * (self.total_commands - self.ended)
        return None

    def runs_text(self) -> str:
        """Every planned run in one of the words, so the counts add up to the
        plan; when only Hydra knows the total (a sweeper), the runs as they came."""
        counts = self.runs
        parts = [f"{counts.ended[o]} {o}" for o in OUTCOMES if counts.ended[o]]
        if counts.cut_off:
            parts.append(f"{counts.cut_off} cut off")
        if counts.not_reported:
            parts.append(f"{counts.not_reported} not reported")
        if counts.not_waited:
            parts.append(f"{counts.not_waited} not waited for")
        total = self.planned_runs()
        if total is None:
            return f"runs: {', '.join(parts) or 'none reported'}"
        accounted = counts.accounted
        if accounted is not None and accounted < total:
            parts.append(f"{total - accounted} not started")
        return f"{counted(total, 'run')}: {', '.join(parts) or 'none ended'}"

    def state_text(self) -> str:
        """What the execution is doing, for the progress display."""
        if self.signal is not None:
            return f"interrupted by {signal.Signals(self.signal).name}"
        if self.running:
            return f"{running_text(list(self.running.values()))} running"
        if not self.closed:
            return "starting"
        if self.first_failure is not None and self.ended < self.total_commands:
            return f"stopped: {label_of(self.first_failure)} failed"
        return "done"

    def summary(self) -> str:
        states = [
            ("finished", self.finished),
            ("skipped", self.skipped),
            ("submitted, not waited for", self.submitted),
            ("failed", self.failed),
            ("interrupted", self.interrupted),
            ("not started", self.not_started),
        ]
        always = "submitted, not waited for" if self.submitted else "finished"
        commands = ", ".join(f"{n} {state}" for state, n in states if n or state == always)
        if self.handler_ending is not None:
            handled = self.total_commands - self.skipped
            commands = ", ".join(
                [
                    *([f"{self.skipped} skipped"] if self.skipped else []),
                    f"{handled} submitted by a handler that {self.handler_ending}",
                ]
            )
        return (
            f"{self.job}: {counted(self.total_commands, 'command')}: {commands}; "
            f"{self.runs_text()}; {self.elapsed():.1f} s"
        )

    def closing_report(self) -> list[str]:
        """What to say after the job, before the summary."""
        return [
            *self.no_run_report(),
            *self.not_waited_report(),
            *self.stale_report(),
            *self.ending_report(),
        ]

    def not_waited_report(self) -> list[str]:
        """Commands a handler submitted and did not wait for: where they went,
        and how to fill in what did not finish."""
        counts = self.runs
        if not counts.unwaited_commands:
            return []
        jobs = ", ".join(counts.unwaited_jobs)
        return [
            f"the handler submitted {counted(counts.unwaited_commands, 'command')} "
            f"(job {jobs}) and returned without waiting for their runs, which report to "
            f"the store, not here; once they have ended, 'hydraflow run {self.job}' again "
            "skips the finished runs and runs the others"
        ]

    def no_run_report(self) -> list[str]:
        """Once per job: commands that exited 0 and reported no run at all (a
        script that never calls its app, a program without @hydraflow.main)."""
        silent = self.runs.silent_commands
        if not silent:
            return []
        return [
            f"{counted(silent, 'command')} ended with status 0 having reported no run"
            + (f": {self.no_run_hint}" if self.no_run_hint else "")
        ]

    def stale_report(self) -> list[str]:
        """Once per job: skipped runs that code which has changed since made."""
        counts = self.runs
        if not counts.stale:
            return []
        names = sorted(counts.changed_files)
        changed = f"changed: {', '.join(names)}" if names else "the changed files are not recorded"
        if names and counts.unnamed_changes:
            changed += " and others"
        return [
            f"{counted(counts.stale, 'skipped run')} {'was' if counts.stale == 1 else 'were'} "
            f"made by code that has changed since ({changed}); "
            f"'hydraflow run {self.job} --rerun' runs them again as new runs"
        ]

    def ending_report(self) -> list[str]:
        if self.signal is not None:
            text = f"interrupted by {signal.Signals(self.signal).name}"
            if self.not_started:
                text += f"; {counted(self.not_started, 'command')} not started"
            return [text]
        failure = self.first_failure
        # A handler's failure: the summary says it, its own output says why
        # (the parameter file named in its command line is gone by now).
        if failure is not None and not is_handler(failure):
            return [
                f"{label_of(failure)} failed with status {self.failure_status}: "
                + masked(self.command_text(failure))
            ]
        return []


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return "ETA ?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"ETA {hours}:{minutes:02d}:{secs:02d}" if hours else f"ETA {minutes}:{secs:02d}"


# Plain progress lines between command ends come at most this often.
PLAIN_PROGRESS_SECONDS = 10.0


class PlainReporter:
    """Line-oriented output for logs and pipes: no control characters."""

    def __init__(self, execution: Execution, *, prefix: bool, show_progress: bool = True) -> None:
        self.execution = execution
        self.prefix = prefix
        self.show_progress = show_progress
        self.lock = threading.RLock()
        self.runs_shown = 0
        self.shown_at = time.monotonic()

    def output(self, command: Command, line: str, stream: IO[str]) -> None:
        text = f"[{command.index}] {line}" if self.prefix else line
        with self.lock:
            stream.write(text + "\n")
            stream.flush()

    def started(self, command: Command) -> None:
        with self.lock:
            self.execution.command_started(command)
        self.refresh()

    def ended(self, command: Command, status: int) -> None:
        with self.lock:
            self.execution.command_ended(command, status)
        if self.show_progress:
            self.message(self.progress_line(command, status))
        self.refresh()

    def skipped(self, command: Command) -> None:
        """A command proven finished before, not started."""
        with self.lock:
            self.execution.command_skipped(command)
        if self.show_progress:
            self.message(f"{self.counts()} command {command.index} skipped: it finished before")
        self.refresh()

    def progress_line(self, command: Command, status: int) -> str:
        if self.execution.signal is not None:
            outcome = "interrupted"
        elif status == 0 and is_handler(command) and self.execution.runs.unwaited_commands:
            outcome = "returned, not waiting for them"  # the label says they were submitted
        else:
            outcome = "finished" if status == 0 else f"failed with status {status}"
        return f"{self.counts()} {label_of(command)} {outcome}"

    def counts(self) -> str:
        e = self.execution
        return (
            f"[{e.commands_progress()}, {e.runs_progress()}, "
            f"{e.elapsed():.1f} s, {eta_text(e.eta())}]"
        )

    def refresh(self) -> None:
        """Called when counts change (commands or events): while a long command
        runs, a line now and then says how its runs go, with the ETA."""
        if not self.show_progress:
            return
        with self.lock:
            ended = self.execution.runs.done
            now = time.monotonic()
            if ended == self.runs_shown or now - self.shown_at < PLAIN_PROGRESS_SECONDS:
                return
            self.runs_shown, self.shown_at = ended, now
            self.message(f"{self.counts()} {self.execution.state_text()}")

    def message(self, text: str) -> None:
        with self.lock:
            sys.stderr.write(f"hydraflow: {text}\n")
            sys.stderr.flush()

    def close(self) -> None:
        pass


MIN_BAR, MAX_BAR = 10, 40


class TerminalReporter(PlainReporter):
    """A live progress bar on stderr naming the running commands, with an
    ETA from the runs ended so far; children's lines print above it."""

    def __init__(self, execution: Execution, *, prefix: bool) -> None:
        # The bar shows progress, so no plain progress lines.
        super().__init__(execution, prefix=prefix, show_progress=False)
        from rich.console import Console
        from rich.progress import BarColumn, Progress, Task, TextColumn, TimeElapsedColumn
        from rich.table import Column
        from rich.text import Text

        class DescriptionColumn(TextColumn):
            """The description on one line, cut with an ellipsis to its column."""

            def render(self, task: Task) -> Text:
                return Text(task.description, no_wrap=True, overflow="ellipsis")

        self.console = Console(stderr=True)
        # The bar narrows first (see `refresh`), then the description is cut
        # with an ellipsis; the other text columns (no_wrap) stay whole.
        self.bar = BarColumn(table_column=Column(no_wrap=True))
        self.progress = Progress(
            DescriptionColumn("", table_column=Column(no_wrap=False)),
            self.bar,
            TextColumn("{task.fields[commands]}"),
            TextColumn("{task.fields[runs]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"),
            console=self.console,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self.task = self.progress.add_task(
            execution.job, total=execution.total_commands, commands="", runs="", eta=""
        )
        self.refresh()
        self.progress.start()

    def output(self, command: Command, line: str, stream: IO[str]) -> None:
        text = f"[{command.index}] {line}" if self.prefix else line
        with self.lock:
            if stream.isatty():
                self.console.print(text, markup=False, highlight=False, soft_wrap=True)
            else:
                stream.write(text + "\n")
                stream.flush()

    def refresh(self) -> None:
        with self.lock:
            e = self.execution
            commands, runs, eta = e.commands_progress(), e.runs_progress(), eta_text(e.eta())
            description = f"{e.job}: {e.state_text()}"
            # The elapsed time (7), a space between each of the 6 columns (5).
            taken = len(description) + len(commands) + len(runs) + len(eta) + 7 + 5
            self.bar.bar_width = max(MIN_BAR, min(MAX_BAR, self.console.width - taken))
            self.progress.update(
                self.task,
                description=description,
                completed=e.done,
                commands=commands,
                runs=runs,
                eta=eta,
            )

    def message(self, text: str) -> None:
        with self.lock:
            self.console.print(f"hydraflow: {text}", markup=False, highlight=False)

    def close(self) -> None:
        """The last frame shows how the execution ended."""
        self.refresh()
        self.progress.stop()


def running_text(commands: list[Command]) -> str:
    """The running command (its number and its swept values), or which run."""
    if len(commands) > 1:
        return f"commands {', '.join(str(c.index) for c in commands)}"
    [command] = commands
    if hasattr(command, "label"):
        return label_of(command)
    swept = [p for p in command.params[1:] if "=" in p and not p.startswith("hydra.")]
    text = f"command {command.index} " + " ".join(swept)
    return text if len(text) <= 60 else text[:59] + "…"


def is_handler(command: Command) -> bool:
    """A submit handler's run, standing for the commands in its file."""
    return hasattr(command, "submitted")


def handler_ending(status: int | None, signum: int | None) -> str:
    if signum is not None or status is None:
        return "was interrupted"
    if status < 0:
        return f"was killed by {signal_name(-status)}"
    return f"failed with status {status}"


def commands_in(command: Command) -> int:
    """How many of the job's commands `command` stands for: a submit
    handler's run, all those in its file."""
    count: int = getattr(command, "submitted", 1)
    return count


def label_of(command: Command) -> str:
    """`command N`, or what a submit handler's run says it is."""
    label: str = getattr(command, "label", f"command {command.index}")
    return label


def make_reporter(execution: Execution, *, parallel: bool) -> PlainReporter:
    """The terminal display when stderr is a terminal (and TERM is not dumb)."""
    if sys.stderr.isatty() and os.environ.get("TERM") != "dumb":
        return TerminalReporter(execution, prefix=parallel)
    return PlainReporter(execution, prefix=parallel)
