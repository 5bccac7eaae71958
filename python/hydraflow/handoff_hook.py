"""The start-up hook of the submit hand-off, called by `hydraflow_handoff.pth`
(at the root of site-packages) only when HYDRAFLOW_HANDOFF is set: hydraflow
sets it for a submit handler as `HYDRAFLOW_PID:SOCKET`, the socket in a
private directory. Only `os` and `sys` here: a process that is not a
handler's direct `python SCRIPT ...` or `python -m MODULE ...` child (its
parent's parent is not that hydraflow) returns at once.

Otherwise the proxy (warm_proxy.py) asks hydraflow, which checks the rest
(runner/executors/handoff.py). If the command is not taken, the modules the
asking imported are forgotten, and Python goes on cold as if nothing had been
asked; the environment is left as it is (a cold command sees the variable too)."""

import os
import sys

# Nothing else imported at the top (no `__future__` either): a process that
# goes on cold gets back the modules it started with.

HANDOFF_ENV = "HYDRAFLOW_HANDOFF"


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
    owner, _, path = os.environ.get(HANDOFF_ENV, "").partition(":")
    if path and grandparent() == owner and runs_a_script(sys.orig_argv):
        from hydraflow.warm_proxy import Proxy

        Proxy(path, owner).run()


def interrupted() -> None:
    import signal

    with open(2, "w", closefd=False) as stderr:
        stderr.write("KeyboardInterrupt\n")
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)


def grandparent() -> str:
    """The pid of the parent's parent ('' if it cannot be read)."""
    try:
        with open(f"/proc/{os.getppid()}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[1].decode()
    except (OSError, IndexError):
        return ""


def runs_a_script(argv: list[str]) -> bool:
    """`python SCRIPT ...` or `python -m MODULE ...`; no other option."""
    return len(argv) > 1 and (not argv[1].startswith("-") or (argv[1] == "-m" and len(argv) > 2))
