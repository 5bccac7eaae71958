"""The warm server's own side (`warm.py` is hydraflow's): a `python -c`
process that preloads Hydra, OmegaConf, MLflow and hydraflow (`preload`),
then forks a child per request (`Server`); the child makes itself what a
fresh `python` running the command would be and runs it (`Child`)."""

from __future__ import annotations

import builtins
import contextlib
import gc
import importlib
import importlib.machinery
import importlib.util
import json
import os
import selectors
import signal
import socket
import sys
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from hydraflow.handoff_hook import HANDOFF_ENV
from hydraflow.runner.executors.warm import MLFLOW_SESSION_ENV, close_all
from hydraflow.warm_proxy import read_message, send_message

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
    # GitPython (0.1 s): MLflow's git tags on a new run (tracking/record.standard_tags).
    "git",
)
# Packages whose every public module is imported ahead: hydraflow's side of
# an app and Hydra's own plugins (which Hydra's scan imports in every app).
WARM_UP_PACKAGES = ("hydraflow.tracking", "hydra._internal.core_plugins")
# Hydra scans this namespace for plugins in every app: the installed ones are
# imported ahead (best effort: a plugin that fails fails again, as in a fresh app).
PLUGIN_NAMESPACE = "hydra_plugins"


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
