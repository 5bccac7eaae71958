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

Whatever cannot be made the same starts cold, as before (`WarmInterpreter.refusal`)."""

from __future__ import annotations

import ast
import builtins
import contextlib
import dataclasses
import functools
import gc
import importlib
import importlib.machinery
import importlib.util
import json
import os
import re
import select
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NoReturn, cast

from hydraflow.handoff_hook import HANDOFF_ENV
from hydraflow.warm_proxy import read_message, send_message

COLD_ENV = "HYDRAFLOW_COLD"
# Heavy modules every hydraflow app imports; never the user's own. A
# failure of these means the warm interpreter cannot be what a fresh one is.
PRELOAD = ("omegaconf", "hydra", "mlflow", "hydraflow")
# What an app imports later, as it runs its first job: imported ahead on a
# best-effort basis (a module that is not there is left to the app).
WARM_UP = (
    "hydra._internal.hydra",
    "hydra._internal.utils",
    "hydra._internal.logging_config",
    "mlflow.tracking.fluent",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.tracking.sqlalchemy_workspace_store",
    "mlflow.store.tracking.file_store",
    "mlflow.tracing.processor.otel",
    "filelock",
)
# Packages whose every public module is imported ahead: hydraflow's side of
# an app and Hydra's own plugins (which Hydra's scan imports in every app).
WARM_UP_PACKAGES = ("hydraflow.tracking", "hydra._internal.core_plugins")
PRELOADED_IMPORT = re.compile(
    rb"^\s*(from\s+|import\s+([\w.]+\s*,\s*)*)(hydraflow|hydra|mlflow|omegaconf)\b", re.M
)
MLFLOW_SESSION_ENV = "_MLFLOW_TELEMETRY_SESSION_ID"
# Hydra scans this namespace for plugins in every app: the installed ones are
# imported ahead (best effort: a plugin that fails fails again, as in a fresh app).
PLUGIN_NAMESPACE = "hydra_plugins"
READY_SECONDS = 120.0
# A server whose socket closed unasked is gone, or soon: waited for this long.
SERVER_END_SECONDS = 10.0
# Notes the modules a fresh interpreter starts with, and drops the '' that
# `-c` puts first on sys.path: the server imports nothing from the directory.
SERVER_CODE = (
    "import sys\n"
    "startup = frozenset(sys.modules)\n"
    "sys.flags.safe_path or sys.path.pop(0)\n"
    "__import__('hydraflow.runner.executors.warm', fromlist=['serve']).serve(startup)\n"
)


# --- hydraflow's side -------------------------------------------------------


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


def without(environment: Mapping[str, str], names: Sequence[str]) -> dict[str, str]:
    return {k: v for k, v in environment.items() if k not in names}


def ending(returncode: int | None) -> str:
    """How a process ended, as a person would say it."""
    if returncode is None:
        return "its socket closed, the process still there"
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-returncode).name}"
        return f"killed by signal {-returncode}"
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


# --- the server's side ------------------------------------------------------


@dataclass
class Pristine:
    """The interpreter's state before the preload, restored in every child."""

    path: list[str]
    modules: frozenset[str]
    startup_modules: frozenset[str]
    handlers: dict[int, Any]
    fds: set[int]
    warnings: list[tuple[Warning | str, type[Warning], str, int]]
    environ: dict[str, str]
    started_environ: dict[str, str]


def serve(startup_modules: frozenset[str]) -> NoReturn:
    """The server's main: preloads, then forks a child per request until
    hydraflow closes the socket. Returns only in a child, after running its command."""
    control = socket.socket(fileno=int(sys.argv[1]))
    pristine = Pristine(
        path=list(sys.path),
        modules=frozenset(),
        startup_modules=frozenset(name.partition(".")[0] for name in startup_modules),
        handlers={s: signal.getsignal(s) for s in signal.valid_signals() if is_catchable(s)},
        fds=set(),
        warnings=[],
        environ={},
        started_environ=dict(os.environ),
    )
    script_imports: list[str] = json.loads(sys.argv[2]) if len(sys.argv) > 2 else []
    imported: list[str] = []
    failure = "threads before the preload (forking is unsafe then)" if threaded() else None
    failure = failure or preload(pristine, script_imports, imported)
    if failure is None and threaded():
        failure = "the preload started threads (forking is unsafe then)"
    if failure is not None:
        send_message(control, {"ready": False, "reason": failure})
        os._exit(0)
    remember_module_files()
    pristine.fds = open_descriptors() - {0, 1, 2, control.fileno()}
    pristine.environ = dict(os.environ)
    pristine.modules = frozenset(sys.modules)
    # The preloaded objects stay out of the collector's way: a child's
    # collections neither walk them nor copy their pages.
    gc.freeze()
    send_message(control, {"ready": True, "imported": imported})
    child = Server(control, pristine).loop()
    if child is None:
        os._exit(0)  # nothing to finalize: the server only preloaded
    child.run()


def remember_module_files() -> None:
    """Which preloaded module is the project's, as every command's inputs
    manifest asks of each of its thousands of modules (15 ms a command)."""
    from hydraflow.tracking import inputs

    inputs.classify_loaded_modules()


def threaded() -> bool:
    """Python threads besides this one: a fork copies the locks they hold.
    (Native threads of the preloaded libraries are let be: OpenBLAS, arrow's
    jemalloc and polars prepare for a fork; see docs/internals.md.)"""
    return threading.active_count() > 1


def is_catchable(signum: int) -> bool:
    return signum not in (signal.SIGKILL, signal.SIGSTOP)


def preload(pristine: Pristine, script_imports: Sequence[str], imported: list[str]) -> str | None:
    """Imports the heavy modules, then the script's leading imports of
    installed libraries (into `imported`); the reason if one fails. Warnings
    they show are kept, to be shown by each command, where a fresh app shows
    them (the filters they add stay: `catch_warnings` would drop them)."""
    show = warnings.showwarning
    warnings.showwarning = lambda message, category, filename, lineno, *_: pristine.warnings.append(
        (message, category, filename, lineno)
    )
    try:
        with collector_paused():
            for name in PRELOAD:
                try:
                    importlib.import_module(name)
                except BaseException as error:
                    return f"preloading {name} failed ({type(error).__name__}: {error})"
            warm_up()
            gc.freeze()
        return preload_script_imports(script_imports, imported)
    finally:
        warnings.showwarning = show


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic collector off while hydraflow's own modules load, then
    their objects frozen: its passes over a heap growing to 500,000 objects
    took a quarter of the preload (0.4 of 1.5 s), and what they would have
    freed (some 3,000 objects of MLflow's, nothing with a finalizer) is
    only memory. The script's imports load with it on, as in a fresh app."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def preload_script_imports(names: Sequence[str], imported: list[str]) -> str | None:
    """What the script imports first thing (`leading_imports`), as it would:
    installed libraries only, stopping at the first module of the user's own
    (never preloaded: an edit takes effect, and its code runs before the
    imports after it). The reason if one fails, or prints as it loads (a
    fresh app shows that output; a warm one could not)."""
    with output_watched() as printed:
        failure = import_installed(names, imported)
        if failure is None and printed():
            failure = "the script's imports print as they load (a fresh app shows it)"
    return failure


def import_installed(names: Sequence[str], imported: list[str]) -> str | None:
    for name in names:
        module, _, attribute = name.partition(":")
        target = f"{module}.{attribute}" if attribute else module
        if target in sys.modules:
            continue
        try:
            installed = is_installed(target)
            if installed:
                importlib.import_module(target)
                imported.append(target)
        except BaseException as error:
            return f"preloading the script's import {target} failed ({type(error).__name__})"
        if not installed and not attribute:
            break  # `from pkg import name` where name is not a module goes on
    return None


def is_installed(name: str) -> bool:
    """A module of the installation (site-packages, the standard library),
    found without running the user's code: its top-level package is looked
    up on sys.path first, and only an installed one is imported to find the rest."""
    from hydraflow.tracking.inputs import project_file

    top = name.partition(".")[0]
    for part in (top, name) if top != name else (top,):
        try:
            spec = importlib.util.find_spec(part)
        except ModuleNotFoundError:  # a parent that is a module, not a package
            return False
        if spec is None:
            return False
        paths = [spec.origin] if spec.has_location and spec.origin else []
        paths += list(spec.submodule_search_locations or [])
        if any(project_file(os.path.join(path, "")) is not None for path in paths):
            return False
    return True


@contextlib.contextmanager
def output_watched() -> Iterator[Callable[[], bool]]:
    """The server's stdout and stderr, down to their descriptors, into a
    scratch file; yields whether anything was written there."""
    flush_streams()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as scratch:
        os.dup2(scratch.fileno(), 1)
        os.dup2(scratch.fileno(), 2)

        def printed() -> bool:
            flush_streams()
            return os.fstat(scratch.fileno()).st_size > 0

        try:
            yield printed
        finally:
            with contextlib.suppress(Exception):
                flush_streams()
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)


def flush_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        stream.flush()


def warm_up() -> None:
    """The modules an app imports as it runs, best effort: one that fails
    here fails again in the app, as in a fresh one."""
    import pkgutil

    names = list(WARM_UP)
    for package in (*WARM_UP_PACKAGES, PLUGIN_NAMESPACE):
        with contextlib.suppress(Exception):
            path = importlib.import_module(package).__path__
            names += [module.name for module in pkgutil.walk_packages(path, f"{package}.")]
    for name in names:
        if name.rpartition(".")[2].startswith("_"):
            continue  # private: Hydra's scan leaves these to the plugin
        with contextlib.suppress(Exception):
            importlib.import_module(name)


def open_descriptors() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


class Server:
    """The loop: a request forks a child; a child's end is reported to hydraflow."""

    def __init__(self, control: socket.socket, pristine: Pristine) -> None:
        self.control = control
        self.pristine = pristine
        self.selector = selectors.DefaultSelector()
        self.selector.register(control, selectors.EVENT_READ)
        # pidfd -> (pid, the command's status socket)
        self.children: dict[int, tuple[int, socket.socket]] = {}

    def loop(self) -> Child | None:
        """Serves until the socket closes (None), or returns in a forked child."""
        while True:
            for key, _ in self.selector.select():
                if key.fileobj is self.control:
                    fds: list[int] = []
                    message = read_message(self.control, fds)
                    if message is None:
                        return None
                    child = self.fork(message, fds)
                    if child is not None:
                        return child
                else:
                    self.reap(int(key.fd))

    def fork(self, message: dict[str, Any], fds: list[int]) -> Child | None:
        status = socket.socket(fileno=fds.pop(3))
        # The command's descriptors by the number it has them at: 0-2, then any passed.
        numbers = [0, 1, 2, *message.get("passed", [])]
        given = dict(zip(numbers, fds, strict=False))
        refusal = self.refusal(message, len(given) == len(fds) == len(numbers))
        if refusal is not None:
            send_message(status, {"refused": refusal})
            close_all(*fds, status.detach())
            return None
        in_session, session_ready = os.pipe()
        with warnings.catch_warnings():
            # Python 3.12+ warns of forking a process with native threads
            # (the preloaded libraries'; see `threaded`): not the command's warning.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            os.setsid()
            os.close(session_ready)  # hydraflow may signal the child's group now
            os.close(in_session)
            self.leave(status)
            return Child(message, given, self.pristine)
        os.close(session_ready)
        os.read(in_session, 1)
        os.close(in_session)
        close_all(*fds)
        pidfd = os.pidfd_open(pid)
        self.children[pidfd] = (pid, status)
        self.selector.register(pidfd, selectors.EVENT_READ)
        send_message(status, {"pid": pid})
        self.open_store_ahead(message)
        return None

    @staticmethod
    def open_store_ahead(message: dict[str, Any]) -> None:
        """While the command runs, the store it records its runs in is
        opened for the commands forked after it, which would each open it
        first (40 ms). Best effort: a command opens what is not opened here."""
        from hydraflow import store

        name = job_name(message["args"])
        if name is None:
            return
        launch_dir = Path(message["cwd"])
        with contextlib.suppress(Exception):
            store.open_ahead(store.tracking_uri(None, launch_dir), name, launch_dir)

    def refusal(self, message: dict[str, Any], all_given: bool) -> str | None:
        """Why this command cannot start warm after all."""
        if threaded():
            return "the warm interpreter has threads (forking is unsafe then)"
        if not all_given:
            return "the descriptors it is given did not all arrive"
        taken = self.pristine.fds.intersection(message.get("passed", []))
        if taken:  # a preloaded library holds that number: it cannot be the command's
            return f"it is given descriptor {min(taken)}, which the warm interpreter holds"
        directory = first_path(message)
        if directory is not None:
            shadowed = shadowed_modules(directory, self.pristine)
            if shadowed:
                return f"{directory} has modules of the names it preloaded ({', '.join(shadowed)})"
        return None

    def reap(self, pidfd: int) -> None:
        pid, status = self.children.pop(pidfd)
        self.selector.unregister(pidfd)
        os.close(pidfd)
        _, wait_status = os.waitpid(pid, 0)
        with status, contextlib.suppress(OSError):
            send_message(status, {"status": wait_status})

    def leave(self, own_status: socket.socket) -> None:
        """In the child: closes the server's sockets as objects, so no fd
        number the command opens later is closed by their finalizers."""
        self.selector.close()
        for pidfd, (_, status) in self.children.items():
            os.close(pidfd)
            status.close()
        own_status.close()
        self.control.close()


def job_name(args: Sequence[str]) -> str | None:
    """The `hydra.job.name=JOB` hydraflow gives each command (the experiment)."""
    names = [arg.partition("=")[2] for arg in args if arg.startswith("hydra.job.name=")]
    return names[-1] if names else None


def close_all(*fds: int) -> None:
    for fd in fds:
        os.close(fd)


def first_path(message: dict[str, Any]) -> str | None:
    """The command's `sys.path[0]`, as Python computes it (None with -P)."""
    if sys.flags.safe_path:
        return None
    if message["kind"] == "module":
        return str(message["cwd"])
    script = os.path.join(str(message["cwd"]), str(message["name"]))
    return os.path.dirname(os.path.realpath(script))


def shadowed_modules(directory: str, pristine: Pristine) -> list[str]:
    """Preloaded top-level modules the command's directory has its own of:
    a fresh app would import those."""
    try:
        entries = os.listdir(directory)
    except OSError:
        return []
    names = {entry.removesuffix(".py") for entry in entries if entry.endswith(".py")}
    names |= {e for e in entries if os.path.isfile(os.path.join(directory, e, "__init__.py"))}
    preloaded = {name.partition(".")[0] for name in sys.modules} - pristine.startup_modules
    return sorted(n for n in names & preloaded if n.isidentifier() and n != "__main__")


class Child:
    """A forked command made the same as a fresh `python`, then run and
    ended as Python ends: the exit status, threads joined, atexit handlers,
    the command's own objects finalized, the streams flushed."""

    def __init__(self, message: dict[str, Any], given: dict[int, int], pristine: Pristine) -> None:
        self.message = message
        self.given = given  # the command's descriptors: its number -> the fd received
        self.pristine = pristine

    def run(self) -> NoReturn:
        self.become_fresh()
        try:
            self.execute()
            status = 0
        except SystemExit as exit_request:
            status = system_exit_status(exit_request)
        except BaseException as error:
            report_uncaught(error)
            if isinstance(error, KeyboardInterrupt):
                finalize(self.pristine)
                die_of_sigint()
            status = 1
        os._exit(finalize(self.pristine) or status)

    def become_fresh(self) -> None:
        place_descriptors(self.given)
        for fd in open_descriptors() - set(self.given) - self.pristine.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        for signum, handler in self.pristine.handlers.items():
            if signal.getsignal(signum) is not handler and handler is not None:
                signal.signal(signum, handler)
        take_signal_state(self.message)
        message = self.message
        os.chdir(message["cwd"])
        set_environment(message["env"], self.pristine)
        sys.executable = message["executable"]
        sys.orig_argv = list(message["orig_argv"])
        first = first_path(message)
        sys.path[:] = ([] if first is None else [first]) + self.pristine.path
        importlib.invalidate_caches()
        reseed()
        renew_mlflow_telemetry()
        for shown in self.pristine.warnings:
            warnings.showwarning(*shown)

    def execute(self) -> None:
        message = self.message
        namespace = sys.modules["__main__"].__dict__
        namespace.clear()
        namespace.update(
            __name__="__main__",
            __doc__=None,
            __package__=None,
            __loader__=importlib.machinery.BuiltinImporter,
            __spec__=None,
            __annotations__={},
            __builtins__=builtins,
        )
        if message["kind"] == "module":
            import runpy

            if message.get("pool_pid"):
                known_to_its_pool_as(message["name"], int(message["pool_pid"]))
            sys.argv = ["-m", *message["args"]]
            run_module_as_main: Callable[[str], None] = runpy._run_module_as_main  # type: ignore[attr-defined]
            run_module_as_main(message["name"])
            return
        path = os.path.join(os.getcwd(), message["name"])
        sys.argv = [message["name"], *message["args"]]
        namespace.update(
            __file__=path,
            __cached__=None,
            __loader__=importlib.machinery.SourceFileLoader("__main__", path),
        )
        with open(path, "rb") as file:
            source = file.read()
        code = compile(source, path, "exec", dont_inherit=True)
        exec(code, namespace)


def take_signal_state(message: dict[str, Any]) -> None:
    """What a process another started keeps through its exec: the signals
    its parent ignored stay ignored (Python leaves an ignored SIGINT so),
    and its mask of blocked signals."""
    for signum in message.get("ignored", []):
        with contextlib.suppress(OSError, ValueError):
            signal.signal(signum, signal.SIG_IGN)
    blocked = message.get("blocked")
    if blocked is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def place_descriptors(given: dict[int, int]) -> None:
    """Each received descriptor onto the number the command has it at,
    inheritable, as a parent's would be."""
    import fcntl

    # First above every wanted number, so that no move lands on another's.
    floor = max(given) + 1
    lifted = {number: fcntl.fcntl(fd, fcntl.F_DUPFD, floor) for number, fd in given.items()}
    close_all(*given.values())
    for number, fd in lifted.items():
        os.dup2(fd, number)
        os.close(fd)


class PidKnownToThePool:
    """`os` for loky's worker loop, but for the pid it reads (once, to tell
    its pool it leaves): the proxy's, by which its pool knows it, as the
    pool knows a cold worker by its own."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def getpid(self) -> int:
        return self.pid

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


def known_to_its_pool_as(worker_module: str, pid: int) -> None:
    """For a warm pool worker: loky's worker loop tells its pool it leaves
    (idle past its timeout, or restarted for memory) by `os.getpid()`, and
    the pool looks it up by the pid of the process it started (the proxy);
    a pid it does not know leaves it waiting 30 s, then broken. The loop
    also measures its memory by that pid (with psutil): that stays its own. The package
    is what running the module imports first anyway (its `__init__` imports
    the worker loop's module)."""
    package = worker_module.rpartition(".backend.")[0]
    loop = importlib.import_module(f"{package}.process_executor")
    loop.os = PidKnownToThePool(pid)  # type: ignore[attr-defined]
    measure = getattr(loop, "_get_memory_usage", None)
    if measure is not None:  # the loop measures its memory by that pid too: the worker's own
        loop._get_memory_usage = lambda _, force_gc=False: measure(os.getpid(), force_gc)  # type: ignore[attr-defined]


def system_exit_status(exit_request: SystemExit) -> int:
    """As Python ends on SystemExit: None is 0, a number is itself, anything
    else is printed to stderr and means 1."""
    code = exit_request.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    with contextlib.suppress(Exception):
        sys.stderr.write(f"{code}\n")
    return 1


def finalize(pristine: Pristine) -> int:
    """Python's finalization for what the command made: its threads joined,
    the atexit handlers, its modules' objects released (an unclosed file is
    flushed, `__del__` runs), the streams flushed; 120 if they cannot be,
    as Python says. The preloaded modules are not torn down: they are the
    server's, and tearing them down costs seconds of copied pages."""
    shutdown: Callable[[], None] | None = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
    import atexit

    atexit._run_exitfuncs()
    release_modules(pristine)
    status = 0
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            status = 120
    return status


def release_modules(pristine: Pristine) -> None:
    """As Python tears modules down, for `__main__` and the modules the
    command imported: out of sys.modules and a collection (what only they
    held goes, with their globals intact), then the names of those still
    alive set to None, in reverse import order, and a last collection."""
    names = ["__main__", *(n for n in sys.modules if n not in pristine.modules)]
    alive = [weakref.ref(module) for n in names if (module := sys.modules.pop(n, None))]
    gc.collect()
    for reference in reversed(alive):
        module = reference()
        if module is not None:
            clear_names(vars(module))
    gc.collect()


def clear_names(namespace: dict[str, Any]) -> None:
    """Python's way: names with one leading underscore first, then the rest,
    each set to None (code that runs later, a callback, finds None, not a NameError)."""
    for key in [k for k in namespace if k.startswith("_") and not k.startswith("__")]:
        namespace[key] = None
    for key in [k for k in namespace if k != "__builtins__"]:
        namespace[key] = None


def set_environment(environment: dict[str, str], pristine: Pristine) -> None:
    """The command's environment, with what Python added at start-up (LC_CTYPE
    when it coerces the C locale) and what the preloaded modules set or
    changed at import (pyarrow appends its allocator settings to a variable
    the command may have already), as a fresh app has them."""
    made = {
        key: value
        for key, value in pristine.environ.items()
        if key not in environment or pristine.started_environ.get(key) != value
    }
    made.pop(MLFLOW_SESSION_ENV, None)  # one per process: renewed below
    made.pop(HANDOFF_ENV, None)  # the server's own (`WarmInterpreter.advertised`)
    os.environ.clear()
    os.environ.update(environment)
    os.environ.update(made)


def renew_mlflow_telemetry() -> None:
    """MLflow makes its telemetry client, with a session id of the process's
    own, when it is imported: each command makes its own, as a fresh one would."""
    telemetry = sys.modules.get("mlflow.telemetry.client")
    if telemetry is not None:
        telemetry.set_telemetry_client()


def reseed() -> None:
    """Generators seeded once per process: a fresh one seeds from the system.
    (`random` reseeds itself after a fork; numpy's global one does not.)"""
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()


def report_uncaught(error: BaseException) -> None:
    """As Python reports an uncaught exception: sys.excepthook, with the
    traceback from the command's own first frame (never the server's)."""
    here = {__file__, "<string>"}
    traceback = error.__traceback__
    while traceback is not None and traceback.tb_frame.f_code.co_filename in here:
        traceback = traceback.tb_next
    sys.excepthook(type(error), error.with_traceback(traceback), traceback)


def die_of_sigint() -> NoReturn:
    """As Python ends after an uncaught KeyboardInterrupt: killed by SIGINT,
    so the parent sees the signal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(1)
    os._exit(128 + signal.SIGINT)
