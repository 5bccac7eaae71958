"""The start-up hook of the hand-off, called by `hydraflow_handoff.pth` (at
the root of site-packages) only when HYDRAFLOW_HANDOFF is set: hydraflow sets
it, for the processes a job starts, as `HYDRAFLOW_PID:KINDS:SOCKET`, the
socket in a private directory. KINDS names what may ask:

- `commands`: a submit handler's direct `python SCRIPT ...` or `python -m
  MODULE ...` children (their parent's parent is that hydraflow);
- `workers`: the workers a process pool (joblib's loky, which Hydra's joblib
  launcher uses) starts for a warm command (their parent's parent's parent
  is that hydraflow, through its warm interpreter).

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
    owner, _, rest = os.environ.get(HANDOFF_ENV, "").partition(":")
    kinds, _, path = rest.partition(":")
    if path and may_ask(owner, kinds.split(","), sys.orig_argv):
        from hydraflow.warm_proxy import Proxy

        Proxy(path, owner).run()


def may_ask(owner: str, kinds: list[str], argv: list[str]) -> bool:
    grandparent = parent_of(str(os.getppid()))
    if grandparent == owner:
        return COMMANDS in kinds and runs_a_script(argv)
    return WORKERS in kinds and is_pool_worker(argv) and parent_of(grandparent) == owner


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
