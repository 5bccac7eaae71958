"""Runs made by code that has changed since: said once per job, shown by
`hydraflow runs --code`, and run again by `hydraflow run JOB --rerun` — end
to end, with a real app edited between runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import run_cli

TRAIN = """
import mlflow

import hydraflow
from loss import loss


@hydraflow.main({"a": 1, "b": 1})
def app(run, cfg):
    mlflow.log_metric("loss", loss(cfg.a, cfg.b))


if __name__ == "__main__":
    app()
"""

JOBS = f"""
jobs:
  train:
    run: {sys.executable} train.py
    sets:
      - each: a=1,2
"""

STALE = "skipped runs were made by code that has changed since"


def make_project(folder: Path) -> Path:
    (folder / "train.py").write_text(textwrap.dedent(TRAIN))
    (folder / "loss.py").write_text("def loss(a, b):\n    return a + b\n")
    (folder / "hydraflow.yaml").write_text(JOBS)
    return folder


def code_column(folder: Path) -> list[tuple[str, str]]:
    result = run_cli("runs", "train", "--code", "--format", "json", cwd=folder)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    return sorted((row["code"], row["metrics.loss"]) for row in rows)


def test_changed_code_is_reported_shown_and_rerun(tmp_path: Path) -> None:
    folder = make_project(tmp_path)
    first = run_cli("run", "train", cwd=folder)
    assert first.returncode == 0, first.stderr
    assert "2 runs: 2 finished" in first.stderr
    assert STALE not in first.stderr

    (folder / "loss.py").write_text("def loss(a, b):\n    return 10 * (a + b)\n")
    skipped = run_cli("run", "train", cwd=folder)
    assert skipped.returncode == 0, skipped.stderr
    assert "2 runs: 2 skipped" in skipped.stderr
    [line] = [line for line in skipped.stderr.splitlines() if "changed since" in line]
    assert line == (
        f"hydraflow: 2 {STALE} (changed: loss.py); "
        "'hydraflow run train --rerun' runs them again as new runs"
    )
    # The apps leave it to the CLI.
    assert "made by other code" not in skipped.stdout + skipped.stderr
    # Not proven finished in silence: the next plain run says it again.
    assert STALE in run_cli("run", "train", cwd=folder).stderr
    assert code_column(folder) == [("changed: loss.py", x) for x in (2.0, 3.0)]

    rerun = run_cli("run", "train", "--rerun", cwd=folder)
    assert rerun.returncode == 0, rerun.stderr
    assert "2 runs: 2 finished" in rerun.stderr
    new = [("current", x) for x in (20.0, 30.0)]
    old = [("changed: loss.py", x) for x in (2.0, 3.0)]
    assert code_column(folder) == sorted(old + new)

    again = run_cli("run", "train", cwd=folder)
    assert "2 runs: 2 skipped" in again.stderr
    assert STALE not in again.stderr


def test_an_app_run_directly_says_it_once_per_command(tmp_path: Path) -> None:
    folder = make_project(tmp_path)
    environment = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    command = [sys.executable, "train.py", "-m", "a=1,2", "b=1,2"]

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command, cwd=folder, capture_output=True, text=True, env=environment, timeout=300
        )

    assert run().returncode == 0
    (folder / "train.py").write_text(textwrap.dedent(TRAIN) + "\n# edited\n")
    result = run()
    assert result.returncode == 0, result.stderr
    output = (result.stdout + result.stderr).splitlines()  # Hydra logs to stdout
    warnings = [line for line in output if "made by other code" in line]
    assert len(warnings) == 1
    assert "changed: train.py" in warnings[0]
