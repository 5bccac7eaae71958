"""The faults sweeps meet, with real processes and a real SQLite store: an app
that raises, signals, kill -9, two launches at once, a damaged or read-only
store, and an app that continues from its checkpoint when resumed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

pytestmark = pytest.mark.slow  # real Hydra apps, sweeps or services

APP = """
import json, os, signal, time
from dataclasses import dataclass

import mlflow
import hydraflow


@dataclass
class Config:
    a: int = 1
    steps: int = 5


@hydraflow.main(Config)
def app(run, cfg):
    checkpoint = hydraflow.get_artifact_dir(run) / "checkpoint.json"
    start = 0
    if hydraflow.is_resumed(run) and checkpoint.exists():
        start = json.loads(checkpoint.read_text())["step"] + 1
    for step in range(start, cfg.steps):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        checkpoint.write_text(json.dumps({"step": step}))
        if step == int(os.environ.get("APP_DIE_AT", "-1")):
            os.kill(os.getpid(), signal.SIGKILL)  # a lost node: nothing runs after this
    if os.environ.get("APP_FAIL"):
        raise RuntimeError("asked to fail")
    open(f"ready-{cfg.a}", "w").write(run.info.run_id)
    time.sleep(float(os.environ.get("APP_SLEEP", "0")))


if __name__ == "__main__":
    app()
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(textwrap.dedent(APP))
    return tmp_path


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return {**env, **extra}


def run_app(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "app.py", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        env=environment(**env),
        timeout=300,
        start_new_session=True,
    )


@pytest.fixture
def started(folder: Path) -> Iterator[list[subprocess.Popen[str]]]:
    """Apps started in the background, each in its own process group, all
    killed at teardown whatever the test did."""
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()


def start_app(
    folder: Path, processes: list[subprocess.Popen[str]], *args: str, **env: str
) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "app.py", *args],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(**env),
        start_new_session=True,
    )
    processes.append(process)
    return process


def wait_for(path: Path, process: subprocess.Popen[str], timeout: float = 240) -> None:
    """Until the app reached its sleep (it writes `path`); fails if it died first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.1)


def runs(folder: Path) -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("app")
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


def artifact_text(run: mlflow.entities.Run, name: str) -> str:
    return (Path(run.info.artifact_uri.removeprefix("file://")) / name).read_text()


def test_a_failing_app_ends_failed_with_its_traceback_in_the_log(folder: Path) -> None:
    result = run_app(folder, "a=1", APP_FAIL="1")
    assert result.returncode == 1
    [run] = runs(folder)
    assert run.info.status == "FAILED"
    log = artifact_text(run, "app.log")
    assert "Traceback" in log
    assert "RuntimeError: asked to fail" in log


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_ends_the_run_killed_with_its_log(
    folder: Path, started: list[subprocess.Popen[str]], signum: signal.Signals
) -> None:
    process = start_app(folder, started, "a=2", APP_SLEEP="600")
    wait_for(folder / "ready-2", process)
    os.kill(process.pid, signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum
    [run] = runs(folder)
    assert run.info.status == "KILLED"
    assert "interrupted" in artifact_text(run, "app.log")
    assert f"hydraflow: interrupted by {signum.name}; run {run.info.run_id} is KILLED" in stderr
    assert "Traceback" not in stderr


def test_a_run_lost_to_kill_9_is_resumed_under_its_id_from_its_checkpoint(folder: Path) -> None:
    lost = run_app(folder, "a=3", APP_DIE_AT="2")
    assert lost.returncode == -signal.SIGKILL
    [run] = runs(folder)
    assert run.info.status == "RUNNING"  # nobody could end it
    again = run_app(folder, "a=3")
    assert again.returncode == 0, again.stderr
    [resumed] = runs(folder)
    assert resumed.info.run_id == run.info.run_id
    assert resumed.info.status == "FINISHED"
    assert resumed.data.tags["hydraflow.attempt"] == "2"
    client = mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    steps = [point.step for point in client.get_metric_history(run.info.run_id, "loss")]
    assert sorted(steps) == [0, 1, 2, 3, 4]  # each step once: the app continued at 3


def test_two_launches_of_one_config_make_one_run(
    folder: Path, started: list[subprocess.Popen[str]]
) -> None:
    """The second waits for the first's run; killed, it is resumed by the second."""
    first = start_app(folder, started, "a=4", APP_SLEEP="600")
    wait_for(folder / "ready-4", first)
    second = start_app(folder, started, "a=4")
    assert second.stdout is not None
    waiting = f"waiting for run {(folder / 'ready-4').read_text()}, running in pid {first.pid}"
    while waiting not in (line := second.stdout.readline()):
        assert line, second.communicate()
    [run] = runs(folder)
    assert run.info.status == "RUNNING"
    os.kill(first.pid, signal.SIGTERM)
    first.communicate(timeout=120)
    assert first.returncode == 128 + signal.SIGTERM
    _, stderr = second.communicate(timeout=120)
    assert second.returncode == 0, stderr
    [run] = runs(folder)
    assert (run.info.status, run.data.tags["hydraflow.attempt"]) == ("FINISHED", "2")


def test_a_damaged_store_is_a_clear_error(folder: Path) -> None:
    (folder / "mlflow.db").write_bytes(b"this is not a database" * 100)
    result = run_app(folder, "a=5")
    assert result.returncode == 2
    assert "cannot use the MLflow store" in result.stderr
    assert "not a database" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_read_only_store_is_a_clear_error(
    folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    store = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    assert run_app(folder, "a=6", MLFLOW_TRACKING_URI=uri).returncode == 0
    if subprocess.run(["mount", "--bind", "-o", "ro", store, store]).returncode != 0:
        pytest.skip("a read-only bind mount needs root")
    try:
        result = run_app(folder, "a=7", MLFLOW_TRACKING_URI=uri)
    finally:
        subprocess.run(["umount", store], check=True)
    assert result.returncode == 2
    assert "cannot use the MLflow store" in result.stderr
    assert "must be writable" in result.stderr
    assert "Traceback" not in result.stderr
