"""The hand-off, hydraflow's side: Python processes a job's processes start,
which run from the warm interpreter (warm.py) as a `run:` job's commands do:

- a submit handler's `python APP PARAMS` children, each one of the commands
  hydraflow submitted;
- the workers of a warm command's process pool (loky's, which Hydra's
  joblib launcher uses), each `python -m <loky's worker module> --pipe N`,
  with the descriptors its pool gave it.

hydraflow listens on an abstract Unix socket of a random name (nothing in the
file system, so nothing is left when hydraflow is killed) and names it in
HYDRAFLOW_HANDOFF (`hydraflow/warm_proxy.py` is the other side, started by a
`.pth` hook). A proxy's request is taken only if its process (known from the
socket's peer credentials, not from what it says) is this user's, runs
hydraflow's own interpreter binary with hydraflow's process settings (nice,
umask, affinity, limits, cgroup), and:

- a submitted command: it is a child of the handler, in hydraflow's
  directory, with no descriptor beyond 0-2, and its arguments are exactly
  those of a submitted command;
- a pool worker: its parent was forked by the warm interpreter (a warm
  command), and its arguments are loky's for a worker;

then `WarmInterpreter.start` decides, with its own refusals. So a command
that a scheduler runs elsewhere, one started through a shell that stays in
between, or anything else a command starts stays cold: no work escapes
where the handler or the app puts it.

The proxy and the process are tied: the proxy forwards its signals to the
process's group; a proxy that ends first (killed by SIGKILL) takes the
process with it; processes still running when the job ends are killed."""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import signal
import socket
import struct
import sys
import sysconfig
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from hydraflow.handoff_hook import COMMANDS, HANDOFF_ENV, WORKERS, is_pool_worker, socket_address
from hydraflow.remote import masked
from hydraflow.runner.executors.keeper import KEEPER
from hydraflow.runner.executors.processes import kill_group
from hydraflow.runner.executors.warm import (
    MLFLOW_SESSION_ENV,
    Inherited,
    WarmInterpreter,
    WarmProcess,
    WarmStartLost,
    proc_stat,
)
from hydraflow.warm_proxy import read_message, send_message

PEER_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid
HANDLER_PID_SECONDS = 5.0
CLOSE_WAIT_SECONDS = 10.0
HOOK_FILE = "hydraflow_handoff.pth"
# A proxy sends its request (argv, environment, descriptors) at once.
REQUEST_SECONDS = 10.0
MAX_REQUEST_BYTES = 64 * 2**20


class Handoff:
    """The socket, and one thread per proxy that asks."""

    def __init__(
        self,
        warm: WarmInterpreter,
        per_command: Sequence[str],
        params_file: Path | None = None,
    ) -> None:
        self.warm = warm
        self.worker_warm: WarmInterpreter | None = None  # for workers of another environment
        self.params_file = params_file  # a submit job's: its commands may ask
        self.submitted: set[tuple[str, ...]] | None = None  # read at the first request
        self.per_command = per_command
        self.note = warm.note  # said with -v
        self.handler_pid: int | None = None
        self.handler_known = threading.Event()
        self.running: dict[int, WarmProcess] = {}
        self.workers: set[int] = set()  # those of `running` that are pool workers
        self.lock = threading.Lock()
        self.waited = threading.Condition(self.lock)  # a command's end, told to its proxy
        self.closing = False
        self.said: set[str] = set()
        # Any user may connect to an abstract socket: `accept` checks the uid.
        self.path = f"@hydraflow-handoff-{os.getpid()}-{secrets.token_hex(16)}"
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.listener.bind(socket_address(self.path))
            self.listener.listen(64)
        except OSError:
            self.listener.close()
            raise
        threading.Thread(target=self.accept, daemon=True).start()

    @property
    def variable(self) -> str:
        """HYDRAFLOW_HANDOFF's value: whose descendants may ask, which, and where."""
        kinds = [WORKERS] if self.params_file is None else [COMMANDS, WORKERS]
        return f"{os.getpid()}:{','.join(kinds)}:{self.path}"

    def handler_started(self, pid: int) -> None:
        self.handler_pid = pid
        self.handler_known.set()

    def accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return  # closed
            if peer_uid(connection) != os.getuid():
                # Any user may connect to an abstract socket (and read its
                # name in /proc/net/unix): another's is closed unread,
                # before it costs a thread or a byte of memory.
                connection.close()
                continue
            threading.Thread(target=self.serve, args=(connection,), daemon=True).start()

    def serve(self, connection: socket.socket) -> None:
        fds: list[int] = []
        with connection:
            try:
                connection.settimeout(REQUEST_SECONDS)
                request = read_message(connection, fds, max_size=MAX_REQUEST_BYTES)
                connection.settimeout(None)
            except (OSError, ValueError):
                request = None
            try:
                request = request or {}
                worker = is_pool_worker([str(arg) for arg in request.get("argv", [])])
                given = received(request, fds)
                refusal = self.refusal(connection, request, given, worker)
                if refusal is not None:
                    what = "a pool worker" if worker else "a submitted command"
                    self.say_once(f"{what} starts cold: {refusal}")
                    send_message(connection, {"cold": refusal})
                    return
                assert given is not None
                send_message(connection, {"starting": True})
                self.run(connection, request, given, worker)
            except OSError:
                pass  # the proxy is gone
            finally:
                for fd in fds:
                    os.close(fd)
                # Wakes the watcher's recv (a close alone would not).
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)

    def refusal(
        self,
        connection: socket.socket,
        request: dict[str, Any],
        given: dict[int, int] | None,
        worker: bool,
    ) -> str | None:
        """Why the request is not taken; all of it decided before the proxy
        is told "starting" (after which it never goes cold)."""
        if given is None:
            return "the request was cut short"
        if not {0, 1, 2} <= set(given) or request.get("socket") in (0, 1, 2):
            # One was closed: `site` opened the hook's file on it, or the proxy its socket.
            return "its standard streams are not all open"
        if not isinstance(request.get("env"), dict) or not isinstance(request.get("cwd"), str):
            return "its request is incomplete"
        try:
            if worker:
                return self.worker_refusal(connection, request, given)
            return self.command_refusal(connection, request, given)
        except Exception as error:  # a request of a shape no check foresaw
            return f"its request could not be checked ({type(error).__name__})"

    def command_refusal(
        self, connection: socket.socket, request: dict[str, Any], given: dict[int, int]
    ) -> str | None:
        """Why this request is not a submitted command for the warm interpreter."""
        if self.params_file is None:
            return "only a submit handler's commands are handed off"
        pid = peer_pid(connection)
        # A handler quick to start its first command may ask before its own start is noted.
        self.handler_known.wait(timeout=HANDLER_PID_SECONDS)
        if pid is None or self.handler_pid is None or parent_of(pid) != self.handler_pid:
            return "its parent is not the handler"
        if not same_binary(pid):
            return "another interpreter than hydraflow's"
        if request.get("cwd") != os.getcwd():
            return "the handler starts it in another directory"
        args = arguments([str(arg) for arg in request.get("argv", [])])
        if tuple(args) not in self.submitted_commands():
            return f"'{shown(args)}' is not the parameters of a command hydraflow submitted"
        if extra_descriptors(pid) - {request.get("socket")}:
            return "the handler passes it descriptors beyond 0-2"
        return other_settings(pid, "the handler")

    def worker_refusal(
        self, connection: socket.socket, request: dict[str, Any], given: dict[int, int]
    ) -> str | None:
        """Why this request is not a warm command's pool worker for the warm interpreter."""
        pid = peer_pid(connection)
        server = self.warm.server_pid
        if pid is None or server is None or parent_of(parent_of(pid) or 0) != server:
            return "its parent is not a command of the warm interpreter"
        if not same_binary(pid):
            return "another interpreter than hydraflow's"
        argv = [str(arg) for arg in request.get("argv", [])]
        if not is_loky_worker(argv, given):
            return f"'{shown(argv[1:])}' is not how loky starts a worker"
        return other_settings(pid, "its command")

    def submitted_commands(self) -> set[tuple[str, ...]]:
        """The parameters of each line of the file the handler was given."""
        assert self.params_file is not None  # asked of a submit job's requests only
        with self.lock:
            if self.submitted is None:
                with open(self.params_file, encoding="utf-8") as lines:
                    self.submitted = {tuple(shlex.split(line)) for line in lines}
            return self.submitted

    def run(
        self,
        connection: socket.socket,
        request: dict[str, Any],
        given: dict[int, int],
        worker: bool,
    ) -> None:
        """Starts the process warm, tells the proxy its pid, then its end."""
        argv = [str(arg) for arg in request["argv"]]
        environment = {str(k): str(v) for k, v in request["env"].items()}
        per_process = self.per_command if not worker else (*self.per_command, MLFLOW_SESSION_ENV)
        warm = self.warm if not worker else self.warm_for_workers(environment, per_process)
        inherited = Inherited(
            stdio=[given[0], given[1], given[2]],
            cwd=str(request["cwd"]),
            passed={number: fd for number, fd in given.items() if number > 2} if worker else {},
            pool_pid=peer_pid(connection) if worker else None,
            ignored=[int(signum) for signum in request.get("ignored", [])],
            blocked=[int(signum) for signum in request.get("blocked", [])],
        )
        try:
            process = warm.start(argv, environment, per_process, inherited)
        except WarmStartLost as lost:
            process = self.forked_before_the_end(lost.args[0])
            if process is None:
                send_message(connection, {"lost": True})
                return
        if process is None:
            send_message(connection, {"cold": "refused by the warm interpreter"})
            return
        if worker:
            self.say_once("pool workers of warm commands start from the warm interpreter")
        else:
            self.note(f"handed off to the warm interpreter: {shown(arguments(argv))}")
        # After a deliberate close, a command's status cut short is no lost server.
        server_lost = process.server_lost
        process.server_lost = lambda: None if self.closing else server_lost()
        with self.lock:
            self.running[process.pid] = process
            if worker:
                self.workers.add(process.pid)
        KEEPER.watch(process.pid, proxy=peer_pid(connection))  # should hydraflow be killed
        try:
            send_message(connection, {"pid": process.pid})
            threading.Thread(target=self.watch, args=(connection, process), daemon=True).start()
            returncode = process.wait()
            send_message(connection, {"status": returncode})
        finally:
            KEEPER.forget(process.pid)
            with self.lock:
                self.running.pop(process.pid, None)
                self.workers.discard(process.pid)
                self.waited.notify_all()

    def warm_for_workers(
        self, environment: Mapping[str, str], per_process: Sequence[str]
    ) -> WarmInterpreter:
        """The commands' warm interpreter if the workers' environment is
        theirs, else a second one started in it: a pool sets variables for
        its workers (one thread each for OpenMP, OpenBLAS, MKL, ...) that
        the preloaded libraries read as they load."""
        if self.warm.serves_environment(environment, per_process):
            return self.warm
        with self.lock:
            if self.worker_warm is None:
                self.worker_warm = self.warm.another("pool workers")
            return self.worker_warm

    def forked_before_the_end(self, server_argv: list[str]) -> WarmProcess | None:
        """The command a server forked just before it ended, if it did: a
        child of hydraflow now (its subreaper) with the server's command line,
        and not one of the commands already handed off."""
        with self.lock:
            known = set(self.running)
        wanted = b"".join(os.fsencode(arg) + b"\0" for arg in server_argv)
        for pid in children_of(os.getpid()) - known:
            with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if cmdline.read() == wanted:
                    return WarmProcess(pid, None, None, None)
        return None

    def watch(self, connection: socket.socket, process: WarmProcess) -> None:
        """A proxy that ends before its command (killed) takes the command with it."""
        with contextlib.suppress(OSError):
            connection.recv(1)
        with self.lock:
            if process.pid in self.running and process.returncode is None:
                kill_group(process.pid, signal.SIGKILL)

    def say_once(self, text: str) -> None:
        """Each kind of reason once: the text up to its first quoted detail."""
        kind = text.split("'", 1)[0]
        with self.lock:
            if kind in self.said:
                return
            self.said.add(kind)
        self.note(text)

    def close(self) -> None:
        """Stops listening; commands still running (their handler ended
        without waiting for them) are killed with the job, and waited for."""
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self.lock:
            self.closing = True
            left = list(self.running)
            workers = len(self.workers)
            for pid in left:
                kill_group(pid, signal.SIGKILL)
            # Their statuses come from the server, which must not stop before.
            self.waited.wait_for(lambda: not self.running, timeout=CLOSE_WAIT_SECONDS)
        if len(left) > workers:
            commands = len(left) - workers
            self.warm.alert(f"killed {commands} handed-off command(s) the handler left running")
        if workers:
            self.warm.alert(f"killed {workers} pool worker(s) their command left running")
        if self.worker_warm is not None:
            self.worker_warm.close()


def shown(args: list[str]) -> str:
    """A command's parameters as `-v` prints them: a password as ***."""
    return masked(shlex.join(args))


def arguments(argv: list[str]) -> list[str]:
    """What follows `python SCRIPT` or `python -m MODULE`: a command's parameters."""
    return argv[3:] if argv[1:2] == ["-m"] else argv[2:]


def received(request: dict[str, Any], fds: list[int]) -> dict[int, int] | None:
    """The descriptors the proxy sent, by their number in its process (0-2,
    then those it was started with, but the hook's `.pth` file `site` was
    reading); None if they did not all arrive."""
    numbers = [0, 1, 2, *request.get("fds", [])]
    if len(numbers) != len(fds) or len(set(numbers)) != len(numbers):
        return None
    return {n: fd for n, fd in zip(numbers, fds, strict=True) if not is_hook_file(fd)}


def is_hook_file(fd: int) -> bool:
    try:
        theirs, hook = os.fstat(fd), os.stat(hook_path())
    except OSError:
        return False
    return (theirs.st_dev, theirs.st_ino) == (hook.st_dev, hook.st_ino)


def hook_path() -> str:
    return os.path.realpath(os.path.join(sysconfig.get_path("purelib"), HOOK_FILE))


def is_loky_worker(argv: list[str], given: dict[int, int]) -> bool:
    """`python -m MODULE --process-name NAME --pipe N`, N given: loky's worker."""
    if len(argv) != 7 or argv[3::2] != ["--process-name", "--pipe"]:
        return False
    return argv[6].isdigit() and int(argv[6]) in given


def peer_pid(connection: socket.socket) -> int | None:
    credentials = peer_credentials(connection)
    return credentials[0] or None if credentials is not None else None


def peer_uid(connection: socket.socket) -> int | None:
    credentials = peer_credentials(connection)
    return credentials[1] if credentials is not None else None


def peer_credentials(connection: socket.socket) -> tuple[int, int, int] | None:
    """The kernel's word on who connected: pid, uid, gid."""
    try:
        data = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, PEER_CREDENTIALS.size)
    except OSError:
        return None
    pid, uid, gid = PEER_CREDENTIALS.unpack(data)
    return int(pid), int(uid), int(gid)


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in filter(str.isdigit, os.listdir("/proc")):
        if parent_of(int(entry)) == pid:
            found.add(int(entry))
    return found


def parent_of(pid: int) -> int | None:
    try:
        return int(proc_stat(pid)[1])
    except (OSError, IndexError, ValueError):
        return None


def other_settings(pid: int, parent: str) -> str | None:
    """What its parent set for the process that a warm one would not get
    (the server is forked from hydraflow, with hydraflow's settings): a
    process with any is refused rather than given them again."""
    try:
        theirs, ours = settings_of(str(pid)), settings_of("self")
    except (OSError, IndexError, ValueError):
        return "its process settings could not be read"
    for name, value in theirs.items():
        if value != ours[name]:
            return f"{parent} gave it another {name} than hydraflow's"
    return None


def settings_of(pid: str) -> dict[str, object]:
    """The settings a process passes to what it starts, as /proc shows them."""
    nice = int(proc_stat(pid)[16])
    status = {}
    with open(f"/proc/{pid}/status", encoding="utf-8") as lines:
        for line in lines:
            key, _, value = line.partition(":")
            status[key] = value.strip()
    with open(f"/proc/{pid}/limits", encoding="utf-8") as limits:
        limit_lines = limits.read()
    with open(f"/proc/{pid}/cgroup", encoding="utf-8") as cgroup:
        cgroups = cgroup.read()
    return {
        "nice level": nice,
        "umask": status.get("Umask"),
        "CPU affinity": status["Cpus_allowed_list"],
        "resource limits": limit_lines,
        "cgroup": cgroups,
    }


def extra_descriptors(pid: int) -> set[int]:
    """Its open descriptors beyond 0-2 (the proxy's socket among them) but
    the hook's `.pth` file, which `site` reads while it runs the hook."""
    hook = hook_path()
    found = set()
    for entry in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            if int(entry) > 2 and os.readlink(f"/proc/{pid}/fd/{entry}") != hook:
                found.add(int(entry))
    return found


def same_binary(pid: int) -> bool:
    """The process runs the binary hydraflow runs on (the argv it gives is checked apart)."""
    try:
        return os.readlink(f"/proc/{pid}/exe") == os.path.realpath(sys.executable)
    except OSError:
        return False


@contextlib.contextmanager
def handed_off(
    warm: WarmInterpreter | None,
    per_command: Sequence[str],
    params_file: Path | None = None,
) -> Iterator[Handoff | None]:
    """The hand-off while a job runs (with `params_file`, one run of a submit
    handler on it), HYDRAFLOW_HANDOFF set meanwhile (for a submit job in
    hydraflow's environment, else in the warm interpreter's only); None (and
    nothing set) when commands start cold."""
    if warm is None:
        yield None
        return
    reason = WarmInterpreter.refusal([], os.environ)
    handoff = None
    try:
        handoff = None if reason is not None else Handoff(warm, per_command, params_file)
    except OSError as error:  # no Unix sockets here (a sandbox), say
        reason = f"the hand-off's socket could not be made ({error.strerror or error})"
    if handoff is None:
        warm.refuse(str(reason))
        yield None
        return
    # A handler's children find it in their environment; the workers of a
    # warm command, in the warm interpreter's (their command's is left as cold).
    where = os.environ if params_file is not None else warm.advertised
    where[HANDOFF_ENV] = handoff.variable
    try:
        yield handoff
    finally:
        where.pop(HANDOFF_ENV, None)
        handoff.close()
