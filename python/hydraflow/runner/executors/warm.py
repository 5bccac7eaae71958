"""Commands started from a warm interpreter: `python app.py ...` and
`python -m pkg ...` with hydraflow's own interpreter are forked from a
server process that has already imported Hydra, OmegaConf, MLflow and
hydraflow, instead of paying those imports (about 2.5 s) in every command.

The server is a plain `python -c` child of hydraflow (standard library
only: `os.fork`, `socket.send_fds`, `os.pidfd_open`, `runpy`). hydraflow
sends it one request per command over a Unix socket: the command line, the
working directory, the environment, and the child's stdin, stdout and stderr
as file descriptors. The server forks; the child makes itself what a fresh
`python` would be (own session, the descriptors on 0-2 and no others, the
directory, the environment, `sys.argv`, `sys.path[0]`, a pristine `__main__`,
reseeded generators) and runs the script; its exit goes through Python's own
finalization, so `sys.exit`, atexit handlers and threads behave as usual.
The server reports the child's pid, then its wait status, on a socket of the
command's own, so hydraflow waits for it as for a `subprocess.Popen`.

Whatever cannot be made the same starts cold, as before (`WarmInterpreter.refusal`).
This module is hydraflow's side; the server's is `warm_server.py`."""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, cast

from hydraflow.signals import signal_name
from hydraflow.warm_proxy import read_message, send_message

COLD_ENV = "HYDRAFLOW_COLD"
PRELOADED_IMPORT = re.compile(
    rb"^\s*(from\s+|import\s+([\w.]+\s*,\s*)*)(hydraflow|hydra|mlflow|omegaconf)\b", re.M
)
MLFLOW_SESSION_ENV = "_MLFLOW_TELEMETRY_SESSION_ID"
READY_SECONDS = 120.0
# A server whose socket closed unasked is gone, or soon: waited for this long.
SERVER_END_SECONDS = 10.0
# Notes the modules a fresh interpreter starts with, and drops the '' that
# `-c` puts first on sys.path: the server imports nothing from the directory.
SERVER_CODE = (
    "import sys\n"
    "startup = frozenset(sys.modules)\n"
    "sys.flags.safe_path or sys.path.pop(0)\n"
    "__import__('hydraflow.runner.executors.warm_server', fromlist=['serve']).serve(startup)\n"
)


@dataclass(frozen=True)
class Target:
    """What a `python` command line runs: a script or a module, and its arguments."""

    executable: str
    kind: str  # "script" or "module"
    name: str
    args: tuple[str, ...]
    # The modules a script imports before its first other statement: the
    # installed ones are preloaded too, when this command starts the server.
    imports: tuple[str, ...] = ()


def python_target(argv: Sequence[str], environment: Mapping[str, str]) -> Target | str:
    """The script or module a command runs with this very interpreter, or
    why a warm start could not be the same as a fresh `python`."""
    found = shutil.which(argv[0], path=environment.get("PATH")) if argv else None
    if found is None or not same_interpreter(found):
        return f"'{argv[0] if argv else ''}' is not the interpreter hydraflow runs on"
    executable = os.path.abspath(found)
    if len(argv) < 2:
        return "the interpreter is started without a script"
    if argv[1] == "-m" and len(argv) > 2:
        return Target(executable, "module", argv[2], tuple(argv[3:]))
    if argv[1].startswith("-"):
        return f"interpreter options ({argv[1]}) need a fresh interpreter"
    script = argv[1]
    if not os.path.isfile(script) or script.endswith((".pyc", ".pyz", ".zip")):
        return f"'{script}' is not a Python source file"
    source = read_source(script)
    if PRELOADED_IMPORT.search(source) is None:
        # Only then does the warm interpreter save time (a plain script starts in 50 ms).
        return f"'{script}' imports none of Hydra, MLflow, hydraflow (a fresh start is quicker)"
    return Target(executable, "script", script, tuple(argv[2:]), leading_imports(source))


def read_source(script: str) -> bytes:
    try:
        with open(script, "rb") as file:
            return file.read(1 << 20)
    except OSError:
        return b""


def leading_imports(source: bytes) -> tuple[str, ...]:
    """The modules a script imports before any statement of its own runs, in
    order: its docstring, `from __future__` and import statements up to the
    first other statement. For `from pkg import name`, `pkg:name` follows
    `pkg` (preloaded as `pkg.name` if that is a submodule). The server preloads the installed ones,
    stopping at the first that is not (the user's own module runs code that
    may matter to the imports after it, such as setting OMP_NUM_THREADS)."""
    try:
        body = ast.parse(source).body
    except (SyntaxError, ValueError):
        return ()
    first = body[0] if body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        body = body[1:]  # the docstring
    names: list[str] = []
    for statement in body:
        if isinstance(statement, ast.Import):
            names += [alias.name for alias in statement.names]
        elif isinstance(statement, ast.ImportFrom) and statement.level == 0 and statement.module:
            if statement.module != "__future__":
                module = statement.module
                names += [module, *(f"{module}:{a.name}" for a in statement.names if a.name != "*")]
        else:
            break
    return tuple(dict.fromkeys(names))


def same_interpreter(found: str) -> bool:
    """The same binary in the same directory (so the same venv) as ours."""
    here = os.path.abspath(sys.executable)
    there = os.path.abspath(found)
    same_binary = os.path.realpath(there) == os.path.realpath(here)
    return same_binary and os.path.dirname(there) == os.path.dirname(here)


@dataclass(frozen=True)
class Inherited:
    """What a process another started (a handler's command, a pool's worker)
    got from that parent, for the warm process that stands for it."""

    stdio: Sequence[int]  # its stdin, stdout and stderr (ours, still the caller's)
    cwd: str
    passed: Mapping[int, int] = dataclasses.field(default_factory=dict)  # its number -> ours
    pool_pid: int | None = None  # a pool worker's: the pid its pool knows it by (its proxy's)
    ignored: Sequence[int] = ()  # the signals it started with ignored,
    blocked: Sequence[int] = ()  # and blocked: exec keeps both


class WarmProcess:
    """A command forked by the warm server, waited for as a `subprocess.Popen`:
    `pid`, `stdout`, `stderr`, `wait()`, `returncode` (negative: a signal).

    If the server ends before the command (killed, say), the command runs on:
    hydraflow, the subreaper of its descendants, becomes its parent and waits
    for it itself (`orphaned`), so its end and its status are never lost."""

    def __init__(
        self,
        pid: int,
        status: socket.socket | None,
        stdout: IO[bytes] | None,
        stderr: IO[bytes] | None,
        server_lost: Callable[[], None] = lambda: None,
    ):
        self.pid = pid
        self.status = status
        self.stdout: IO[bytes] | None = stdout
        self.stderr: IO[bytes] | None = stderr
        self.returncode: int | None = None
        self.server_lost = server_lost
        # Holds the command's identity (its pid could be reused once it is reaped).
        self.pidfd = open_pidfd(pid)

    def wait(self) -> int:
        if self.returncode is None:
            reply = None
            if self.status is not None:
                with self.status:
                    reply = read_message(self.status)
            wait_status = None if reply is None else reply.get("status")
            if wait_status is None:  # the server ended before the command
                self.server_lost()
                wait_status = self.orphaned()
            self.returncode = 1 if wait_status is None else os.waitstatus_to_exitcode(wait_status)
            if self.pidfd is not None:
                os.close(self.pidfd)
                self.pidfd = None
        return self.returncode

    def orphaned(self) -> int | None:
        """The command's wait status, now that hydraflow is its parent (None
        if it cannot be: no subreaper; then its end is still awaited)."""
        if self.pidfd is None:
            return None
        try:
            result = os.waitid(os.P_PIDFD, self.pidfd, os.WEXITED)
        except ChildProcessError:
            select.select([self.pidfd], [], [])
            return None
        if result is None:
            return None
        if result.si_code == os.CLD_EXITED:
            return int(result.si_status) << 8
        return int(result.si_status)  # killed (or dumped core) by this signal


def open_pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except OSError:  # it already ended, and was reaped by the server
        return None


# prctl(2): descendants orphaned by the server's end are reparented to us.
PR_SET_CHILD_SUBREAPER, PR_GET_CHILD_SUBREAPER = 36, 37


def set_subreaper(on: bool) -> bool:
    """Makes hydraflow the subreaper of its descendants (or no longer); whether it was before."""
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        was = ctypes.c_int(0)
        prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(was), 0, 0, 0)
        prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0)
    except (OSError, AttributeError):
        return False
    return bool(was.value)


class WarmStartLost(Exception):
    """The server (its command line, `args[0]`) ended between a request with
    given descriptors and its reply: the command may have started, and must
    not start again."""


class WarmInterpreter:
    """The warm server of one `hydraflow run`: started at the first command
    it can run, used for every command it can run the same as a fresh
    `python`, stopped at the end. `start` returns None for a command that
    must start cold; `refusals` says why, each reason once. A server that
    ends unasked (killed) is said with `alert`, always, once: the commands
    it forked run on and are waited for (`WarmProcess`), later ones start cold."""

    def __init__(
        self,
        note: Callable[[str], None] | None = None,
        stopping: Callable[[], bool] = lambda: False,
        alert: Callable[[str], None] | None = None,
        serves: str = "commands",
    ) -> None:
        self.serves = serves  # what it starts, as the notes say: "commands", "pool workers"
        self.note = note or (lambda text: None)
        self.alert = alert or self.note
        # Asked while the preload is awaited: a Ctrl-C meanwhile stops the wait.
        self.stopping = stopping
        self.refusals: list[str] = []
        self.server: subprocess.Popen[bytes] | None = None
        self.control: socket.socket | None = None
        self.environment: dict[str, str] | None = None
        self.broken: str | None = None
        self.lock = threading.Lock()
        self.lost_lock = threading.Lock()
        self.was_subreaper: bool | None = None
        self.script_imports: tuple[str, ...] = ()  # those the server preloads
        # Variables of the server's own environment, never of its commands'
        # (the hand-off's, which the workers of its commands read there).
        self.advertised: dict[str, str] = {}

    def another(self, serves: str) -> WarmInterpreter:
        """A second server, for processes of another environment (a pool's
        workers, which it limits to one thread): preloaded in theirs, with
        the same script imports, its notes said alike."""
        other = WarmInterpreter(self.note, self.stopping, self.alert, serves)
        other.script_imports = self.script_imports
        return other

    def serves_environment(
        self, environment: Mapping[str, str], per_command: Sequence[str]
    ) -> bool:
        """Whether the running server was started in this environment."""
        with self.lock:
            return self.environment == without(environment, per_command)

    def refuse(self, reason: str) -> None:
        if reason not in self.refusals:
            self.refusals.append(reason)
            self.note(f"{self.serves} start cold: {reason}")

    def start(
        self,
        argv: Sequence[str],
        environment: Mapping[str, str],
        per_command: Sequence[str],
        inherited: Inherited | None = None,
    ) -> WarmProcess | None:
        """Forks the command from the warm server; None if it must start cold.
        With `inherited` (the hand-off's), it gets what its own parent gave
        it, its standard streams included, instead of pipes to hydraflow."""
        reason = self.refusal(argv, environment)
        target = python_target(argv, environment) if reason is None else reason
        if isinstance(target, str):
            self.refuse(target)
            return None
        shared = without(environment, per_command)
        with self.lock:
            if self.control is None and self.broken is None:
                self.script_imports = target.imports or self.script_imports
                self.launch_server(shared, self.script_imports)
            if self.broken is not None:
                self.refuse(self.broken)
                return None
            if shared != self.environment:
                self.refuse("the environment changed after the warm interpreter started")
                return None
            return self.request(target, argv, environment, inherited)

    @property
    def server_pid(self) -> int | None:
        """The running server's pid: the parent of every command it forked."""
        server = self.server
        return None if server is None or self.control is None else server.pid

    @staticmethod
    def refusal(argv: Sequence[str], environment: Mapping[str, str]) -> str | None:
        if not sys.platform.startswith("linux") or not hasattr(os, "pidfd_open"):
            return "warm start needs Linux"
        if environment.get(COLD_ENV, "") not in ("", "0"):
            return f"{COLD_ENV} is set"
        return None

    def launch_server(self, environment: dict[str, str], imports: Sequence[str] = ()) -> None:
        """Starts the server in its own session (a terminal's Ctrl-C is for
        the commands, which hydraflow forwards) and waits for its preload."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # Its standard streams are a pipe, as each command's are: Python
        # sets up sys.stdout once, by the kind of file it finds.
        read_end, write_end = os.pipe()
        # What the server forked is reparented to hydraflow if the server ends first.
        self.was_subreaper = set_subreaper(True)
        try:
            self.server = subprocess.Popen(
                [sys.executable, "-c", SERVER_CODE, str(theirs.fileno()), json.dumps(imports)],
                stdin=subprocess.DEVNULL,
                stdout=write_end,
                stderr=write_end,
                pass_fds=(theirs.fileno(),),
                env={**environment, **self.advertised},
                start_new_session=True,
            )
        except OSError as error:
            self.broken = f"the warm interpreter could not start ({error.strerror})"
            os.close(read_end)
            return
        finally:
            os.close(write_end)
            theirs.close()
        threading.Thread(target=drain, args=(read_end,), daemon=True).start()
        began = time.monotonic()
        ready = self.await_preload(ours, began + READY_SECONDS)
        if ready is None:
            self.server_lost("preloading")
            ours.close()
            self.stop_server(kill=True)
            return
        if not ready.get("ready"):
            self.broken = str(ready.get("reason"))
            ours.close()
            self.stop_server(kill=True)
            return
        self.control, self.environment = ours, environment
        took = time.monotonic() - began
        imported = ", ".join(ready.get("imported", []))
        also = f", with the script's imports {imported}" if imported else ""
        self.note(f"{self.serves} start from a warm interpreter (preloaded in {took:.1f} s{also})")

    def await_preload(self, sock: socket.socket, deadline: float) -> dict[str, Any] | None:
        """The server's first message; None if it ended, or hydraflow is stopping."""
        while not select.select([sock], [], [], 0.1)[0]:
            if self.stopping():
                return {"reason": "interrupted while the warm interpreter preloaded"}
            if time.monotonic() > deadline:
                return {"reason": f"the preload took more than {READY_SECONDS:.0f} s"}
        try:
            return read_message(sock)
        except OSError:
            return None

    def request(
        self,
        target: Target,
        argv: Sequence[str],
        environment: Mapping[str, str],
        inherited: Inherited | None = None,
    ) -> WarmProcess | None:
        assert self.control is not None
        stdio = None if inherited is None else inherited.stdio
        passed = {} if inherited is None else dict(inherited.passed)
        status_ours, status_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        if stdio is None:
            out_read, out_write = os.pipe()
            err_read, err_write = os.pipe()
            stdin = os.open(os.devnull, os.O_RDONLY)
        else:
            (stdin, out_write, err_write), out_read, err_read = stdio, -1, -1
        message = {
            "executable": target.executable,
            "kind": target.kind,
            "name": target.name,
            "args": list(target.args),
            "orig_argv": list(argv),
            "cwd": os.getcwd() if inherited is None else inherited.cwd,
            "env": dict(environment),
            "passed": list(passed),
            "pool_pid": None if inherited is None else inherited.pool_pid,
            "ignored": [] if inherited is None else list(inherited.ignored),
            "blocked": None if inherited is None else list(inherited.blocked),
        }
        fds = [stdin, out_write, err_write, status_theirs.fileno(), *passed.values()]
        try:
            send_message(self.control, message, fds)
        except OSError:
            pass  # the server is gone: its reply is the end of the status socket
        finally:
            # Ours closed before the reply is awaited: a server that ends
            # before it replies must close the status socket's last other end.
            if stdio is None:  # given ones stay the caller's
                close_all(stdin, out_write, err_write)
            status_theirs.close()
        try:
            reply = read_message(status_ours)
        except OSError:
            reply = None
        pid = None if reply is None else reply.get("pid")
        if reply is None:
            self.server_lost("between commands")
            if stdio is not None:  # no pipe of ours tells whether it forked the command
                status_ours.close()
                server_argv = [] if self.server is None else self.server.args
                raise WarmStartLost([str(arg) for arg in cast(list[str], server_argv)])
            # Ended after it forked the command, before it said so: the
            # command runs (it holds the output pipe), and must not run twice.
            pid = holder_of_pipe(out_read)
        if pid is None:
            close_all(*(fd for fd in (out_read, err_read) if fd >= 0))
            status_ours.close()
            if reply is not None:
                self.refuse(str(reply["refused"]))
            return None
        stdout = os.fdopen(out_read, "rb") if out_read >= 0 else None
        stderr = os.fdopen(err_read, "rb") if err_read >= 0 else None
        status = None if reply is None else status_ours
        if status is None:
            status_ours.close()
        lost = functools.partial(self.server_lost, "running")
        return WarmProcess(int(pid), status, stdout, stderr, lost)

    def server_lost(self, moment: str) -> None:
        """The server ended unasked (`moment`: "preloading", "running" a
        command, or "between commands"): waits for its end, so that what it
        forked is hydraflow's to wait for, and says so once; every later
        command starts cold."""
        server = self.server
        if server is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(timeout=SERVER_END_SECONDS)
        with self.lost_lock:
            if self.broken is not None:
                return
            how = "" if server is None else f" ({ending(server.returncode)})"
            during = " while it preloaded" if moment == "preloading" else ""
            self.broken = f"the warm interpreter ended{during}{how}"
            self.refusals.append(self.broken)  # said here, not again by `refuse`
        then = {
            "preloading": f"{self.serves} start cold",
            "running": f"the {self.serves} it started run on; later ones start cold",
        }.get(moment, f"later {self.serves} start cold")
        self.alert(f"{self.broken}: {then}")

    def close(self) -> None:
        """Stops the server: the end of its socket is its cue."""
        with self.lock:
            if self.control is not None:
                self.control.close()
                self.control = None
            self.stop_server()
            if self.was_subreaper is False:
                set_subreaper(False)
            self.was_subreaper = None

    def stop_server(self, *, kill: bool = False) -> None:
        if self.server is None:
            return
        if kill and self.server.poll() is None:  # never a group whose pid may be reused
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.server.pid, signal.SIGKILL)
        try:
            self.server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.server.pid, signal.SIGKILL)
            self.server.wait()
        self.server = None


def close_all(*fds: int) -> None:
    for fd in fds:
        os.close(fd)


def without(environment: Mapping[str, str], names: Sequence[str]) -> dict[str, str]:
    return {k: v for k, v in environment.items() if k not in names}


def ending(returncode: int | None) -> str:
    """How a process ended, as a person would say it."""
    if returncode is None:
        return "its socket closed, the process still there"
    if returncode < 0:
        return f"killed by {signal_name(-returncode)}"
    return f"exit status {returncode}"


def holder_of_pipe(read_end: int) -> int | None:
    """The process, other than hydraflow, holding the other end of this pipe
    open: a command forked by a server that ended before it said so (its
    session's leader, if the command started processes of its own)."""
    link = f"pipe:[{os.fstat(read_end).st_ino}]"
    holders = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):  # ended meanwhile
            fds = os.listdir(f"/proc/{entry}/fd")
            if any(os.readlink(f"/proc/{entry}/fd/{fd}") == link for fd in fds):
                session = int(proc_stat(entry)[3])
                holders.append((session != int(entry), int(entry)))
    return min(holders)[1] if holders else None


def proc_stat(pid: int | str) -> list[str]:
    """The fields of /proc/PID/stat after the command's name (its state
    first, then its parent, group, session ...); OSError once it is gone."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        return stat.read().rpartition(b")")[2].decode().split()


def drain(fd: int) -> None:
    """Reads the server's own output (nothing, unless a preload prints) so it never blocks."""
    with open(fd, "rb") as pipe:
        for _ in pipe:
            pass
