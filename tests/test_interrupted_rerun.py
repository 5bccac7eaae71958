"""A `hydraflow run JOB --rerun` interrupted by Ctrl-C, then a plain
`hydraflow run JOB`: the newest attempt of each configuration is what the user
last asked for, so the KILLED runs the rerun left are resumed (not skipped for
the sake of older FINISHED runs of the same configs), and nothing is doubled.
Real apps, the real CLI, and MLflow's client as the oracle of statuses."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import defaultdict
from pathlib import Path

import mlflow
import pytest

from tests.conftest import HYDRAFLOW
from tests.services import TrackingServer, tracking_server
from tests.test_interrupts import assert_clean, interrupt

pytestmark = pytest.mark.slow  # real sweeps, a Ctrl-C and three runs of the CLI

__all__ = ["tracking_server"]  # the fixture this module uses

APP = """
import os, time
import hydraflow
from loss import loss

@hydraflow.main({"a": 1, "b": 1})
def app(run, cfg):
    if os.environ.get("HANG") == f"{cfg.a},{cfg.b}":
        open(f"running-{os.getpid()}", "w").close()
        time.sleep(120)
    if os.environ.get("FAIL") == f"{cfg.a},{cfg.b}":
        raise RuntimeError("fails on purpose")
    return loss(cfg.a, cfg.b)

if __name__ == "__main__":
    app()
"""

# Two commands of two runs each, one after the other: `a=1 b=1,2`, `a=2 b=1,2`.
JOBS = f"""
jobs:
  sweep:
    run: {sys.executable} app.py
    sets:
      - each: a=1,2
        all: b=1,2
"""

STALE = "skipped runs were made by code that has changed since"


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "NO_COLOR")}
    return {**env, **extra}


def hydraflow(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HYDRAFLOW, "run", "sweep", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        env=environment(**env),
    )


def attempts(
    folder: Path, uri: str | None = None, name: str = "sweep"
) -> dict[tuple[str, str], list[tuple[str, str, str]]]:
    """Each config's runs `(run_id, status, attempt)`, oldest first, as MLflow reads them."""
    client = mlflow.MlflowClient(uri or f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None
    found: dict[tuple[str, str], list[tuple[str, str, str]]] = defaultdict(list)
    runs = client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time ASC", "attributes.run_id ASC"]
    )
    for run in runs:
        config = (run.data.params["a"], run.data.params["b"])
        attempt = run.data.tags["hydraflow.attempt"]
        found[config].append((run.info.run_id, run.info.status, attempt))
    return dict(found)


def interrupted_rerun(folder: Path) -> str:
    """`--rerun` with the app hanging at a=1 b=2 (command 1's second run),
    interrupted there as a terminal's Ctrl-C is; returns its stderr."""
    process = subprocess.Popen(
        [HYDRAFLOW, "run", "sweep", "--rerun"],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(HANG="1,2", HYDRAFLOW_GRACE_SECONDS="20"),
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not list(folder.glob("running-*")):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the rerun never reached a=1 b=2"
        time.sleep(0.05)
    try:
        stderr = interrupt(process)
    finally:
        for marker in folder.glob("running-*"):  # the app's own group, if it outlived the CLI
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(marker.name.rsplit("-", 1)[1]), signal.SIGKILL)
            marker.unlink()
    assert process.returncode == 130, stderr
    assert_clean(stderr)
    return stderr


@pytest.mark.parametrize("code_changed", [False, True], ids=["same code", "changed code"])
def test_a_plain_run_completes_an_interrupted_rerun(tmp_path: Path, code_changed: bool) -> None:
    (tmp_path / "app.py").write_text(textwrap.dedent(APP))
    (tmp_path / "loss.py").write_text("def loss(a, b):\n    return a + b\n")
    (tmp_path / "hydraflow.yaml").write_text(JOBS)
    first = hydraflow(tmp_path)
    assert first.returncode == 0, first.stderr
    assert "4 runs: 4 finished" in first.stderr
    before = attempts(tmp_path)
    assert all(len(runs) == 1 for runs in before.values()) and len(before) == 4

    if code_changed:  # why a user reruns
        (tmp_path / "loss.py").write_text("def loss(a, b):\n    return 10 * (a + b)\n")
    stderr = interrupted_rerun(tmp_path)
    assert "4 runs: 1 finished, 1 killed, 2 not started" in stderr
    rerun = attempts(tmp_path)
    assert [status for _, status, _ in rerun[("1", "1")]] == ["FINISHED", "FINISHED"]
    assert [status for _, status, _ in rerun[("1", "2")]] == ["FINISHED", "KILLED"]
    assert rerun[("2", "1")] == before[("2", "1")] and rerun[("2", "2")] == before[("2", "2")]
    killed_id = rerun[("1", "2")][1][0]

    resumed = hydraflow(tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "4 runs: 1 resumed, 3 skipped" in resumed.stderr
    # Command 1 runs (its record names a run the rerun superseded); command 2,
    # which the rerun never reached, is proven finished unless its code changed.
    assert "command 1 skipped" not in resumed.stderr
    if code_changed:
        # Said of the two runs the rerun did not reach, not of the one it remade.
        assert f"hydraflow: 2 {STALE} (changed: loss.py)" in resumed.stderr
    else:
        assert "command 2 skipped: it finished before" in resumed.stderr
        assert STALE not in resumed.stderr
    after = attempts(tmp_path)
    assert after[("1", "2")] == [rerun[("1", "2")][0], (killed_id, "FINISHED", "2")]
    assert {config: runs for config, runs in after.items() if config != ("1", "2")} == {
        config: runs for config, runs in rerun.items() if config != ("1", "2")
    }

    again = hydraflow(tmp_path)
    assert again.returncode == 0, again.stderr
    assert "4 runs: 4 skipped" in again.stderr
    assert attempts(tmp_path) == after


def test_on_a_tracking_server_a_rerun_makes_new_runs_and_a_failed_one_is_resumed(
    tracking_server: TrackingServer, tmp_path: Path
) -> None:
    """Without a store lock a new run's rivals are the runs made since the
    lookup: the config's older FINISHED run is no rival of a `--rerun`'s."""
    (tmp_path / "app.py").write_text(textwrap.dedent(APP))
    (tmp_path / "loss.py").write_text("def loss(a, b):\n    return a + b\n")
    argv = [sys.executable, "app.py", "-m", "a=1,2", "b=1,2", "hydra.job.name=server_rerun"]

    def sweep(*extra: str, **env: str) -> subprocess.CompletedProcess[str]:
        server = {"MLFLOW_TRACKING_URI": tracking_server.uri, **env}
        return subprocess.run(
            [*argv, *extra],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            env=environment(**server),
        )

    def runs() -> dict[tuple[str, str], list[tuple[str, str, str]]]:
        return attempts(tmp_path, tracking_server.uri, "server_rerun")

    assert sweep().returncode == 0
    failed = sweep("--rerun", FAIL="1,2")  # Hydra goes on with the sweep, then fails
    assert failed.returncode != 0
    assert "fails on purpose" in failed.stdout + failed.stderr
    rerun = runs()
    statuses = {config: [status for _, status, _ in runs] for config, runs in rerun.items()}
    assert statuses == {
        ("1", "1"): ["FINISHED", "FINISHED"],
        ("1", "2"): ["FINISHED", "FAILED"],
        ("2", "1"): ["FINISHED", "FINISHED"],
        ("2", "2"): ["FINISHED", "FINISHED"],
    }

    resumed = sweep()
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = runs()
    failed_id = rerun[("1", "2")][1][0]
    assert after[("1", "2")] == [rerun[("1", "2")][0], (failed_id, "FINISHED", "2")]
    assert sum(len(attempts) for attempts in after.values()) == 8
