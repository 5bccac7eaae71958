"""The tutorial end to end, in a copy of examples/, through the installed CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydraflow import load

EXAMPLES = Path(__file__).parent.parent / "examples"
EXPECTED = {"job_sequential": 6, "job_parallel": 6, "job_submit": 4}


def hydraflow(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        ["hydraflow", *args], cwd=folder, capture_output=True, text=True, env=env, timeout=600
    )


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tutorial")
    for name in ("example.py", "hydraflow.yaml", "submit.py"):
        shutil.copy(EXAMPLES / name, folder / name)
    for job in EXPECTED:
        result = hydraflow(folder, "run", job)
        assert result.returncode == 0, result.stderr[-3000:]
    return folder


def test_dry_runs_show_the_commands(tmp_path: Path) -> None:
    for name in ("example.py", "hydraflow.yaml", "submit.py"):
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


def test_three_experiments_with_16_finished_runs(tutorial: Path) -> None:
    runs = load(tracking_uri=f"sqlite:///{tutorial / 'mlflow.db'}", status=None)
    counts = dict(runs.frame.group_by("experiment").len().iter_rows())
    assert counts == EXPECTED
    assert set(runs.frame["status"]) == {"FINISHED"}
    for run in runs:
        assert run.artifact_dir.is_relative_to(tutorial / "mlruns")
        config = yaml.safe_load(run.path(".hydra/config.yaml").read_text())
        assert config == {"width": run.cfg.width, "height": run.cfg.height}
        assert 0 < run.metrics["error"] < 2
    assert runs.frame.select("experiment", "width", "height").is_unique().all()


def test_running_again_adds_no_run(tutorial: Path) -> None:
    result = hydraflow(tutorial, "run", "job_sequential")
    assert result.returncode == 0
    # Skipped by the CLI (proven finished, no app started) or by the apps.
    assert "; 6 runs: 6 skipped; " in result.stderr
    runs = load("job_sequential", tracking_uri=f"sqlite:///{tutorial / 'mlflow.db'}")
    assert len(runs) == 6
