"""The submit executor: every command's parameters go to one file, handed to
the user's submit command (a cluster submitter, say) as its last argument.

As a `run` job skips them, commands proven finished (runner/finished.py) are
left out of the file; when none remains, the handler does not start. After
the handler exits 0 with every run of its commands done, each of them is
recorded as finished, with the runs of them all (which command made which
run the CLI cannot tell, so a command is proven only while all are)."""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hydraflow._core import ulid
from hydraflow.runner.executors.event_log import EventLog
from hydraflow.runner.executors.handoff import handed_off
from hydraflow.runner.executors.processes import PER_COMMAND, run_commands
from hydraflow.runner.executors.progress import PlainReporter
from hydraflow.runner.executors.warm import WarmInterpreter
from hydraflow.runner.finished import RECORD_DB, RECORD_DIR, FinishedProof
from hydraflow.runner.plan import Command, JobPlan, summed
from hydraflow.tables import counted


def params_path() -> Path:
    """A new file name in the current directory, unique and time-ordered."""
    return Path.cwd() / f"hydraflow-submit-{ulid()}.txt"


def handler_argv(plan: JobPlan, path: Path) -> list[str]:
    return [*plan.head, str(path)]


@contextmanager
def params_file(lines: Iterator[str]) -> Iterator[Path]:
    """Writes the file (readable by the owner only) and removes it afterwards,
    whatever happens meanwhile."""
    path = params_path()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            for line in lines:
                file.write(line + "\n")
        yield path
    finally:
        path.unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class Handler(Command):
    """The handler's run, standing for the `submitted` commands."""

    submitted: int = 0

    @property
    def label(self) -> str:
        """What the progress display says is running."""
        return f"{counted(self.submitted, 'command')} submitted by {shlex.join(self.head)}"


class HandlerProof(FinishedProof):
    """Records each submitted command once the handler exits 0 with every run
    of them all done (never skips the handler itself)."""

    def __init__(self, launch_dir: Path, submitted: Sequence[Command]) -> None:
        super().__init__(launch_dir)
        self.submitted = submitted

    def is_finished(self, command: Command) -> bool:
        return False

    def record(self, command: Command, manifest: Path, events: list[dict[str, object]]) -> None:
        for submitted in self.submitted:
            super().record(
                Command(submitted.index, submitted.head, submitted.params, command.runs),
                manifest,
                events,
            )


def run_submit(
    plan: JobPlan,
    reporter: PlainReporter,
    events: EventLog,
    *,
    rerun: bool,
    warm: WarmInterpreter | None = None,
) -> None:
    """Runs the handler once for the commands not proven finished; their runs'
    events (from wherever the handler runs them) land in the one events file.
    With `warm`, the handler's `python APP PARAMS` children may start warm (handoff.py)."""
    if rerun:  # every line, written fast (a plan may be huge); nothing is proven
        lines = plan.shell_lines(with_head=False)
        submit(plan, lines, plan.total_commands, reporter, events, runs=plan.total_runs, warm=warm)
        return
    proof = FinishedProof(Path.cwd())
    recorded = (Path.cwd() / RECORD_DIR / RECORD_DB).exists()
    remaining = []
    for command in plan.commands():
        if recorded and proof.is_finished(command):
            events.command_skipped(command.runs or 0)
            reporter.skipped(command)
        else:
            remaining.append(command)
    if remaining:
        lines = (shlex.join(command.params) for command in remaining)
        runs = summed(command.runs for command in remaining)
        submit(plan, lines, len(remaining), reporter, events, remaining, runs, warm)


def submit(
    plan: JobPlan,
    lines: Iterator[str],
    count: int,
    reporter: PlainReporter,
    events: EventLog,
    commands: Sequence[Command] = (),
    runs: int | None = None,
    warm: WarmInterpreter | None = None,
) -> None:
    """Runs the handler on a file of `lines`, the parameters of `count`
    commands (`commands`, when they are to be recorded as finished)."""
    with params_file(lines) as path, handed_off(warm, PER_COMMAND, path) as handoff:
        handler = Handler(1, tuple(plan.head), [str(path)], runs, count)
        proof = HandlerProof(Path.cwd(), commands) if commands else None
        started = handoff.handler_started if handoff is not None else None
        run_commands(iter([handler]), reporter, events, proof=proof, started=started)
