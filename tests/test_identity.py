"""A run's identity is its configuration: values that say where or when a
job runs (Hydra's output dir, `${now:...}`) leave it unchanged, so a sweep
run again in a new sweep directory skips (or resumes) what it did before.
Real Hydra apps on a real SQLite store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

CONFIG = """
seed: 0
out: ${hydra:runtime.output_dir}
ckpt: ${out}/ckpt
stamp: ${now:%H-%M-%S-%f}
work: ${hydra:runtime.cwd}
num: ${hydra:job.num}
rt: ${hydra:runtime}
"""

APP = """
import json, os
import hydraflow


@hydraflow.main(version_base=None, config_path="conf", config_name="config")
def app(run, cfg):
    with open(os.environ["RECEIVED"], "a") as out:
        out.write(json.dumps({"seed": cfg.seed, "out": cfg.out, "ckpt": cfg.ckpt}) + "\\n")


if __name__ == "__main__":
    app()
"""


def sweep(folder: Path, sweep_dir: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["RECEIVED"] = str(folder / "received.jsonl")
    result = subprocess.run(
        [sys.executable, "app.py", "-m", "seed=1,2", f"hydra.sweep.dir={sweep_dir}"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


@pytest.mark.slow
def test_a_sweep_in_a_new_directory_is_the_same_configs(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.yaml").write_text(CONFIG)
    (tmp_path / "app.py").write_text(APP)
    sweep(tmp_path, "multirun/first")
    again = sweep(tmp_path, "multirun/second")
    assert again.count("already finished with this config") == 2, again

    # The app got the real values, as under @hydra.main.
    received = [json.loads(line) for line in (tmp_path / "received.jsonl").read_text().splitlines()]
    assert [(r["seed"], Path(r["out"])) for r in received] == [
        (1, tmp_path / "multirun/first/0"),
        (2, tmp_path / "multirun/first/1"),
    ]
    assert all(r["ckpt"] == f"{r['out']}/ckpt" for r in received)

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    [experiment] = [e for e in client.search_experiments() if e.name == "app"]
    runs = client.search_runs([experiment.experiment_id], order_by=["params.seed"])
    assert [r.info.status for r in runs] == ["FINISHED", "FINISHED"]
    params = runs[0].data.params
    assert params["out"] == "${hydra:runtime.output_dir}"
    assert params["ckpt"] == "${out}/ckpt"
    assert params["stamp"] == "${now:%H-%M-%S-%f}"
    assert params["work"] == "${hydra:runtime.cwd}"
    assert params["rt"] == "${hydra:runtime}"
    # A job's number may be a seed: it is a value like any other.
    assert [r.data.params["num"] for r in runs] == ["0", "1"]
