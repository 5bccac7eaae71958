"""What hydraflow says to a user in the cases a new user found confusing:
the signal an app names under `hydraflow run`, an app that reports no run, a
`call` job's failure, the progress of runs the app's own config sweeps, and
what `hydraflow ui` leaves behind — through the installed `hydraflow`
command, with real apps (the UI's own end-to-end test is in test_results)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import HYDRAFLOW, user_environment

SLEEPING_APP = """
import time
from dataclasses import dataclass
from pathlib import Path

import hydraflow


@dataclass
class Config:
    x: int = 0


@hydraflow.main(Config)
def app(cfg: Config) -> None:
    Path(f"ready-{cfg.x}").touch()
    time.sleep(300)


if __name__ == "__main__":
    app()
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A project folder; its apps record in the default store there."""
    return tmp_path


@pytest.fixture
def launched() -> Iterator[list[subprocess.Popen[str]]]:
    """hydraflow processes started in their own groups, killed at teardown."""
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(textwrap.dedent(text))


def hydraflow(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HYDRAFLOW, *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=240,
        env=user_environment(),
    )


def wait_for(path: Path, process: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.1)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_app_names_the_signal_the_user_sent_the_runner(
    folder: Path, launched: list[subprocess.Popen[str]], signum: signal.Signals
) -> None:
    """The runner stops its command with SIGINT whatever came; the app's line
    names what came."""
    write(folder, {"app.py": SLEEPING_APP, "hydraflow.yaml": JOBS})
    process = subprocess.Popen(
        [HYDRAFLOW, "run", "grid"],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=user_environment(),
        start_new_session=True,
    )
    launched.append(process)
    wait_for(folder / "ready-1", process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum
    app_lines = [line for line in stderr.splitlines() if "is KILLED" in line]
    assert len(app_lines) == 1, stderr
    assert app_lines[0].startswith(f"hydraflow: interrupted by {signum.name}; run "), stderr
    assert f"hydraflow: interrupted by {signum.name}; 1 command not started" in stderr


JOBS = """
jobs:
  grid:
    run: python app.py
    sets:
      - each: x=1,2
"""


def test_the_ui_keeps_its_server_log_only_when_the_server_failed(tmp_path: Path) -> None:
    from hydraflow.analysis.ui import ServerFailed, UiError, server_log

    with server_log() as log:
        log.write(b"served\n")
    assert not Path(log.name).exists()
    with pytest.raises(UiError), server_log() as log:
        raise UiError("port 5000 on 127.0.0.1 is in use")
    assert not Path(log.name).exists()
    with pytest.raises(ServerFailed) as failed, server_log() as log:
        raise ServerFailed("MLflow's server exited", Path(log.name))
    assert Path(log.name).exists()
    assert str(failed.value) == f"MLflow's server exited (its output is kept in {log.name})"
    Path(log.name).unlink()


NO_MAIN_CALL = """
from dataclasses import dataclass

import hydraflow


@dataclass
class Config:
    x: int = 0


@hydraflow.main(Config)
def app(cfg: Config) -> None:
    print("ran", cfg.x)
"""


def test_commands_that_report_no_run_are_said_once_with_what_to_check(folder: Path) -> None:
    """An app whose script never calls it: nothing ran, and every command exited 0."""
    jobs = "jobs:\n  nomain:\n    run: python nomain.py\n    sets:\n      - each: x=1,2\n"
    write(folder, {"nomain.py": NO_MAIN_CALL, "hydraflow.yaml": jobs})
    result = hydraflow(folder, "run", "nomain")
    assert result.returncode == 0, result.stderr  # as documented: 0 when no command fails
    hint = (
        "hydraflow: 2 commands ended with status 0 having reported no run: is the app "
        "decorated with @hydraflow.main, and does its script call it "
        '(if __name__ == "__main__": app())?'
    )
    assert result.stderr.count("reported no run") == 1, result.stderr
    assert hint in result.stderr
    assert "nomain: 2 commands: 2 finished; 2 runs: 2 not reported" in result.stderr


def test_a_submit_handler_whose_commands_report_no_run_is_asked_if_it_waits(
    folder: Path,
) -> None:
    handler = (
        "import shlex, subprocess, sys\n"
        "for line in open(sys.argv[-1]):\n"
        "    subprocess.run([sys.executable, 'nomain.py', *shlex.split(line)], check=True)\n"
    )
    jobs = "jobs:\n  sub:\n    submit: python handler.py\n    sets:\n      - each: x=1,2\n"
    write(folder, {"nomain.py": NO_MAIN_CALL, "handler.py": handler, "hydraflow.yaml": jobs})
    result = hydraflow(folder, "run", "sub")
    assert result.returncode == 0, result.stderr
    assert (
        "hydraflow: 2 commands ended with status 0 having reported no run: does the handler "
        "wait for the runs to end, and does the app's script call its @hydraflow.main "
        "function"
    ) in result.stderr
    assert result.stderr.count("reported no run") == 1


def test_a_call_jobs_failure_names_the_call_as_the_dry_run_does(folder: Path) -> None:
    jobs = "jobs:\n  cboom:\n    call: mymod.go\n    sets:\n      - all: x=1\n"
    write(folder, {"mymod.py": "def go(args):\n    raise SystemExit(1)\n", "hydraflow.yaml": jobs})
    [call] = hydraflow(folder, "run", "cboom", "--dry-run").stdout.splitlines()
    assert call.startswith("mymod.go(['--multirun', 'x=1', 'hydra.job.name=cboom', ")
    result = hydraflow(folder, "run", "cboom")
    assert result.returncode == 1
    failure = [line for line in result.stderr.splitlines() if "failed with status 1:" in line]
    said = failure[-1].split(": ", 2)[2]
    assert said.startswith("mymod.go(['--multirun', 'x=1', 'hydra.job.name=cboom', "), failure
    assert "reported no run" not in result.stderr  # a failed command is not silent


SWEPT_IN_ITS_CONFIG = {
    "swept.py": """
        import hydraflow


        @hydraflow.main(config_path="conf", config_name="config", version_base=None)
        def app(cfg) -> None:
            print("lr", cfg.lr)


        if __name__ == "__main__":
            app()
    """,
    "conf/config.yaml": """
        lr: 0.0
        hydra:
          sweeper:
            params:
              lr: 0.1,0.2
    """,
    "hydraflow.yaml": "jobs:\n  swept:\n    run: python swept.py\n",
}


def test_runs_beyond_the_plans_count_are_counted_as_they_come(folder: Path) -> None:
    """The app's own config sweeps: the plan (which cannot read it) says 1
    run, 2 come; never `2/1 run` nor `1 run: 2 finished`."""
    write(folder, SWEPT_IN_ITS_CONFIG)
    assert "swept  run  1 command  1 run" in hydraflow(folder, "show").stdout
    result = hydraflow(folder, "run", "swept")
    assert result.returncode == 0, result.stderr
    assert "[1/1 command, 2 runs, " in result.stderr
    assert "swept: 1 command: 1 finished; runs: 2 finished; " in result.stderr
    assert "/1 run" not in result.stderr
    assert "reported no run" not in result.stderr  # the app reported its runs
