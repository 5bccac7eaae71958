"""A project in a folder whose name a URI would read otherwise (`a%20b`,
`x?y`): the default store is made and read in that very folder, by the app,
by `hydraflow.load` and by MLflow's own client."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from hydraflow.store import sqlite_path, sqlite_uri

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "example.py"


@pytest.mark.parametrize("name", ["a%20b", "x?y", "100%"])
def test_a_store_in_a_folder_named_like_a_uri(tmp_path: Path, name: str) -> None:
    import hydraflow

    folder = tmp_path / name
    folder.mkdir()
    shutil.copy(EXAMPLE, folder / "example.py")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    result = subprocess.run(
        [sys.executable, "example.py", "width=5", "hydra.job.name=paths"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    store = folder / "mlflow.db"
    assert store.is_file()
    assert sqlite_path(sqlite_uri(store)) == store
    runs = hydraflow.load("paths", tracking_uri=str(store))
    [run_id] = runs.frame["run_id"].to_list()
    client = mlflow.MlflowClient(sqlite_uri(store))
    assert client.get_run(run_id).info.status == "FINISHED"
