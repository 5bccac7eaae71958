"""Prints what a fresh interpreter would show of itself, as JSON, then ends
the way its first argument says: warm and cold starts must print the same."""

import atexit
import gc
import json
import logging
import os
import random
import signal
import stat
import sys
import warnings

import omegaconf  # noqa: F401 (preloaded, so the probe starts warm)

import __main__

mode = sys.argv[1] if len(sys.argv) > 1 else "return"
helper_was_loaded = "helper" in sys.modules
import helper  # noqa: E402 (a module of the app's own: imported fresh, edits count)

atexit.register(print, "atexit handler ran", flush=True)
# Left unclosed: a fresh interpreter flushes it as it ends.
unclosed = open(os.environ.get("PROBE_UNCLOSED", os.devnull), "w")  # noqa: SIM115
unclosed.write("written, never closed\n")


def stream(s):
    return [s.seekable(), s.isatty(), s.line_buffering, s.write_through, s.encoding, s.errors]


state = {
    "argv": sys.argv,
    "orig_argv": sys.orig_argv,
    "executable": sys.executable,
    "file": __file__,
    "main_keys": sorted(k for k in vars(__main__) if k.startswith("__")),
    "loader": type(__loader__).__name__,
    "spec": None if __spec__ is None else __spec__.name,
    "path0": sys.path[0],
    "path": sys.path,
    "cwd": os.getcwd(),
    "own_group": os.getpgid(0) == os.getpid(),
    "own_session": os.getsid(0) == os.getpid(),
    "stdin_is_devnull": stat.S_ISCHR(os.fstat(0).st_mode),
    "stdout": stream(sys.stdout),
    "stderr": stream(sys.stderr),
    "stdin": [sys.stdin.seekable(), sys.stdin.encoding],
    "open_fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
    "signals": {
        s.name: repr(signal.getsignal(s))
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE)
    },
    "helper": [helper.VALUE, helper_was_loaded],
    "root_logger": [logging.root.level, len(logging.root.handlers)],
    "flags": list(sys.flags),
    # The cyclic collector as a fresh app has it (the preload pauses it).
    "collector": [gc.isenabled(), gc.get_threshold(), gc.get_debug()],
}
if mode == "return":  # the whole state, as an app has it (a cold start takes seconds)
    import mlflow
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.plugins import Plugins

    Plugins.instance()  # Hydra's scan for plugins, as every Hydra app makes it
    state["mlflow"] = [mlflow.active_run() is None, mlflow.get_tracking_uri()]
    state["global_hydra"] = GlobalHydra.instance().is_initialized()
    state["warning_filters"] = [repr(f) for f in warnings.filters]
    # After the imports: pyarrow and MLflow set variables as they are imported
    # (warm, before the script starts); MLflow's session is the process's own.
    environ = {k: "<per process>" if k.endswith("SESSION_ID") else v for k, v in os.environ.items()}
    state["environ"] = environ
print(json.dumps(state), flush=True)
# Must differ between any two commands, as between two fresh interpreters.
numpy_random = sys.modules.get("numpy.random")
print(json.dumps([random.random(), numpy_random and numpy_random.random()]), flush=True)

print("to stderr", file=sys.stderr)
if mode == "exit3":
    sys.exit(3)
if mode == "exit-text":
    sys.exit("leaving with a message")
if mode == "raise":
    raise ValueError("the app failed")
if mode == "interrupt":
    raise KeyboardInterrupt
if mode == "sigterm":
    os.kill(os.getpid(), signal.SIGTERM)
if mode == "syntax":
    compile("x = (", "<made>", "exec")
