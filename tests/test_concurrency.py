"""Several `hydraflow run` at once on one SQLite store: no run lost, none doubled."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

pytestmark = pytest.mark.slow  # real Hydra apps, sweeps or services

HYDRAFLOW = str(Path(sys.executable).parent / "hydraflow")

APP = """
from dataclasses import dataclass

import hydraflow


@dataclass
class Config:
    a: int = 0
    b: int = 0


@hydraflow.main(Config)
def app(run, cfg):
    pass


if __name__ == "__main__":
    app()
"""

# Two commands of three runs per job: with `-j 2`, four launches at once are
# eight app processes writing one store together.
JOB = """
  {name}:
    run: python app.py
    sets:
      - each: a=1:2
        all: b=1:3
"""


@pytest.fixture
def launches(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    """`hydraflow run` processes, each in its own group, killed at teardown."""
    (tmp_path / "app.py").write_text(textwrap.dedent(APP))
    jobs = "".join(JOB.format(name=name) for name in ("j1", "j2", "j3", "j4"))
    (tmp_path / "hydraflow.yaml").write_text(f"jobs:{jobs}")
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()


def launch(folder: Path, processes: list[subprocess.Popen[str]], *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    processes.append(
        subprocess.Popen(
            [HYDRAFLOW, "run", *args],
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
    )


def finish_all(processes: list[subprocess.Popen[str]]) -> None:
    for process in processes:
        _, stderr = process.communicate(timeout=1200)
        assert process.returncode == 0, stderr[-3000:]


def runs_by_experiment(folder: Path) -> dict[str, list[mlflow.entities.Run]]:
    client = mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    found: dict[str, list[mlflow.entities.Run]] = collections.defaultdict(list)
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id], max_results=1000):
            found[experiment.name].append(run)
    return found


def configs(runs: list[mlflow.entities.Run]) -> list[tuple[str, str]]:
    return sorted((run.data.params["a"], run.data.params["b"]) for run in runs)


EVERY_CONFIG = sorted((str(a), str(b)) for a in range(1, 3) for b in range(1, 4))


def test_four_jobs_at_once_with_two_commands_each_lose_nothing(
    tmp_path: Path, launches: list[subprocess.Popen[str]]
) -> None:
    for name in ("j1", "j2", "j3", "j4"):
        launch(tmp_path, launches, name, "-j", "2")
    finish_all(launches)
    found = runs_by_experiment(tmp_path)
    assert {"j1", "j2", "j3", "j4"} <= set(found)
    for name in ("j1", "j2", "j3", "j4"):
        assert configs(found[name]) == EVERY_CONFIG, name  # 6 each: none lost, none doubled
        assert {run.info.status for run in found[name]} == {"FINISHED"}


def test_one_job_launched_twice_at_once_makes_each_run_once(
    tmp_path: Path, launches: list[subprocess.Popen[str]]
) -> None:
    launch(tmp_path, launches, "j1", "-j", "2")
    launch(tmp_path, launches, "j1", "-j", "2")
    finish_all(launches)
    runs = runs_by_experiment(tmp_path)["j1"]
    # A job the other launch was running is skipped, not doubled.
    assert configs(runs) == EVERY_CONFIG
    assert {run.info.status for run in runs} == {"FINISHED"}
    # And a third launch finds nothing left to do.
    launch(tmp_path, launches, "j1")
    finish_all(launches[2:])
    runs = runs_by_experiment(tmp_path)["j1"]
    assert configs(runs) == EVERY_CONFIG
    assert {run.info.status for run in runs} == {"FINISHED"}
