"""An app whose `hydraflow run` is gone (a submit handler that did not wait
returned, and the events directory went with it) runs all its configs: what
it reports is hydraflow's, the runs are the user's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
from hydraflow.protocol import EVENTS_ENV, INPUTS_ENV

from tests.services import APP


def test_an_app_reporting_to_a_removed_directory_runs_every_config(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(APP)
    gone = tmp_path / ".hydraflow-events-gone"  # never created: as if removed
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env[EVENTS_ENV] = str(gone / "command-1.jsonl")
    env[INPUTS_ENV] = str(gone / "command-1.inputs.json")

    result = subprocess.run(
        [sys.executable, "app.py", "--multirun", "i=0,1", "j=0,1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("app")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert sorted((r.data.params["i"], r.data.params["j"]) for r in runs) == [
        ("0", "0"),
        ("0", "1"),
        ("1", "0"),
        ("1", "1"),
    ]
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert not gone.exists()
