"""The tutorial end to end, through the installed CLI: the session's tutorial
store (tests/conftest.py) is its three jobs run as `make tutorial` runs them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from hydraflow import load

from tests.conftest import (
    EXAMPLES,
    HYDRAFLOW,
    TUTORIAL_FILES,
    TUTORIAL_JOBS,
    Tutorial,
    user_environment,
)


def hydraflow(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HYDRAFLOW, *args],
        cwd=folder,
        capture_output=True,
        text=True,
        env=user_environment(),
        timeout=600,
    )


def test_dry_runs_show_the_commands(tmp_path: Path) -> None:
    for name in TUTORIAL_FILES:
        shutil.copy(EXAMPLES / name, tmp_path / name)
    lines = hydraflow(tmp_path, "run", "job_sequential", "--dry-run").stdout.splitlines()
    assert [line.split(" hydra.sweep.dir=")[0] for line in lines] == [
        "python example.py --multirun width=100 height=100,200,300 hydra.job.name=job_sequential",
        "python example.py --multirun width=300 height=100,200,300 hydra.job.name=job_sequential",
    ]
    parallel = hydraflow(tmp_path, "run", "job_parallel", "--dry-run").stdout.splitlines()
    assert all(line.endswith(" hydra/launcher=joblib hydra.launcher.n_jobs=3") for line in parallel)
    submit = hydraflow(tmp_path, "run", "job_submit", "--dry-run").stdout.splitlines()
    assert submit[0].startswith("python submit.py example.py ")
    assert [line.split()[:3] for line in submit[1:]] == [
        ["--multirun", "width=250", "height=150,250"],
        ["--multirun", "width=350", "height=150,250"],
    ]
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
def test_three_experiments_with_16_finished_runs(tutorial_store: Tutorial) -> None:
    folder = tutorial_store.folder
    runs = load(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}", status=None)
    counts = dict(runs.frame.group_by("experiment").len().iter_rows())
    assert counts == TUTORIAL_JOBS
    assert set(runs.frame["status"]) == {"FINISHED"}
    for run in runs:
        assert run.artifact_dir.is_relative_to(folder / "mlruns")
        config = yaml.safe_load(run.path(".hydra/config.yaml").read_text())
        assert config == {"width": run.cfg.width, "height": run.cfg.height}
        assert 0 < run.metrics["error"] < 2
    assert runs.frame.select("experiment", "width", "height").is_unique().all()


@pytest.mark.slow
def test_running_again_adds_no_run(tutorial_copy: Path) -> None:
    result = hydraflow(tutorial_copy, "run", "job_sequential")
    assert result.returncode == 0
    # Skipped by the CLI (proven finished, no app started) or by the apps.
    assert "; 6 runs: 6 skipped; " in result.stderr
    runs = load("job_sequential", tracking_uri=f"sqlite:///{tutorial_copy / 'mlflow.db'}")
    assert len(runs) == 6
