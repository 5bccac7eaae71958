"""Running commands as subprocesses: one at a time or N at once, output
streamed line by line, stopping at the first failure, and Ctrl-C or SIGTERM
forwarded to every child's process group so no process is left behind."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import IO

from hydraflow.executors.progress import PlainReporter
from hydraflow.plan import Command

INTERRUPTED = 130
NOT_FOUND = 127
# After an interrupt, children get this long to finish before they are killed.
GRACE_SECONDS = 30.0
# A grandchild that outlives its parent may hold the pipes open: stop waiting.
OUTPUT_DRAIN_SECONDS = 5.0


@dataclass
class Outcome:
    """How a batch of commands ended; `status` is the exit status to give."""

    status: int = 0
    first_failure: Command | None = None
    interrupted: bool = False


@dataclass
class Running:
    command: Command
    process: subprocess.Popen[bytes]
    readers: list[threading.Thread] = field(default_factory=list)


class Interrupts:
    """Catches SIGINT and SIGTERM while children run, forwarding each to them."""

    def __init__(self, running: dict[int, Running]) -> None:
        self.running = running
        self.signum: int | None = None
        self.count = 0
        self.previous: dict[int, object] = {}

    def __enter__(self) -> Interrupts:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.previous[signum] = signal.signal(signum, self.handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum
        self.count += 1
        # A second interrupt means "now": kill instead of asking.
        self.forward(signal.SIGKILL if self.count > 1 else signum)

    def forward(self, signum: int) -> None:
        for entry in list(self.running.values()):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(entry.process.pid, signum)


def exit_status(returncode: int) -> int:
    """A child killed by signal N exits as 128 + N, as a shell reports it."""
    return 128 - returncode if returncode < 0 else returncode


def run_commands(
    commands: Iterator[Command],
    reporter: PlainReporter,
    *,
    jobs: int = 1,
    keep_going: bool = False,
) -> Outcome:
    outcome = Outcome()
    running: dict[int, Running] = {}
    done: queue.Queue[Running] = queue.Queue()
    pending = iter(commands)
    with Interrupts(running) as interrupts:
        while True:
            stopping = interrupts.signum is not None or (
                outcome.first_failure is not None and not keep_going
            )
            while not stopping and len(running) < jobs:
                command = next(pending, None)
                if command is None:
                    break
                entry = start(command, reporter, done)
                if entry is None:
                    record_failure(outcome, command, NOT_FOUND, reporter)
                    stopping = not keep_going
                    continue
                running[entry.process.pid] = entry
            if not running:
                break
            finished = wait_for_one(done, interrupts)
            if finished is None:
                continue
            del running[finished.process.pid]
            status = exit_status(finished.process.returncode)
            if status == 0:
                reporter.ended(finished.command, 0)
            elif interrupts.signum is None:
                record_failure(outcome, finished.command, status, reporter)
            else:
                reporter.ended(finished.command, status)
    if interrupts.signum is not None:
        outcome.interrupted = True
        outcome.status = INTERRUPTED
    return outcome


def record_failure(
    outcome: Outcome, command: Command, status: int, reporter: PlainReporter
) -> None:
    reporter.ended(command, status)
    if outcome.first_failure is None:
        outcome.first_failure = command
        outcome.status = status


def wait_for_one(done: queue.Queue[Running], interrupts: Interrupts) -> Running | None:
    """The next child to finish; after an interrupt, kills stragglers past the grace."""
    waited = 0.0
    while True:
        try:
            return done.get(timeout=0.2)
        except queue.Empty:
            if interrupts.signum is not None:
                waited += 0.2
                if waited >= GRACE_SECONDS:
                    interrupts.forward(signal.SIGKILL)
            continue


def start(command: Command, reporter: PlainReporter, done: queue.Queue[Running]) -> Running | None:
    """Starts a child in its own process group; None if the program is missing."""
    reporter.started(command)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        process = subprocess.Popen(
            command.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=env,
        )
    except (FileNotFoundError, PermissionError) as error:
        reporter.message(f"command {command.index} could not start: {error}")
        return None
    entry = Running(command, process)
    streams: tuple[tuple[IO[bytes] | None, IO[str]], ...] = (
        (process.stdout, sys.stdout),
        (process.stderr, sys.stderr),
    )
    for pipe, target in streams:
        reader = threading.Thread(
            target=forward_lines, args=(pipe, target, command, reporter), daemon=True
        )
        reader.start()
        entry.readers.append(reader)
    threading.Thread(target=reap, args=(entry, done), daemon=True).start()
    return entry


def forward_lines(
    pipe: IO[bytes] | None, target: IO[str], command: Command, reporter: PlainReporter
) -> None:
    if pipe is None:
        return
    with pipe:
        for raw in pipe:
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            reporter.output(command, line, target)


def reap(entry: Running, done: queue.Queue[Running]) -> None:
    """Waits for the child and for all its output, then reports it done."""
    entry.process.wait()
    for reader in entry.readers:
        reader.join(timeout=OUTPUT_DRAIN_SECONDS)
    done.put(entry)
