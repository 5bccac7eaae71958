"""The keeper: ends hydraflow's commands when hydraflow ends without ending
them (kill -9, the out-of-memory killer), as hydraflow itself would have.

Every command runs in its own session, so nothing the kernel does on
hydraflow's death reaches it: a cold command ran on, a warm one too (its
server leaves it at hydraflow's end), writing FINISHED runs nobody waited
for. (`PR_SET_PDEATHSIG` would signal the command only, not its group, and
escalate to nothing.) So hydraflow starts, before its first command, this
small process in a session of its own (a `kill -9` of hydraflow's group
misses it): standard library only, `python -I -S keeper.py GRACE`. hydraflow
writes `+PGID` on its stdin as each command's process group starts and
`-PGID` once it ended; the end of that pipe is the end of hydraflow. Groups
still listed then get what hydraflow's own Ctrl-C escalation gives them:
SIGINT (so the apps end their runs KILLED), SIGTERM after the grace period,
SIGKILL after another; the keeper exits as soon as none is left. After a
normal end nothing is listed and it exits at once.

This module is both sides: `watch`/`forget` are hydraflow's, `keep` (run as
a script) the keeper's."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from typing import IO

# hydraflow's escalation (processes.ESCALATION), restated: the keeper imports no hydraflow.
ESCALATION = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)
POLL_SECONDS = 0.05


class Keeper:
    """hydraflow's side: the keeper process, started at the first command."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pipe: IO[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.failed = False

    def watch(self, pgid: int, grace: float) -> None:
        """The keeper ends this group if hydraflow ends first."""
        self.send(f"+{pgid}\n", grace)

    def forget(self, pgid: int) -> None:
        """The group ended (or was ended) under hydraflow's own eyes."""
        if self.pipe is not None:
            self.send(f"-{pgid}\n")

    def start(self, grace: float) -> None:
        """Starts the keeper if it is not running (before a command starts, so
        that no command runs unkept)."""
        with self.lock:
            self.start_locked(grace)

    def send(self, line: str, grace: float | None = None) -> None:
        with self.lock:
            if grace is not None:
                self.start_locked(grace)
            if self.pipe is None:
                return
            try:
                self.pipe.write(line.encode())
                self.pipe.flush()
            except OSError:  # the keeper was killed: the commands go unkept, as before
                self.pipe = None

    def start_locked(self, grace: float) -> None:
        if self.pipe is not None or self.failed:
            return
        if self.process is not None and self.process.poll() is None:
            return
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-S", __file__, repr(grace)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError:
            self.failed = True
            return
        self.pipe = self.process.stdin


KEEPER = Keeper()


# --- the keeper's side ------------------------------------------------------------


def keep(instructions: Iterable[bytes], grace: float) -> None:
    """Follows hydraflow's `+PGID`/`-PGID` lines to their end, then ends the groups left."""
    groups: set[int] = set()
    for line in instructions:
        with contextlib.suppress(ValueError):
            pgid = int(line[1:])
            if line.startswith(b"+"):
                groups.add(pgid)
            elif line.startswith(b"-"):
                groups.discard(pgid)
    end_groups(groups, grace)


def end_groups(groups: set[int], grace: float) -> None:
    """Each step of the escalation to the groups still there, a grace period apart."""
    for step, signum in enumerate(ESCALATION):
        left = live_groups(groups)
        if not left:
            return
        for pgid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signum)
        if step < len(ESCALATION) - 1:
            deadline = time.monotonic() + grace
            while live_groups(groups) and time.monotonic() < deadline:
                time.sleep(POLL_SECONDS)


def live_groups(groups: set[int]) -> set[int]:
    """The groups with a process that has not ended (a zombie has: its new
    parent reaps it; `killpg(pgid, 0)` would count it)."""
    live = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rpartition(b")")[2].split()
            pgid = int(fields[2])
            if pgid in groups and fields[0] != b"Z":
                live.add(pgid)
    return live


def main() -> None:
    # Its own session: no terminal's Ctrl-C or hang-up is for the keeper.
    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    keep(sys.stdin.buffer, float(sys.argv[1]))


if __name__ == "__main__":
    main()
