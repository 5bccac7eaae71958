"""Running commands as subprocesses: one at a time or N at once, output
streamed line by line, stopping at the first failure; SIGINT, SIGTERM and
SIGHUP forwarded to every child's process group, escalated after a grace
period, so no process is left behind."""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

from hydraflow.errors import HydraflowError, ProgramError
from hydraflow.protocol import EVENTS_ENV, INPUTS_ENV
from hydraflow.runner.executors.event_log import EventLog
from hydraflow.runner.executors.keeper import KEEPER
from hydraflow.runner.executors.progress import Execution, PlainReporter, commands_in
from hydraflow.runner.executors.warm import WarmInterpreter, WarmProcess
from hydraflow.runner.finished import FinishedProof
from hydraflow.runner.plan import Command, JobPlan
from hydraflow.signals import handled

NOT_FOUND = 127
# Children are asked to stop with SIGINT (so apps record their runs KILLED),
# then told with SIGTERM, then killed; each step after a grace period.
ESCALATION = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)
GRACE_ENV = "HYDRAFLOW_GRACE_SECONDS"
DEFAULT_GRACE_SECONDS = 10.0
# A grandchild that outlives its parent may hold the pipes open: stop waiting.
OUTPUT_DRAIN_SECONDS = 5.0
# Linux refuses a single argument longer than this (MAX_ARG_STRLEN).
MAX_ARGUMENT_BYTES = 32 * 4096


def grace_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get(GRACE_ENV, DEFAULT_GRACE_SECONDS)))
    except ValueError:
        return DEFAULT_GRACE_SECONDS


# The variables hydraflow sets for each command (a warm start sends them per command).
PER_COMMAND = (EVENTS_ENV, INPUTS_ENV)


@dataclass
class Running:
    command: Command
    process: subprocess.Popen[bytes] | WarmProcess
    readers: list[threading.Thread] = field(default_factory=list)


class Interrupts:
    """Catches SIGINT, SIGTERM and SIGHUP while children run: the first asks
    every child's group to stop (SIGINT), and each later signal, or each grace
    period without an end, escalates one step (SIGTERM, then SIGKILL)."""

    def __init__(self, running: dict[int, Running], execution: Execution, events: EventLog) -> None:
        self.running = running
        self.execution = execution
        self.events = events
        self.level = -1
        self.next_step_at: float | None = None
        self.grace = grace_seconds()

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.execution.signal is None:
            self.execution.signal = signum
            # Before the SIGINT, so the apps name what came, not what they get.
            self.events.note_signal(signum)
        self.escalate()

    def escalate(self) -> None:
        self.level = min(self.level + 1, len(ESCALATION) - 1)
        self.forward(ESCALATION[self.level])
        self.next_step_at = time.monotonic() + self.grace

    def tick(self) -> None:
        """Escalates when the grace period ran out (called from the wait loop)."""
        due = self.next_step_at is not None and time.monotonic() >= self.next_step_at
        if due and self.level < len(ESCALATION) - 1:
            self.escalate()

    def forward(self, signum: int) -> None:
        for entry in list(self.running.values()):
            kill_group(entry.process.pid, signum)

    def forward_to(self, entry: Running) -> None:
        """The step reached so far, to a child that started after it."""
        kill_group(entry.process.pid, ESCALATION[max(self.level, 0)])


def kill_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def exit_status(returncode: int) -> int:
    """A child killed by signal N exits as 128 + N, as a shell reports it."""
    return 128 - returncode if returncode < 0 else returncode


def run_commands(
    commands: Iterator[Command],
    reporter: PlainReporter,
    events: EventLog,
    *,
    jobs: int = 1,
    keep_going: bool = False,
    proof: FinishedProof | None = None,
    warm: WarmInterpreter | None = None,
    started: Callable[[int], None] | None = None,
) -> None:
    """Runs the commands, recording everything in `reporter.execution`; with
    `proof`, a command proven finished before is skipped without starting;
    with `warm`, each command it can run the same is forked from it;
    `started` is told each started command's pid."""
    execution = reporter.execution
    running: dict[int, Running] = {}
    done: queue.Queue[Running] = queue.Queue()
    pending = iter(commands)

    def stopping() -> bool:
        failed = execution.first_failure is not None and not keep_going
        return execution.signal is not None or failed

    interrupts = Interrupts(running, execution, events)
    with handled(interrupts.handle):
        while True:
            while not stopping() and len(running) < jobs:
                command = next(pending, None)
                if command is None:
                    break
                if proof is not None and proof.is_finished(command):
                    events.command_skipped(command.runs or 0)
                    reporter.skipped(command)
                    continue
                entry = start(command, reporter, done, events, warm)
                if entry is not None:
                    running[entry.process.pid] = entry
                    if started is not None:
                        started(entry.process.pid)
                    if execution.signal is not None:  # it came while the command started
                        interrupts.forward_to(entry)
            if not running:
                break
            finished = wait_for_one(done, interrupts)
            del running[finished.process.pid]
            conclude(finished, reporter, events, proof)


def conclude(
    finished: Running, reporter: PlainReporter, events: EventLog, proof: FinishedProof | None
) -> None:
    """Counts a command that ended; records it as proven finished when it is."""
    interrupted = reporter.execution.signal is not None
    if interrupted:
        # Whatever the interrupted command left in its group goes too.
        kill_group(finished.process.pid, signal.SIGKILL)
    status = exit_status(finished.process.wait())  # reaped: returns at once
    KEEPER.forget(finished.process.pid)
    command = finished.command
    command_events = events.command_ended(
        command.index,
        command.runs,
        completed=not interrupted,
        succeeded=status == 0,
        commands=commands_in(command),
    )
    if proof is not None and not interrupted and status == 0:
        proof.record(command, events.inputs_path(command.index), command_events)
    reporter.ended(command, status)


def wait_for_one(done: queue.Queue[Running], interrupts: Interrupts) -> Running:
    """The next child to finish; after an interrupt, escalates past each grace."""
    while True:
        try:
            return done.get(timeout=0.2)
        except queue.Empty:
            interrupts.tick()


def child_environment(events_file: Path, inputs_file: Path) -> Mapping[str, str]:
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        EVENTS_ENV: str(events_file),
        INPUTS_ENV: str(inputs_file),
    }


def start(
    command: Command,
    reporter: PlainReporter,
    done: queue.Queue[Running],
    events: EventLog,
    warm: WarmInterpreter | None = None,
) -> Running | None:
    """Starts a child in its own process group (its own session), from the
    warm interpreter when it can; None if it could not start (counted as a
    failure with status 127)."""
    reporter.started(command)
    environment = child_environment(
        events.path_for(command.index), events.inputs_path(command.index)
    )
    # Before the command starts: it must not outlive a hydraflow killed meanwhile.
    KEEPER.start(grace_seconds())
    try:
        forked = None if warm is None else warm.start(command.argv, environment, PER_COMMAND)
        if forked is None and reporter.execution.signal is not None:
            # Interrupted while the warm interpreter preloaded: never started.
            events.command_ended(command.index, command.runs, completed=False)
            reporter.ended(command, 128 + reporter.execution.signal)
            return None
        process = forked or subprocess.Popen(
            command.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=environment,
        )
    except OSError as error:
        reporter.message(f"command {command.index} could not start: {start_error(error, command)}")
        events.command_ended(command.index, command.runs, completed=False)
        reporter.ended(command, NOT_FOUND)
        return None
    KEEPER.watch(process.pid, [pipe.fileno() for pipe in (process.stdout, process.stderr) if pipe])
    entry = Running(command, process)
    streams: tuple[tuple[IO[bytes] | None, IO[str]], ...] = (
        (process.stdout, sys.stdout),
        (process.stderr, sys.stderr),
    )
    for pipe, target in streams:
        lines = InterruptTracebacks(lambda: reporter.execution.signal is not None)
        reader = threading.Thread(
            target=forward_lines, args=(pipe, target, command, reporter, lines), daemon=True
        )
        reader.start()
        entry.readers.append(reader)
    threading.Thread(target=reap, args=(entry, done), daemon=True).start()
    return entry


def start_error(error: OSError, command: Command) -> str:
    program = command.argv[0]
    if error.errno == errno.E2BIG:
        return "the command line is longer than the system allows (Argument list too long)"
    if error.errno == errno.ENOENT:
        return f"'{program}' not found"
    if error.errno == errno.EACCES:
        return f"'{program}' is not executable (Permission denied)"
    if error.errno == errno.ENOEXEC:
        return f"'{program}' is not a program the system can run (no #! line?)"
    return f"'{program}': {error.strerror}"


def forward_lines(
    pipe: IO[bytes] | None,
    target: IO[str],
    command: Command,
    reporter: PlainReporter,
    lines: InterruptTracebacks,
) -> None:
    if pipe is None:
        return
    with pipe:
        for raw in pipe:
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            for shown in lines.feed(line):
                reporter.output(command, shown, target)
    for shown in lines.release():
        reporter.output(command, shown, target)


TRACEBACK_START = "Traceback (most recent call last):"
CHAINED = ("During handling of the above exception", "The above exception was the direct cause")
# Python's last line for an interrupt: KeyboardInterrupt, or a subclass (ours).
INTERRUPT_LINE = re.compile(r"(KeyboardInterrupt|[\w.]*Interrupted)(:.*)?")
MAX_HELD_LINES = 1000


class InterruptTracebacks:
    """After hydraflow forwarded a stop signal, a child's KeyboardInterrupt
    traceback (Python prints one when the signal lands before the app handles
    it, e.g. while it imports) repeats the summary: each traceback is held
    from its first line; one that ends in an interrupt is dropped, any other
    shown whole as soon as its last line arrives."""

    def __init__(self, interrupted: Callable[[], bool]) -> None:
        self.interrupted = interrupted
        self.held: list[str] = []
        self.ends_in_interrupt = False

    def feed(self, line: str) -> list[str]:
        """The lines to show now."""
        if not self.held:
            if line == TRACEBACK_START:
                self.held = [line]
                return []
            return [line]
        if self.ends_in_interrupt and line and not line.startswith((TRACEBACK_START, *CHAINED)):
            return [*self.release(), *self.feed(line)]  # the traceback ended before this line
        self.held.append(line)
        if line and not line[0].isspace() and not line.startswith((TRACEBACK_START, *CHAINED)):
            if not INTERRUPT_LINE.fullmatch(line):
                return self.release()
            self.ends_in_interrupt = True  # unless a chained traceback follows
        elif line == TRACEBACK_START:
            self.ends_in_interrupt = False
        return self.release() if len(self.held) > MAX_HELD_LINES else []

    def release(self) -> list[str]:
        """The held lines to show: none for an interrupt's traceback after a stop signal."""
        held, self.held = self.held, []
        quiet = self.ends_in_interrupt and self.interrupted()
        self.ends_in_interrupt = False
        return [] if quiet else held


def reap(entry: Running, done: queue.Queue[Running]) -> None:
    """Waits for the child and for all its output, then reports it done."""
    entry.process.wait()
    for reader in entry.readers:
        reader.join(timeout=OUTPUT_DRAIN_SECONDS)
    done.put(entry)


def check_program(plan: JobPlan, field_name: str) -> None:
    """Refuses, before anything starts, a program that is missing or not executable."""
    program = plan.head[0]
    where = f"{plan.job.file}: jobs.{plan.job.name}.{field_name}"
    if shutil.which(program) is not None:
        check_python_script(plan.head, where)
        return
    if os.sep in program and Path(program).is_file():
        hint = f"chmod +x {shlex.quote(program)}, or name its interpreter first"
        raise ProgramError(f"{where}: '{program}' is not executable ({hint})")
    if os.sep in program:
        raise ProgramError(f"{where}: '{program}' does not exist")
    raise ProgramError(f"{where}: '{program}' not found: no such program on PATH")


def check_python_script(head: Sequence[str], where: str) -> None:
    """`python SCRIPT.py`: a missing script is refused before anything
    starts, rather than by Python in every command, after the sweep began."""
    interpreter = Path(head[0]).name.startswith("python")
    if interpreter and len(head) > 1 and head[1].endswith(".py") and not Path(head[1]).is_file():
        raise ProgramError(f"{where}: '{head[1]}' does not exist (in {Path.cwd()})")


def check_argument_sizes(plan: JobPlan) -> None:
    """Refuses, before anything starts, a command the system would refuse to
    start (E2BIG): one argument, or the whole command line, too long."""
    for job_set in plan.sets:
        argv = job_set.largest_argv(plan.head)
        sizes = [len(arg.encode("utf-8", "surrogateescape")) + 1 for arg in argv]
        where = f"{plan.job.file}: {job_set.where}"
        longest = max(range(len(argv)), key=sizes.__getitem__)
        if sys.platform.startswith("linux") and sizes[longest] > MAX_ARGUMENT_BYTES:
            shown = argv[longest] if len(argv[longest]) <= 40 else argv[longest][:40] + "…"
            raise HydraflowError(
                f"{where}: the argument '{shown}' is {sizes[longest]:,} bytes, more than the "
                f"{MAX_ARGUMENT_BYTES:,} the system allows in one argument (Argument list too "
                "long); sweep fewer values per command, e.g. move it from 'all' to 'each'"
            )
        # Each string and its pointer count against the limit, the environment's too.
        size = sum(sizes) + 8 * len(argv)
        limit = argument_space()
        if size > limit:
            raise HydraflowError(
                f"{where}: a command would take {size:,} bytes, more than the system allows "
                f"({limit:,} beside the environment; Argument list too long); sweep fewer "
                "values per command, e.g. move an argument from 'all' to 'each'"
            )


def argument_space() -> int:
    """Bytes left for a command line once the children's environment is in."""
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", EVENTS_ENV: "x" * 4096}
    environment[INPUTS_ENV] = "x" * 4096
    used = sum(len(os.fsencode(k)) + len(os.fsencode(v)) + 2 + 8 for k, v in environment.items())
    return os.sysconf("SC_ARG_MAX") - used - 4096
