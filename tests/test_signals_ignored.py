"""A SIGHUP hydraflow was started ignoring stays ignored: `nohup hydraflow run
JOB &` survives the SIGHUP of a closed login, as `nohup python app.py` does
(the oracle, run here alike). An ignored SIGINT (a script's `JOB &`) does
not slow a stop: hydraflow stops its commands with SIGINT first."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from tests.conftest import HYDRAFLOW, kill_group, user_environment

APP = """
import os, pathlib, time
import hydraflow

@hydraflow.main({"x": 1})
def app(run, cfg):
    pathlib.Path("running").touch()
    time.sleep(float(os.environ.get("APP_SECONDS", "3")))

if __name__ == "__main__":
    app()
"""
JOBS = "jobs:\n  j:\n    run: {python} app.py\n    sets:\n      - each: x=1\n"


def nohup(
    args: list[str], folder: Path, ignoring: int = signal.SIGHUP, **env: str
) -> subprocess.Popen[str]:
    """`args` started as `nohup` starts them (SIGHUP ignored; or as a script
    starts `JOB &`: SIGINT ignored), in a session of their own."""
    return subprocess.Popen(
        args,
        cwd=folder,
        env={**user_environment(), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(ignoring, signal.SIG_IGN),
    )


def hung_up(process: subprocess.Popen[str], folder: Path) -> tuple[int, str]:
    """The exit status and stderr of `process` after a SIGHUP to its group
    once the app runs (a closed terminal hangs up its whole session)."""
    try:
        deadline = time.monotonic() + 120
        while not (folder / "running").exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the app never started"
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGHUP)
        _, stderr = process.communicate(timeout=120)
    finally:
        kill_group(process.pid)
        process.wait()
    return process.returncode, stderr


def finished_runs(folder: Path) -> list[str]:
    client = mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return [run.info.status for run in runs]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_nohup_keeps_a_sweep_through_a_hangup_as_it_keeps_the_app(tmp_path: Path) -> None:
    outcomes = []
    for name, args in (
        ("app", [sys.executable, "app.py", "-m", "x=1", "hydra.job.name=j"]),
        ("hydraflow", [HYDRAFLOW, "run", "j"]),
    ):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "app.py").write_text(APP)
        (folder / "hydraflow.yaml").write_text(JOBS.format(python=sys.executable))
        status, stderr = hung_up(nohup(args, folder), folder)
        assert "SIGHUP" not in stderr, stderr
        outcomes.append((status, finished_runs(folder)))
    assert outcomes == [(0, ["FINISHED"]), (0, ["FINISHED"])]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_an_ignored_sigint_does_not_slow_a_stop(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "hydraflow.yaml").write_text(JOBS.format(python=sys.executable))
    process = nohup([HYDRAFLOW, "run", "j"], tmp_path, signal.SIGINT, APP_SECONDS="60")
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "running").exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the app never started"
            time.sleep(0.05)
        stopped = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
        took = time.monotonic() - stopped
    finally:
        kill_group(process.pid)
        process.wait()
    assert process.returncode == 143 and "interrupted by SIGTERM" in stderr, stderr
    assert finished_runs(tmp_path) == ["KILLED"]
    # The command's SIGINT works at once; ignored, hydraflow's SIGTERM came
    # only after its 10 s grace (a guard, not a benchmark).
    assert took < 8, took
