"""Reading job events (the contract: `hydraflow.protocol`): the
runner names a file per command in HYDRAFLOW_EVENTS; `@hydraflow.main`
appends a JSON line when a run starts and when it ends. The runner reads them
for progress, the ETA and the closing summary. Nothing here imports MLflow.
"""

from __future__ import annotations

import collections
import json
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from hydraflow import protocol
from hydraflow.runner.executors.keeper import KEEPER

POLL_SECONDS = 0.5


@dataclass
class RunCounts:
    """What the events say so far: runs started, and ended by outcome."""

    started: int = 0
    ended: collections.Counter[str] = field(default_factory=collections.Counter)
    # Runs of ended commands that started and never ended (their process was
    # killed): left RUNNING in the store, to be resumed.
    cut_off: int = 0
    # Runs of completed commands that no event accounts for; None once unknowable.
    not_reported: int | None = 0
    # Of those, the runs of commands that exited 0 (an app that writes no
    # events): progress counts them as through, never a failed command's.
    passed_unreported: int = 0
    # Commands that exited 0 without one event: their app reported no run.
    silent_commands: int = 0
    # Commands a submit handler handed to a scheduler and returned without
    # waiting for (`hydraflow slurm --no-wait`), the scheduler's job ids, and
    # their runs not ended by then: how those go, only the store will say.
    unwaited_commands: int = 0
    unwaited_jobs: list[str] = field(default_factory=list)
    not_waited: int = 0
    # Skipped runs made by code that has changed since, and the files named.
    stale: int = 0
    changed_files: set[str] = field(default_factory=set)
    unnamed_changes: bool = False

    @property
    def done(self) -> int:
        return sum(self.ended.values())

    @property
    def through(self) -> int:
        """Runs that went through: ended finished, resumed, stopped by the
        rule or skipped (not failed, killed at Ctrl-C, or busy elsewhere),
        or in a command that exited 0."""
        went_through = sum(self.ended[outcome] for outcome in protocol.DONE_OUTCOMES)
        return went_through + self.passed_unreported

    @property
    def accounted(self) -> int | None:
        """Runs whose fate is known: ended, cut off or not reported."""
        if self.not_reported is None:
            return None
        return self.done + self.cut_off + self.not_reported + self.not_waited

    def add_stale(self, event: dict[str, object]) -> None:
        """Counts a skipped run whose code changed (the event's `code_changed`)."""
        changed = event.get(protocol.CODE_CHANGED)
        if not isinstance(changed, list):
            return
        self.stale += 1
        self.changed_files.update(str(name) for name in changed)
        count = event.get(protocol.CODE_CHANGED_COUNT)
        if not changed or (isinstance(count, int) and count > len(changed)):
            self.unnamed_changes = True

    def add_not_reported(self, runs: int | None, reported: int, *, succeeded: bool) -> None:
        if runs is None or self.not_reported is None:
            self.not_reported = None
            return
        missing = max(0, runs - reported)
        self.not_reported += missing
        if succeeded:
            self.passed_unreported += missing


@dataclass
class EventFile:
    """One command's events file and how far it has been read."""

    path: Path
    offset: int = 0
    ends: int = 0
    partial: bytes = b""
    started: set[str] = field(default_factory=set)
    ended: set[str] = field(default_factory=set)
    events: list[dict[str, object]] = field(default_factory=list)
    # The scheduler's job id, once the command (a submit handler) said it
    # returns without waiting for its runs.
    not_waited_job: str | None = None

    def read_new(self) -> Iterator[dict[str, object]]:
        """The complete lines appended since the last read, parsed; a torn or
        malformed line is skipped, never an error."""
        try:
            with self.path.open("rb") as file:
                file.seek(self.offset)
                data = file.read()
        except FileNotFoundError:
            return
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                yield event


class EventLog:
    """A private directory of per-command event files, read by a polling thread.

    `on_change` is called (from the thread) whenever new events were counted."""

    def __init__(self, directory: Path, on_change: Callable[[], None]) -> None:
        self.directory = directory
        self.counts = RunCounts()
        self.files: dict[int, EventFile] = {}
        self.lock = threading.Lock()
        self.on_change = on_change
        self.signal: int | None = None
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.poll_until_stopped, daemon=True)

    def path_for(self, index: int) -> Path:
        """The file command `index` writes to; created empty so readers find it."""
        path = self.directory / f"command-{index}.jsonl"
        path.touch(mode=0o600)
        with self.lock:
            self.files[index] = EventFile(path)
        if self.signal is not None:  # the command starts as the job stops
            protocol.note_signal(path, self.signal)
        return path

    def note_signal(self, signum: int) -> None:
        """Tells every running command's app the signal the runner got (see
        `protocol.note_signal`). Called from a signal handler: no lock, which
        the interrupted thread may hold."""
        if self.signal is None:
            self.signal = signum
            for entry in list(self.files.values()):
                protocol.note_signal(entry.path, signum)

    def poll(self) -> None:
        with self.lock:
            changed = any([self.read(entry) for entry in list(self.files.values())])
        if changed:
            self.on_change()

    def read(self, entry: EventFile) -> bool:
        changed = False
        for event in entry.read_new():
            changed = True
            entry.events.append(event)
            run_id = str(event.get("run_id"))
            if event.get("event") == protocol.START:
                self.counts.started += 1
                entry.started.add(run_id)
            elif event.get("event") == protocol.END:
                entry.ends += 1
                entry.ended.add(run_id)
                self.counts.ended[str(event.get("outcome", "unknown"))] += 1
                self.counts.add_stale(event)
            elif event.get("event") == protocol.SUBMITTED:
                entry.not_waited_job = str(event.get("job", "?"))
        return changed

    def inputs_path(self, index: int) -> Path:
        """Where command `index`'s app writes its inputs manifest (HYDRAFLOW_INPUTS)."""
        return self.directory / f"command-{index}.inputs.json"

    def command_ended(
        self,
        index: int,
        runs: int | None,
        *,
        completed: bool,
        succeeded: bool = True,
        commands: int = 1,
    ) -> list[dict[str, object]]:
        """Reads the command's last events and returns all of them. Runs it
        started and never ended are cut off; other runs of a completed command
        that no event reports are not reported (an interrupted command's are
        not started), and went through only if it `succeeded` (exited 0). It
        stands for `commands` of the job's (a submit handler's: all it submitted)."""
        with self.lock:
            entry = self.files.pop(index, None)
            if entry is None:
                return []
            self.read(entry)
            if entry.not_waited_job is not None and completed and succeeded:
                self.handler_did_not_wait(entry, runs, commands)
            else:
                self.count_unended(entry, runs, completed=completed, succeeded=succeeded)
                if completed and succeeded and not entry.started and not entry.ends:
                    self.counts.silent_commands += commands
        self.on_change()
        return entry.events

    def count_unended(
        self, entry: EventFile, runs: int | None, *, completed: bool, succeeded: bool
    ) -> None:
        """Runs started and never ended are cut off; a completed command's
        other runs, not reported (called with the lock)."""
        cut_off = len(entry.started - entry.ended)
        self.counts.cut_off += cut_off
        if completed:
            self.counts.add_not_reported(runs, entry.ends + cut_off, succeeded=succeeded)

    def handler_did_not_wait(self, entry: EventFile, runs: int | None, commands: int) -> None:
        """A handler that exited 0 having said it does not wait: its runs not
        ended yet go on without the runner, neither cut off nor unreported."""
        counts = self.counts
        counts.unwaited_commands += commands
        counts.unwaited_jobs.append(str(entry.not_waited_job))
        if runs is None or counts.not_reported is None:
            counts.not_reported = None  # how many there are, only Hydra knows
        else:
            counts.not_waited += max(0, runs - entry.ends)

    def command_skipped(self, runs: int) -> None:
        """A command proven finished, not started: its runs count as skipped."""
        with self.lock:
            self.counts.ended[protocol.SKIPPED] += runs
        self.on_change()

    def poll_until_stopped(self) -> None:
        while not self.stopped.wait(POLL_SECONDS):
            self.poll()

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join()
        self.poll()


@contextmanager
def event_log(on_change: Callable[[], None], *, where: Path | None = None) -> Iterator[EventLog]:
    """An EventLog in a new private directory (in `where`, or the system's
    temporary directory), removed afterwards whatever happens."""
    directory = Path(tempfile.mkdtemp(prefix=".hydraflow-events-", dir=where))
    log = EventLog(directory, on_change)
    log.start()
    KEEPER.remove_at_end(directory)  # should hydraflow be killed
    try:
        yield log
    finally:
        log.stop()
        shutil.rmtree(directory, ignore_errors=True)
        KEEPER.forget_directory(directory)
