"""The keeper: ends hydraflow's commands when hydraflow ends without ending
them (kill -9, the out-of-memory killer), as hydraflow itself would have.

Every command runs in its own session, so nothing the kernel does on
hydraflow's death reaches it: a cold command ran on, a warm one too (its
server leaves it at hydraflow's end), writing FINISHED runs nobody waited
for. (`PR_SET_PDEATHSIG` would signal the command only, not its group, and
escalate to nothing.) So hydraflow starts, before its first command, this
small process in a session of its own (a `kill -9` of hydraflow's group
misses it), standard library only: `python -I -S keeper.py GRACE`, on a
SOCK_SEQPACKET socket whose end is hydraflow's end. hydraflow sends
`group +PGID [PROXY]` as each command's process group starts, with the read
ends of its output pipes, and `group -PGID` once it ended; `directory
+PATH` / `-PATH` for its events directory. Groups still listed at the end
get what hydraflow's own escalation gives them: SIGINT (so the apps end
their runs KILLED), SIGTERM after the grace period, SIGKILL after another;
meanwhile their output goes on to hydraflow's stdout and stderr. Then the
directories go, and the keeper exits. After a normal end nothing is listed
and it exits at once.

This module is both sides: `Keeper` (`KEEPER`) is hydraflow's, `keep` (run
as a script) the keeper's."""

from __future__ import annotations

import contextlib
import os
import select
import selectors
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the keeper, which imports only what it uses, starts in 30 ms
    import subprocess
    from pathlib import Path

# hydraflow's escalation (processes.ESCALATION), restated: the keeper imports no hydraflow.
ESCALATION = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)
POLL_SECONDS = 0.05
# A grandchild that outlives its group may hold a pipe open: stop copying.
OUTPUT_DRAIN_SECONDS = 5.0


class Keeper:
    """hydraflow's side: the keeper process, started before the first command."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.channel: socket.socket | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.failed = False
        self.directories: set[str] = set()

    def start(self, grace: float) -> None:
        """Starts the keeper if it is not running: before a command starts,
        so that none runs unkept."""
        with self.lock:
            if self.channel is None and not self.failed:
                self.launch(grace)

    def watch(self, pgid: int, output: Sequence[int] = (), proxy: int | None = None) -> None:
        """The keeper ends this group if hydraflow ends first, and from then
        on reads `output` (the read ends of the command's stdout and stderr
        pipes) to its own stdout and stderr, hydraflow's: what the command
        says as it ends is seen, and its next print is no broken pipe. A
        handed-off process is killed when its `proxy` ends (its pool killed
        it), as hydraflow kills it then (handoff.py)."""
        self.send(f"group +{pgid}" + ("" if proxy is None else f" {proxy}"), output)

    def forget(self, pgid: int) -> None:
        """The group ended (or was ended) under hydraflow's own eyes."""
        self.send(f"group -{pgid}")

    def remove_at_end(self, directory: Path) -> None:
        """A directory of hydraflow's (its events files) the keeper removes
        once the groups ended, if hydraflow did not."""
        self.directories.add(str(directory))
        self.send(f"directory +{directory}")

    def forget_directory(self, directory: Path) -> None:
        self.directories.discard(str(directory))
        self.send(f"directory -{directory}")

    def send(self, line: str, fds: Sequence[int] = ()) -> None:
        with self.lock:
            if self.channel is None:
                return
            try:
                socket.send_fds(self.channel, [line.encode()], list(fds), socket.MSG_NOSIGNAL)
            except OSError:  # the keeper was killed: the commands go unkept, as before
                self.channel.close()
                self.channel = None

    def launch(self, grace: float) -> None:
        import subprocess

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-S", __file__, repr(grace)],
                stdin=theirs.fileno(),
                start_new_session=True,
            )
        except OSError:
            self.failed = True
            ours.close()
            return
        finally:
            theirs.close()
        self.channel = ours
        for directory in self.directories:
            socket.send_fds(ours, [f"directory +{directory}".encode()], [], socket.MSG_NOSIGNAL)


KEEPER = Keeper()


# --- the keeper's side ------------------------------------------------------------


class Kept:
    """What hydraflow left in the keeper's care."""

    def __init__(self) -> None:
        self.groups: dict[int, list[int]] = {}  # pgid -> its output pipes
        self.proxies: dict[int, int] = {}  # pgid -> its proxy's pidfd
        self.directories: set[str] = set()

    def follow(self, line: bytes, fds: list[int]) -> None:
        kind, _, rest = line.decode(errors="replace").partition(" ")
        add, value = rest[:1] == "+", rest[1:]
        if kind == "directory":
            (self.directories.add if add else self.directories.discard)(value)
        elif kind == "group":
            pgid, _, proxy = value.partition(" ")
            self.drop(int(pgid))
            if add:
                self.groups[int(pgid)], fds = fds, []
                if proxy:
                    self.proxies[int(pgid)] = os.pidfd_open(int(proxy))
        close_all(fds)

    def drop(self, pgid: int) -> None:
        close_all(self.groups.pop(pgid, []))
        proxy = self.proxies.pop(pgid, None)
        if proxy is not None:
            os.close(proxy)

    def kill_unproxied(self) -> None:
        """SIGKILL to each handed-off group whose proxy ended (its pool killed
        it): as hydraflow's hand-off does, or it would take its next task."""
        for pgid, proxy in list(self.proxies.items()):
            if select.select([proxy], [], [], 0)[0]:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
                del self.proxies[pgid]


def close_all(fds: Sequence[int]) -> None:
    for fd in fds:
        os.close(fd)


def keep(channel: socket.socket, grace: float) -> None:
    """Follows hydraflow's messages to their end (hydraflow's), then ends
    the groups left and removes the directories left."""
    kept = Kept()
    while True:
        line, fds, _, _ = socket.recv_fds(channel, 4096, 16)
        if not line:
            break
        with contextlib.suppress(OSError, ValueError):  # a proxy gone already: no pidfd
            kept.follow(line, fds)
    outputs = Outputs(kept.groups)
    end_groups(kept, grace, outputs)
    outputs.drain(OUTPUT_DRAIN_SECONDS)
    import shutil

    for directory in kept.directories:
        shutil.rmtree(directory, ignore_errors=True)


class Outputs:
    """The commands' output pipes, each copied to the keeper's stdout or
    stderr (odd: stderr) until its end."""

    def __init__(self, groups: dict[int, list[int]]) -> None:
        self.selector = selectors.DefaultSelector()
        for fds in groups.values():
            for index, fd in enumerate(fds):
                self.selector.register(fd, selectors.EVENT_READ, 1 + index % 2)

    def copy(self, timeout: float) -> None:
        """Copies what comes within `timeout` (waits that long if nothing does)."""
        if not self.selector.get_map():
            time.sleep(timeout)
            return
        for key, _ in self.selector.select(timeout):
            try:
                data = os.read(key.fd, 65536)
            except OSError:
                data = b""
            if not data:
                self.selector.unregister(key.fd)
                os.close(key.fd)
                continue
            with contextlib.suppress(OSError):  # nobody reads hydraflow's output any more
                os.write(key.data, data)

    def drain(self, seconds: float) -> None:
        """The output left, until each pipe ends (at most `seconds`: a grandchild may hold one)."""
        deadline = time.monotonic() + seconds
        while self.selector.get_map() and time.monotonic() < deadline:
            self.copy(POLL_SECONDS)


def end_groups(kept: Kept, grace: float, outputs: Outputs) -> None:
    """Each step of the escalation to the groups still there, a grace
    period apart, their output copied meanwhile."""
    groups = set(kept.groups)
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
                outputs.copy(POLL_SECONDS)
                kept.kill_unproxied()


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
    keep(socket.socket(fileno=0), float(sys.argv[1]))


if __name__ == "__main__":
    main()
