"""The submit executor: every command's parameters go to one file, handed to
the user's submit command (a cluster submitter, say) as its last argument."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hydraflow._core import ulid
from hydraflow.runner.executors.event_log import EventLog
from hydraflow.runner.executors.processes import run_commands
from hydraflow.runner.executors.progress import PlainReporter
from hydraflow.runner.plan import Command, JobPlan


def params_path() -> Path:
    """A new file name in the current directory, unique and time-ordered."""
    return Path.cwd() / f"hydraflow-submit-{ulid()}.txt"


def handler_argv(plan: JobPlan, path: Path) -> list[str]:
    return [*plan.head, str(path)]


@contextmanager
def params_file(plan: JobPlan) -> Iterator[Path]:
    """Writes the file (readable by the owner only) and removes it afterwards,
    whatever happens meanwhile."""
    path = params_path()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            for line in plan.shell_lines(with_head=False):
                file.write(line + "\n")
        yield path
    finally:
        path.unlink(missing_ok=True)


def run_submit(plan: JobPlan, reporter: PlainReporter, events: EventLog) -> None:
    """Runs the handler once as the job's one command; its runs' events (from
    wherever the handler runs them) land in the one events file."""
    with params_file(plan) as path:
        handler = Command(1, tuple(handler_argv(plan, path)), [], plan.total_runs)
        run_commands(iter([handler]), reporter, events)
