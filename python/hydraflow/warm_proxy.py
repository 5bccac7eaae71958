"""The submit hand-off's proxy (started by `handoff_hook`): asks hydraflow
to run this `python APP PARAMS` from the warm interpreter, then stands in
for it until it ends. A command hydraflow does not take returns here, and
Python goes on cold (runner/executors/handoff.py says what it takes).

A command it takes gets the proxy's argv, directory, environment (the
variable included, as a cold command sees it) and stdin, stdout and stderr;
the proxy then forwards every signal a handler sends but SIGCHLD to the
command's process group (a stopping one stops the proxy and the command) and ends as the
command ended: its exit status, or killed by its signal. Past the point where the
command may have started, the proxy never goes on cold (a command never runs
twice); if hydraflow is gone, the command is killed rather than left without
anyone to wait for it.

Standard library only, and little of it: this runs before every such app.
The messages are the warm server's own (length-prefixed JSON, descriptors
alongside), defined here so the proxy need not import the runner."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import struct
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from hydraflow.handoff_hook import socket_address

HEADER = struct.Struct("!I")
# The most descriptors one message carries: a command's 0-2, its status
# socket and what a pool worker is given (4 for loky's), with room to spare.
MAX_DESCRIPTORS = 32
PEER_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid
# Every signal a handler may send, but the proxy's own child's news.
FORWARDED = tuple(sorted(signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD}))
# Stop the proxy as they would the command, and its command with it.
STOPPING = (signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)


def send_message(sock: socket.socket, message: dict[str, Any], fds: Sequence[int] = ()) -> None:
    payload = json.dumps(message).encode("utf-8", "surrogateescape")
    data = HEADER.pack(len(payload)) + payload
    sent = socket.send_fds(sock, [data], list(fds)) if fds else sock.send(data)
    if sent < len(data):
        sock.sendall(data[sent:])


def read_message(
    sock: socket.socket, fds: list[int] | None = None, max_size: int | None = None
) -> dict[str, Any] | None:
    """One message (None at the end of the stream); its descriptors into
    `fds`. ValueError for one longer than `max_size` bytes, before reading it."""
    if fds is None:
        head = read_exactly(sock, HEADER.size, b"")
    else:
        first, received, _, _ = socket.recv_fds(sock, HEADER.size, MAX_DESCRIPTORS)
        fds.extend(received)
        head = read_exactly(sock, HEADER.size, first)
    if head is None:
        return None
    size = HEADER.unpack(head)[0]
    if max_size is not None and size > max_size:
        raise ValueError(f"a message of {size} bytes (at most {max_size})")
    body = read_exactly(sock, size, b"")
    if body is None:
        return None
    loaded: dict[str, Any] = json.loads(body.decode("utf-8", "surrogateescape"))
    return loaded


def read_exactly(sock: socket.socket, size: int, start: bytes) -> bytes | None:
    data = bytearray(start)
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


# --- the proxy ----------------------------------------------------------------


class Proxy:
    """Stands in for the command hydraflow runs warm."""

    def __init__(self, path: str, owner: str) -> None:
        self.path = path
        self.owner = owner  # hydraflow's pid: the only listener told anything
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.pid: int | None = None
        self.pending: list[int] = []
        self.handlers: dict[int, Any] = {signum: signal.getsignal(signum) for signum in FORWARDED}
        # As the process started, before the proxy's own handlers: a warm one gets them too.
        self.ignored, self.blocked = signal_state()

    def run(self) -> None:
        """Returns if hydraflow runs the command cold; otherwise exits as the command did."""
        if not self.connect():
            self.sock.close()
            return  # hydraflow is gone, or someone else listens: nothing started
        for signum in FORWARDED:
            with contextlib.suppress(OSError, ValueError):  # one the system keeps
                signal.signal(signum, self.forward)
        try:
            reply = self.ask()
        except Exception:  # nothing started: as if nothing had been asked
            reply = None
        if reply is not None and "cold" not in reply:
            # "starting" came: the command may start now; only a refusal goes on cold.
            try:
                reply = self.receive()
                if reply is None or "cold" not in reply:  # not refused by the warm interpreter
                    self.follow(reply)
            except BaseException:  # never a cold run of what may run warm
                os._exit(1)
        self.go_cold()

    def connect(self) -> bool:
        """Connected to hydraflow itself (its pid and our uid), not to
        whatever took the socket's path."""
        try:
            self.sock.connect(socket_address(self.path))
            data = self.sock.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, PEER_CREDENTIALS.size
            )
        except OSError:
            return False
        pid, uid, _ = PEER_CREDENTIALS.unpack(data)
        return str(pid) == self.owner and uid == os.getuid()

    def follow(self, reply: dict[str, Any] | None) -> NoReturn:
        if reply is None or "pid" not in reply:
            write_stderr(
                "hydraflow: the warm interpreter ended as this command started; "
                "it is not started again\n"
            )
            os._exit(1)
        self.pid = int(reply["pid"])
        for pending in self.pending:
            self.forward(pending, None)
        self.end_as(self.receive())

    def ask(self) -> dict[str, Any] | None:
        beyond = inherited_descriptors(self.sock.fileno())
        request = {
            "argv": list(sys.orig_argv),
            "cwd": os.getcwd(),
            "env": dict(os.environ),
            "socket": self.sock.fileno(),  # the one descriptor beyond 0-2 that is ours
            "fds": beyond,  # those it was started with, sent after 0-2
            "ignored": self.ignored,
            "blocked": self.blocked,
        }
        try:
            send_message(self.sock, request, [0, 1, 2, *beyond])
        except OSError:
            return None  # a closed standard stream, or hydraflow gone
        return self.receive()

    def receive(self) -> dict[str, Any] | None:
        try:
            return read_message(self.sock)
        except (OSError, ValueError):
            return None

    def forward(self, signum: int, frame: object) -> None:
        if self.pid is None:
            self.pending.append(signum)
            return
        if signum in STOPPING:
            self.stop(signum)
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    def stop(self, signum: int) -> None:
        """Stops the command's group, then the proxy (the handler sees its
        child stopped); both go on when the proxy is continued."""
        assert self.pid is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGSTOP)
        os.kill(os.getpid(), signal.SIGSTOP)  # returns once continued
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGCONT)

    def go_cold(self) -> None:
        """As if nothing had been asked: the handlers back, and a signal
        that came meanwhile delivered now, as cold Python would take it."""
        self.sock.close()
        for signum, handler in self.handlers.items():
            with contextlib.suppress(OSError, ValueError, TypeError):
                signal.signal(signum, handler)
        for pending in self.pending:
            if (
                pending == signal.SIGINT
                and self.handlers.get(pending) is signal.default_int_handler
            ):
                # Cold, Python's start would end in a KeyboardInterrupt: no
                # exception let out of the hook, the same ending instead.
                write_stderr("KeyboardInterrupt\n")
                die_of(signal.SIGINT)
            os.kill(os.getpid(), pending)

    def end_as(self, reply: dict[str, Any] | None) -> NoReturn:
        """Exits with the command's status; killed by its signal if it was."""
        if reply is None or "status" not in reply:  # hydraflow is gone: nobody waits for it
            assert self.pid is not None
            await_keeper(self.pid)
            die_of(signal.SIGKILL)
        status = int(reply["status"])
        if status < 0:
            die_of(-status)
        os._exit(status)


def await_keeper(pid: int) -> None:
    """hydraflow was killed: its keeper (runner/executors/keeper.py) ends the
    command as hydraflow would have, SIGINT first, so its run ends KILLED. The
    proxy forwards nothing more (a second SIGINT would cut that end short),
    waits for the command's end, and kills its group after the keeper's
    longest time (two grace periods), should there be no keeper."""
    for signum in FORWARDED:
        with contextlib.suppress(OSError, ValueError):
            signal.signal(signum, signal.SIG_IGN)
    try:
        grace = max(0.0, float(os.environ.get("HYDRAFLOW_GRACE_SECONDS", "10")))
    except ValueError:
        grace = 10.0
    with contextlib.suppress(OSError):
        pidfd = os.pidfd_open(pid)
        select.select([pidfd], [], [], 2 * grace + 5)
        os.close(pidfd)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)  # what it left in its group, or itself


def signal_state() -> tuple[list[int], list[int]]:
    """The signals this process ignores and blocks (`/proc/self/status`):
    those its parent left it, and SIGPIPE and SIGXFSZ, which Python ignores."""
    masks = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("SigIgn", "SigBlk"):
                masks[key] = int(value, 16)
    return signals_in(masks.get("SigIgn", 0)), signals_in(masks.get("SigBlk", 0))


def signals_in(mask: int) -> list[int]:
    return [bit + 1 for bit in range(mask.bit_length()) if mask >> bit & 1]


def inherited_descriptors(own: int) -> list[int]:
    """The open descriptors beyond 0-2 but the proxy's socket: those the
    process was started with (and the `.pth` file `site` is reading, which
    hydraflow tells apart)."""
    found = []
    for entry in os.listdir("/proc/self/fd"):
        fd = int(entry)
        if fd > 2 and fd != own:
            with contextlib.suppress(OSError):  # the listing's own, closed by now
                os.fstat(fd)
                found.append(fd)
    return sorted(found)


def die_of(signum: int) -> NoReturn:
    for forwarded in FORWARDED:
        with contextlib.suppress(OSError, ValueError):
            signal.signal(forwarded, signal.SIG_IGN)
    if signum not in (signal.SIGKILL, signal.SIGSTOP):
        signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum])
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)  # a signal whose default is to go on


def write_stderr(text: str) -> None:
    with contextlib.suppress(OSError):
        os.write(2, text.encode())
