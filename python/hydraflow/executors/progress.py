"""What the user sees while a job runs: the children's output, live, and
progress — a rich display on a terminal, plain lines elsewhere."""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO

from hydraflow.plan import Command


@dataclass
class Tally:
    """Counts for the progress display and the closing summary."""

    total_commands: int
    total_runs: int
    finished: int = 0
    failed: int = 0
    runs_done: int = 0
    running: int = 0
    started_at: float = field(default_factory=time.monotonic)

    @property
    def not_started(self) -> int:
        return self.total_commands - self.finished - self.failed - self.running

    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    def summary(self, job: str) -> str:
        return (
            f"{job}: {self.finished} commands finished, {self.failed} failed, "
            f"{self.not_started} not started; {self.runs_done} of {self.total_runs} runs done; "
            f"{self.elapsed():.1f} s"
        )


class PlainReporter:
    """Line-oriented output for logs and pipes: no control characters."""

    def __init__(self, tally: Tally, *, prefix: bool, show_progress: bool = True) -> None:
        self.tally = tally
        self.prefix = prefix
        self.show_progress = show_progress
        self.lock = threading.Lock()

    def output(self, command: Command, line: str, stream: IO[str]) -> None:
        text = f"[{command.index}] {line}" if self.prefix else line
        with self.lock:
            stream.write(text + "\n")
            stream.flush()

    def started(self, command: Command) -> None:
        with self.lock:
            self.tally.running += 1

    def ended(self, command: Command, status: int) -> None:
        with self.lock:
            self.tally.running -= 1
            if status == 0:
                self.tally.finished += 1
                self.tally.runs_done += command.runs
            else:
                self.tally.failed += 1
        if self.show_progress:
            self.message(self.progress_line(command, status))

    def progress_line(self, command: Command, status: int) -> str:
        t = self.tally
        outcome = "finished" if status == 0 else f"failed with status {status}"
        return (
            f"[{t.finished + t.failed}/{t.total_commands} commands, "
            f"{t.runs_done}/{t.total_runs} runs, {t.elapsed():.1f} s] "
            f"command {command.index} {outcome}"
        )

    def message(self, text: str) -> None:
        with self.lock:
            sys.stderr.write(f"hydraflow: {text}\n")
            sys.stderr.flush()

    def close(self) -> None:
        pass


class TerminalReporter(PlainReporter):
    """A live progress bar on stderr; children's lines print above it."""

    def __init__(self, tally: Tally, *, prefix: bool, label: str) -> None:
        # The bar shows progress, so no plain progress lines.
        super().__init__(tally, prefix=prefix, show_progress=False)
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} commands"),
            TextColumn("{task.fields[runs]}/{task.fields[total_runs]} runs"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self.task = self.progress.add_task(
            label, total=tally.total_commands, runs=0, total_runs=tally.total_runs
        )
        self.progress.start()

    def output(self, command: Command, line: str, stream: IO[str]) -> None:
        text = f"[{command.index}] {line}" if self.prefix else line
        with self.lock:
            if stream.isatty():
                self.console.print(text, markup=False, highlight=False, soft_wrap=True)
            else:
                stream.write(text + "\n")
                stream.flush()

    def ended(self, command: Command, status: int) -> None:
        super().ended(command, status)
        t = self.tally
        self.progress.update(self.task, completed=t.finished + t.failed, runs=t.runs_done)

    def message(self, text: str) -> None:
        with self.lock:
            self.console.print(f"hydraflow: {text}", markup=False, highlight=False)

    def close(self) -> None:
        self.progress.stop()


def make_reporter(tally: Tally, *, parallel: bool, label: str) -> PlainReporter:
    """The terminal display when stderr is a terminal (and TERM is not dumb)."""
    if sys.stderr.isatty() and os.environ.get("TERM") != "dumb":
        return TerminalReporter(tally, prefix=parallel, label=label)
    return PlainReporter(tally, prefix=parallel)
