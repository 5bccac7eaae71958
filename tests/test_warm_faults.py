"""The warm interpreter's server killed (kill -9) at each moment — while it
preloads, while a command it forked runs, between commands, just after it
forked a command and before it said so — and a forked command killed: no
run lost or run twice, no hang, one line that says what happened, later
commands cold, and the statuses a cold start would give. Real processes;
every test kills what it started, by process group."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydraflow.runner.executors.warm import COLD_ENV, WarmInterpreter, WarmProcess

from tests.conftest import HYDRAFLOW, alive, warm_server_of

PER_COMMAND = ("HYDRAFLOW_EVENTS", "HYDRAFLOW_INPUTS")
KILLED_WHILE_RUNNING = (
    "the warm interpreter ended (killed by SIGKILL): "
    "the commands it started run on; later ones start cold"
)
KILLED_BETWEEN = "the warm interpreter ended (killed by SIGKILL): later commands start cold"

# Faults put in the server only (`python -c`): a preload that waits, once
# marked, on importing omegaconf; a server that dies just after its first fork.
SITECUSTOMIZE = """
import os, signal, sys, time

def in_server():
    return sys.argv[:1] == ["-c"]

class SlowPreload:
    def find_spec(self, name, path=None, target=None):
        if name == "omegaconf" and in_server() and os.environ.get("FAULT") == "slow-preload":
            open(f"preloading-{os.getpid()}", "w").close()
            time.sleep(60)
        return None

sys.meta_path.insert(0, SlowPreload())

if os.environ.get("FAULT") == "die-after-fork":
    def pidfd_open(pid, *args):  # the server's next step after its fork
        if in_server():
            os.kill(os.getpid(), signal.SIGKILL)
        return real_pidfd_open(pid, *args)

    real_pidfd_open, os.pidfd_open = os.pidfd_open, pidfd_open
"""

# Says it is ready, appends its arguments to `ran` (once per start), sleeps,
# and ends with the status it is given.
COMMAND = """
import os, sys, time
import hydra

with open("ran", "a") as ran:
    ran.write(" ".join(sys.argv[1:]) + "\\n")
print("ready", os.getpid(), flush=True)
time.sleep(float(sys.argv[1]))
print("done", flush=True)
sys.exit(int(sys.argv[2]))
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "command.py").write_text(textwrap.dedent(COMMAND))
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(textwrap.dedent(SITECUSTOMIZE))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    for marker in tmp_path.glob("*-[0-9]*"):  # pids of apps and servers: kill what is left
        with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
            os.killpg(int(marker.name.rsplit("-", 1)[1]), signal.SIGKILL)


def environment(project: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", COLD_ENV)}
    env.update(PYTHONUNBUFFERED="1", PYTHONPATH=str(project / "site"), **extra)
    env.update(HYDRAFLOW_EVENTS=str(project / "events"), HYDRAFLOW_INPUTS=str(project / "inputs"))
    return env


@contextlib.contextmanager
def interpreter() -> Iterator[tuple[WarmInterpreter, list[str], list[str]]]:
    """A warm interpreter, its -v notes and its alerts; stopped after."""
    notes: list[str] = []
    alerts: list[str] = []
    warm = WarmInterpreter(notes.append, alert=alerts.append)
    try:
        yield warm, notes, alerts
    finally:
        server = warm.server
        if server is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
        warm.close()


def started(warm: WarmInterpreter, project: Path, seconds: float, status: int) -> WarmProcess:
    argv = [sys.executable, "command.py", str(seconds), str(status)]
    process = warm.start(argv, environment(project), PER_COMMAND)
    assert process is not None, warm.refusals
    assert process.stdout is not None
    assert process.stdout.readline().split()[0] == b"ready"
    return process


def finished(process: WarmProcess) -> tuple[int, str]:
    assert process.stdout is not None and process.stderr is not None
    with process.stdout, process.stderr:
        out = process.stdout.read().decode()
        process.stderr.read()
    return process.wait(), out


def kill_server(warm: WarmInterpreter) -> None:
    assert warm.server is not None
    os.kill(warm.server.pid, signal.SIGKILL)


def test_a_command_outlives_its_killed_server_and_keeps_its_status(project: Path) -> None:
    with interpreter() as (warm, _, alerts):
        slow, killed = started(warm, project, 1.5, 3), started(warm, project, 60, 0)
        try:
            kill_server(warm)
            assert finished(slow) == (3, "done\n")  # its own status, not a made-up one
            os.killpg(killed.pid, signal.SIGKILL)
            assert finished(killed)[0] == -signal.SIGKILL
        finally:
            for process in (slow, killed):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
        assert not alive(slow.pid) and not alive(killed.pid)  # reaped by us, not left as zombies
        assert alerts == [KILLED_WHILE_RUNNING]  # once, for the two commands
        argv = [sys.executable, "command.py", "0", "0"]
        assert warm.start(argv, environment(project), PER_COMMAND) is None
        assert alerts == [KILLED_WHILE_RUNNING]


def test_a_server_killed_between_commands_leaves_the_next_to_start_cold(project: Path) -> None:
    with interpreter() as (warm, notes, alerts):
        assert finished(started(warm, project, 0, 0)) == (0, "done\n")
        kill_server(warm)
        assert warm.server is not None
        warm.server.wait()
        argv = [sys.executable, "command.py", "0", "0"]
        assert warm.start(argv, environment(project), PER_COMMAND) is None
        assert warm.start(argv, environment(project), PER_COMMAND) is None
    assert alerts == [KILLED_BETWEEN]
    assert notes == ["commands start from a warm interpreter" + notes[0].split("interpreter")[1]]
    assert (project / "ran").read_text() == "0 0\n"  # nothing started for the refused ones


def test_a_server_killed_just_after_it_forked_is_not_a_second_start(project: Path) -> None:
    """Killed between its fork and its reply with the pid: the command runs
    (it holds the output pipe), so hydraflow waits for it and starts no cold twin."""
    env = environment(project, FAULT="die-after-fork")
    with interpreter() as (warm, _, alerts):
        process = warm.start([sys.executable, "command.py", "0.5", "5"], env, PER_COMMAND)
        assert process is not None
        try:
            status, out = finished(process)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        assert (status, out.split()[0], out.split()[-1]) == (5, "ready", "done")
        assert out.split()[1] == str(process.pid)
        assert alerts == [KILLED_BETWEEN]
    assert (project / "ran").read_text() == "0.5 5\n"  # once


def test_a_server_killed_while_it_preloads_leaves_every_command_cold(project: Path) -> None:
    env = environment(project, FAULT="slow-preload")
    with interpreter() as (warm, _, alerts):
        answers: list[WarmProcess | None] = []
        argv = [sys.executable, "command.py", "0", "0"]
        starting = threading.Thread(target=lambda: answers.append(warm.start(argv, env, ())))
        starting.start()
        deadline = time.monotonic() + 60
        while not list(project.glob("preloading-*")):
            assert time.monotonic() < deadline and starting.is_alive()
            time.sleep(0.05)
        kill_server(warm)
        starting.join(timeout=30)
        assert not starting.is_alive() and answers == [None]
        assert warm.start(argv, env, ()) is None
    assert alerts == [
        "the warm interpreter ended while it preloaded (killed by SIGKILL): commands start cold"
    ]


# --- through `hydraflow run` -------------------------------------------------------

APP = """
import os, signal, time
import hydraflow

@hydraflow.main({"a": 1, "b": 1})
def app(run, cfg):
    open(f"running-{cfg.a}-{cfg.b}-{os.getpid()}", "w").close()
    if os.environ.get("KILL_AT") == f"{cfg.a}-{cfg.b}" and not os.path.exists("killed"):
        open("killed", "w").close()
        os.kill(os.getpid(), signal.SIGKILL)  # a lost job: nothing runs after this
    time.sleep(float(os.environ.get("APP_SLEEP", "0")))
    print("done", cfg.a, cfg.b, flush=True)

if __name__ == "__main__":
    app()
"""

JOBS = """
jobs:
  sweep:
    run: {python} app.py
    sets:
      - each: a=1,2,3
        all: b=1,2
"""


@pytest.fixture
def folder(project: Path) -> Path:
    (project / "app.py").write_text(textwrap.dedent(APP))
    (project / "hydraflow.yaml").write_text(JOBS.format(python=sys.executable))
    return project


def launch(folder: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    environment = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    environment.pop(COLD_ENV, None)
    environment.update(env, PYTHONPATH=str(folder / "site"))
    return subprocess.Popen(
        [HYDRAFLOW, "run", "sweep", *args],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
        start_new_session=True,
    )


def ended(process: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        _, stderr = process.communicate(timeout=240)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    return process.returncode, stderr


def wait_for(folder: Path, pattern: str, process: subprocess.Popen[str]) -> Path:
    deadline = time.monotonic() + 120
    while not (found := sorted(folder.glob(pattern))):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"never saw {pattern}"
        time.sleep(0.05)
    return found[0]


def server_of(pid: int) -> int:
    """The warm server: hydraflow's child started as `python -c`."""
    server = warm_server_of(pid)
    assert server is not None, "no warm server"
    return server


def summary(stderr: str) -> str:
    line = next(line for line in stderr.splitlines() if line.startswith("hydraflow: sweep: "))
    return re.sub(r"; [\d.]+ s$", "", line)


def run_statuses(folder: Path) -> list[tuple[str, int]]:
    with contextlib.closing(sqlite3.connect(folder / "mlflow.db")) as db:
        return db.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall()


@pytest.mark.slow
def test_hydraflow_run_with_its_server_killed_mid_command_loses_and_repeats_no_run(
    folder: Path,
) -> None:
    process = launch(folder, APP_SLEEP="2")
    wait_for(folder, "running-1-1-*", process)
    os.kill(server_of(process.pid), signal.SIGKILL)
    status, stderr = ended(process)
    assert status == 0, stderr
    assert stderr.count("hydraflow: the warm interpreter ended") == 1
    assert f"hydraflow: {KILLED_WHILE_RUNNING}\n" in stderr
    assert "Traceback" not in stderr
    assert summary(stderr) == "hydraflow: sweep: 3 commands: 3 finished; 6 runs: 6 finished"
    assert len(list(folder.glob("running-*"))) == 6  # each job once
    assert run_statuses(folder) == [("FINISHED", 6)]
    status, stderr = ended(launch(folder))
    skipped = "hydraflow: sweep: 3 commands: 0 finished, 3 skipped; 6 runs: 6 skipped"
    assert (status, summary(stderr)) == (0, skipped)


@pytest.mark.slow
def test_hydraflow_run_with_its_server_killed_while_it_preloads_runs_cold(folder: Path) -> None:
    process = launch(folder, FAULT="slow-preload")
    os.kill(int(wait_for(folder, "preloading-*", process).name.split("-")[1]), signal.SIGKILL)
    status, stderr = ended(process)
    assert status == 0, stderr
    assert (
        "hydraflow: the warm interpreter ended while it preloaded (killed by SIGKILL): "
        "commands start cold\n" in stderr
    )
    assert summary(stderr) == "hydraflow: sweep: 3 commands: 3 finished; 6 runs: 6 finished"
    assert run_statuses(folder) == [("FINISHED", 6)]


@pytest.mark.slow
def test_ctrl_c_while_the_server_preloads_stops_it_and_starts_nothing(folder: Path) -> None:
    process = launch(folder, FAULT="slow-preload")
    server = int(wait_for(folder, "preloading-*", process).name.split("-")[1])
    os.killpg(process.pid, signal.SIGINT)  # as a terminal sends Ctrl-C
    status, stderr = ended(process)
    assert status == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert summary(stderr) == (
        "hydraflow: sweep: 3 commands: 0 finished, 1 interrupted, 2 not started; "
        "6 runs: 6 not started"
    )
    assert not alive(server)  # stopped, not left preloading
    assert not list(folder.glob("running-*"))


@pytest.mark.slow
def test_a_warm_job_killed_by_sigkill_ends_as_a_cold_one_and_a_rerun_repairs_it(
    folder: Path,
) -> None:
    """The oracle is --cold: the same status, summary and runs; a second
    `hydraflow run` resumes the run the kill cut off."""
    outcomes: dict[str, tuple[object, ...]] = {}
    for how in ("warm", "cold"):
        flags = ["--keep-going"] + (["--cold"] if how == "cold" else [])
        first = ended(launch(folder, *flags, KILL_AT="2-1"))
        second = ended(launch(folder, *flags[1:]))
        outcomes[how] = (first[0], summary(first[1]), second[0], summary(second[1]))
        outcomes[how] += (run_statuses(folder),)
        for made in ("mlflow.db", "killed", "multirun", ".hydraflow"):
            subprocess.run(["rm", "-rf", str(folder / made)], check=True)
    assert outcomes["warm"] == outcomes["cold"]
    assert outcomes["warm"] == (
        137,
        "hydraflow: sweep: 3 commands: 2 finished, 1 failed; 6 runs: 4 finished, 1 cut off, "
        "1 not reported",
        0,
        "hydraflow: sweep: 3 commands: 1 finished, 2 skipped; 6 runs: 1 finished, 1 resumed, "
        "4 skipped",
        [("FINISHED", 6)],
    )
