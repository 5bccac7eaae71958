"""The start-up hook of the hand-off, called by `hydraflow_handoff.pth` (at
the root of site-packages) when HYDRAFLOW_HANDOFF is set, or when Python runs
loky's worker module. The variable's value is `HYDRAFLOW_PID:KINDS:SOCKET`,
SOCKET an abstract socket's name (`@...`: nothing in the file system to
leave behind when hydraflow is killed) or a path; KINDS names what may ask:

- `commands`: a submit handler's direct `python SCRIPT ...` or `python -m
  MODULE ...` children (their parent's parent is that hydraflow), which
  find the variable in their environment (hydraflow sets it for a handler);
- `workers`: the workers a process pool (joblib's loky, which Hydra's joblib
  launcher uses) starts for a warm command (their parent's parent's parent
  is that hydraflow, through its warm interpreter), which find it in the
  warm interpreter's own environment (`/proc/PID/environ`): a `run:` job's
  commands and their workers never see it, as they would not cold.

Only `os` and `sys` here: any other process returns at once.

Otherwise the proxy (warm_proxy.py) asks hydraflow, which checks the rest
(runner/executors/handoff.py). If the command is not taken, the modules the
asking imported are forgotten, and Python goes on cold as if nothing had been
asked; the environment is left as it is (a cold command sees the variable too)."""

import os
import sys

# Nothing else imported at the top (no `__future__` either): a process that
# goes on cold gets back the modules it started with.

HANDOFF_ENV = "HYDRAFLOW_HANDOFF"
COMMANDS, WORKERS = "commands", "workers"
# What `python -m` runs in a worker of loky's process pool (joblib's own copy, or loky's).
POOL_WORKER_MODULES = (
    "joblib.externals.loky.backend.popen_loky_posix",
    "loky.backend.popen_loky_posix",
)


def hand_off() -> None:
    """Returns to go on cold, or never (the command ran warm)."""
    # What a cold start has: the .pth line imported this module and its
    # package (whose `from __future__` import is the only one it makes).
    started_with = set(sys.modules) - {__name__, "hydraflow", "__future__"}
    try:
        ask()
    except KeyboardInterrupt:  # before the proxy caught SIGINT: as cold Python ends
        interrupted()
    except BaseException:  # nothing of the hand-off's may end a cold start
        pass
    finally:
        for name in set(sys.modules) - started_with:
            del sys.modules[name]


def ask() -> None:
    if not standard_streams_open():
        return  # the proxy's socket would take the closed one's number
    argv = sys.orig_argv
    grandparent = parent_of(str(os.getppid()))
    if is_pool_worker(argv):  # the warm interpreter that forked its command says where
        owner, kinds, path = parts(variable_of(grandparent))
        wanted = WORKERS in kinds and parent_of(grandparent) == owner
    else:
        owner, kinds, path = parts(os.environ.get(HANDOFF_ENV, ""))
        wanted = COMMANDS in kinds and grandparent == owner and runs_a_script(argv)
    if path and wanted:
        from hydraflow.warm_proxy import Proxy

        Proxy(path, owner).run()


def standard_streams_open() -> bool:
    """0-2 all open. (Python 3.11 and 3.12 read the `.pth` file on a closed
    one's number while the line runs: hydraflow refuses that by its inode.)"""
    try:
        for fd in (0, 1, 2):
            os.fstat(fd)
    except OSError:
        return False
    return True


def parts(value: str) -> tuple[str, list[str], str]:
    """HYDRAFLOW_HANDOFF's owner, kinds and socket ('' when unset)."""
    owner, _, rest = value.partition(":")
    kinds, _, path = rest.partition(":")
    return owner, kinds.split(","), path


def socket_address(name: str) -> str:
    """The address to connect to: `@NAME` is Linux's abstract socket NAME."""
    return "\0" + name[1:] if name.startswith("@") else name


def variable_of(pid: str) -> str:
    """HYDRAFLOW_HANDOFF in the environment a process started with ('' if
    unset, or unreadable: another user's)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as environ:
            entries = environ.read().split(b"\0")
    except OSError:
        return ""
    prefix = f"{HANDOFF_ENV}=".encode()
    found = [entry[len(prefix) :] for entry in entries if entry.startswith(prefix)]
    return found[0].decode(errors="replace") if found else ""


def interrupted() -> None:
    import signal

    with open(2, "w", closefd=False) as stderr:
        stderr.write("KeyboardInterrupt\n")
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)


def parent_of(pid: str) -> str:
    """The pid of a process's parent ('' if it cannot be read)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[1].decode()
    except (OSError, IndexError):
        return ""


def is_pool_worker(argv: list[str]) -> bool:
    """`python -m <loky's worker module> ...`, as loky starts its workers."""
    return len(argv) > 2 and argv[1] == "-m" and argv[2] in POOL_WORKER_MODULES


def runs_a_script(argv: list[str]) -> bool:
    """`python SCRIPT ...` or `python -m MODULE ...`; no other option."""
    return len(argv) > 1 and (not argv[1].startswith("-") or (argv[1] == "-m" and len(argv) > 2))
