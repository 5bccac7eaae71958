"""The tutorial end to end, in a copy of examples/, through the installed CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml

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
    client = mlflow.MlflowClient(f"sqlite:///{tutorial / 'mlflow.db'}")
    for name, expected in EXPECTED.items():
        experiment = client.get_experiment_by_name(name)
        assert experiment is not None, name
        runs = client.search_runs([experiment.experiment_id])
        assert len(runs) == expected, name
        assert {r.info.status for r in runs} == {"FINISHED"}
        for run in runs:
            local = Path(run.info.artifact_uri.removeprefix("file://"))
            assert local.is_relative_to(tutorial / "mlruns")
            config = yaml.safe_load((local / ".hydra" / "config.yaml").read_text())
            assert {k: str(v) for k, v in config.items()} == run.data.params
        sizes = sorted((int(r.data.params["width"]), int(r.data.params["height"])) for r in runs)
        assert len(set(sizes)) == expected


def test_running_again_adds_no_run(tutorial: Path) -> None:
    result = hydraflow(tutorial, "run", "job_sequential")
    assert result.returncode == 0
    # Skipped by the app, or (proven finished) by the CLI without starting it.
    assert "job_sequential: 2 commands: " in result.stderr
    assert "; 6 runs: 6 skipped; " in result.stderr
    client = mlflow.MlflowClient(f"sqlite:///{tutorial / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("job_sequential")
    assert experiment is not None
    assert len(client.search_runs([experiment.experiment_id])) == 6
