"""hydraflow killed with kill -9 mid-sweep: its commands end too (as
`python train.py -m` killed so ends), warm and `--cold`, with `-j 2`, a
pool's workers and a submit handler's commands; the run in progress ends
KILLED, not RUNNING under a live process, and the sweep goes no further.
Real processes, Hydra and MLflow; every process group is killed in `finally`."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import HYDRAFLOW, alive, proc_stat, user_environment

# Each run marks its start (`running-PID-N`: the command's pid, the run's
# number) and sleeps, logging only (no print: a print to the closed pipe
# would end it as well).
APP = """
import logging, os, time
import hydraflow

log = logging.getLogger(__name__)
count = 0

@hydraflow.main({"a": 1, "b": 1})
def app(run, cfg):
    global count
    count += 1
    log.info("run %s", count)
    open(f"running-{os.getpid()}-{count}", "w").close()
    time.sleep(60)

if __name__ == "__main__":
    app()
"""

# Ignores the signals that ask (SIGINT, SIGTERM): only SIGKILL ends it.
STUBBORN = """
import os, signal, time

signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
open(f"running-{os.getpid()}-1", "w").close()
time.sleep(60)
"""

JOBS = """
jobs:
  sweep:
    run: {python} app.py
    sets:
      - each: a=1,2
        all: b=1,2
  pooled:
    run: {python} app.py
    add: hydra/launcher=joblib hydra.launcher.n_jobs=2
    sets:
      - all: b=1,2
  handled:
    submit: {python} submit.py app.py
    sets:
      - each: a=1,2
  stubborn:
    run: {python} stubborn.py
"""

# A submit handler that runs each line as the tutorial's does.
SUBMIT = """
import shlex, subprocess, sys

app, params = sys.argv[1], sys.argv[-1]
for line in open(params).read().splitlines():
    subprocess.run([sys.executable, app, *shlex.split(line)], check=True)
"""

GRACE = 1.0
# Long enough for the apps to end their runs at a loaded machine's pace,
# well short of the 60 s a run sleeps.
GONE_WITHIN = 20.0


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "hydraflow.yaml").write_text(textwrap.dedent(JOBS).format(python=sys.executable))
    (tmp_path / "app.py").write_text(textwrap.dedent(APP))
    (tmp_path / "stubborn.py").write_text(textwrap.dedent(STUBBORN))
    (tmp_path / "submit.py").write_text(textwrap.dedent(SUBMIT))
    return tmp_path


@contextlib.contextmanager
def hydraflow_in_own_session(folder: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """`setsid hydraflow run ARGS &`; afterwards, every process left in the
    folder (the commands' groups, by their marked pids, and anything else
    whose working directory it is) is killed."""
    (folder / "tmp").mkdir(exist_ok=True)  # where its events files go
    env = {
        **user_environment(),
        "HYDRAFLOW_GRACE_SECONDS": str(GRACE),
        "TMPDIR": str(folder / "tmp"),
    }
    with open(folder / "output.txt", "wb") as output:
        process = subprocess.Popen(
            [HYDRAFLOW, "run", *args],
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        for pgid in {process.pid, *marked_pids(folder), *processes_in(folder)}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        process.wait()


def marked_pids(folder: Path) -> set[int]:
    return {int(marker.name.split("-")[1]) for marker in folder.glob("running-*")}


def processes_in(folder: Path) -> dict[int, str]:
    """Live processes working in the folder (hydraflow's commands, their
    workers, its warm servers and keeper), with their command lines."""
    found = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            inside = Path(os.readlink(f"/proc/{entry}/cwd")).is_relative_to(folder)
            if inside and alive(int(entry)):
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    found[int(entry)] = cmdline.read().replace(b"\0", b" ").decode()[:200]
    return found


def wait_for(condition: object, timeout: float, what: str, folder: Path) -> None:
    deadline = time.monotonic() + timeout
    while not callable(condition) or not condition():
        if time.monotonic() > deadline:
            output = (folder / "output.txt").read_text(errors="replace")[-3000:]
            pytest.fail(f"{what} within {timeout} s; hydraflow said:\n{output}")
        time.sleep(0.1)


def kill_mid_run(folder: Path, process: subprocess.Popen[bytes], runs: int = 1) -> set[int]:
    """SIGKILL to hydraflow's group once `runs` runs are in progress; the
    pids of the commands (or workers) that ran them."""
    wait_for(lambda: len(marked_pids(folder)) >= runs, 240, f"{runs} run(s) in progress", folder)
    time.sleep(0.5)  # each run's start recorded in the store
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return marked_pids(folder)


def assert_all_gone(folder: Path, commands: set[int]) -> None:
    """Nothing of hydraflow's is left: no process in the folder, none in the
    commands' sessions (their workers), the keeper gone too."""
    sessions = set(commands)

    def left() -> dict[int, str]:
        found = processes_in(folder)
        for entry in filter(str.isdigit, os.listdir("/proc")):
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int(proc_stat(entry)[4]) in sessions and alive(int(entry)):
                    found[int(entry)] = "(in a command's session)"
        return found

    deadline = time.monotonic() + GONE_WITHIN
    while left() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left(), f"left running after hydraflow was killed: {left()}"


def statuses(folder: Path) -> list[str]:
    """Each run's status, as MLflow reads the store."""
    code = (
        "import mlflow; mlflow.set_tracking_uri('sqlite:///mlflow.db');"
        "print(*mlflow.search_runs(search_all_experiments=True)['status'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=folder, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split()


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    ("args", "runs"),
    [
        (("sweep",), 1),
        (("sweep", "--cold"), 1),
        pytest.param(("sweep", "-j", "2"), 2, marks=pytest.mark.slow),
        pytest.param(("sweep", "-j", "2", "--cold"), 2, marks=pytest.mark.slow),
    ],
    ids=["warm", "cold", "warm-j2", "cold-j2"],
)
def test_commands_end_with_hydraflow(folder: Path, args: tuple[str, ...], runs: int) -> None:
    """Each run in progress ends KILLED (the app got SIGINT, as at Ctrl-C),
    no command goes on to its next run, and nothing is left running."""
    with hydraflow_in_own_session(folder, *args) as process:
        commands = kill_mid_run(folder, process, runs)
        assert_all_gone(folder, commands)
        assert statuses(folder) == ["KILLED"] * runs
        assert len(list(folder.glob("running-*"))) == runs  # no run started after the kill
        # What the apps said as they ended still reached hydraflow's output.
        assert (folder / "output.txt").read_text().count(" is KILLED") == runs
        assert not list((folder / "tmp").glob(".hydraflow-events-*"))  # removed by the keeper


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("cold", [False, True], ids=["warm", "cold"])
def test_pool_workers_end_with_hydraflow(folder: Path, cold: bool) -> None:
    """Hydra's joblib launcher: the workers running the jobs end, their runs KILLED."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    with hydraflow_in_own_session(folder, "pooled", *(["--cold"] if cold else [])) as process:
        workers = kill_mid_run(folder, process, 2)
        assert_all_gone(folder, workers)
        assert statuses(folder) == ["KILLED", "KILLED"]


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("cold", [False, True], ids=["warm", "cold"])
def test_submitted_commands_end_with_hydraflow(folder: Path, cold: bool) -> None:
    """A submit handler run locally and the command it started (handed off
    to the warm interpreter, or its cold child): both end, the run KILLED,
    and the events directory in the launch folder is removed."""
    with hydraflow_in_own_session(folder, "handled", *(["--cold"] if cold else [])) as process:
        commands = kill_mid_run(folder, process)
        assert_all_gone(folder, commands)
        assert statuses(folder) == ["KILLED"]
        assert not list(folder.glob(".hydraflow-events-*"))


@pytest.mark.timeout(300)
def test_a_command_that_ignores_the_signals_is_killed(folder: Path) -> None:
    """SIGINT and SIGTERM ignored: SIGKILL after two grace periods, as
    hydraflow's own escalation would have sent it."""
    with hydraflow_in_own_session(folder, "stubborn") as process:
        commands = kill_mid_run(folder, process)
        started = time.monotonic()
        assert_all_gone(folder, commands)
        assert time.monotonic() - started >= 2 * GRACE - 0.2  # asked twice before the kill
