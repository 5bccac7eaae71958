"""@hydraflow.main end to end: real Hydra, a real SQLite MLflow store, real
subprocesses."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import pytest
import yaml
from hydraflow.errors import HydraflowError

from tests.conftest import run_in_own_group

APP = """
import json, os
from dataclasses import dataclass

import hydraflow


@dataclass
class Config:
    a: int = 1
    b: str = "x"


def update(cfg):
    if os.environ.get("APP_B"):
        cfg.b = os.environ["APP_B"]


@hydraflow.main(Config, {options})
def app(run, cfg):
    with open(os.environ["APP_RECORD"], "a") as out:
        record = {{"run_id": run.info.run_id, "a": cfg.a, "b": cfg.b, "cwd": os.getcwd()}}
        out.write(json.dumps(record) + "\\n")
    open("made_here.txt", "w").write("hello")
    if os.environ.get("APP_FAIL") == "1":
        raise RuntimeError("asked to fail")
    if os.environ.get("APP_INTERRUPT") == "1":
        raise KeyboardInterrupt


if __name__ == "__main__":
    app()
"""


def write_app(folder: Path, options: str = "") -> Path:
    (folder / "app.py").write_text(textwrap.dedent(APP.format(options=options)))
    return folder


def run_app(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    inherited = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    environment = {**inherited, "APP_RECORD": str(folder / "calls.jsonl"), **env}
    return run_in_own_group([sys.executable, "app.py", *args], folder, environment, 300)


def calls(folder: Path) -> list[dict[str, object]]:
    path = folder / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def runs(folder: Path, experiment: str = "app", db: str = "mlflow.db") -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(f"sqlite:///{folder / db}")
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return client.search_runs([found.experiment_id], max_results=10_000)


def artifact(run: mlflow.entities.Run, path: str) -> str:
    local = Path(run.info.artifact_uri.removeprefix("file://")) / path
    return local.read_text()


@pytest.mark.slow
def test_a_multirun_becomes_runs_with_config_params_and_files(tmp_path: Path) -> None:
    folder = write_app(tmp_path)
    result = run_app(folder, "-m", "a=1,2", "b=y")
    assert result.returncode == 0, result.stderr
    found = sorted(runs(folder), key=lambda r: r.data.params["a"])
    assert [r.info.status for r in found] == ["FINISHED", "FINISHED"]
    assert [r.data.params for r in found] == [{"a": "1", "b": "y"}, {"a": "2", "b": "y"}]
    first = found[0]
    assert yaml.safe_load(artifact(first, ".hydra/config.yaml")) == {"a": 1, "b": "y"}
    assert "a=1" in artifact(first, ".hydra/overrides.yaml")
    assert "hydra" in yaml.safe_load(artifact(first, ".hydra/hydra.yaml"))
    assert first.data.tags["hydraflow.overrides"] == "a=1 b=y"
    assert len(first.data.tags["hydraflow.digest"]) == 64
    assert (folder / "mlflow.db").exists()
    assert (folder / "mlruns").is_dir()
    assert "Warning" not in result.stderr


@pytest.mark.slow
def test_a_finished_config_is_skipped(tmp_path: Path) -> None:
    folder = write_app(tmp_path)
    run_app(folder, "a=3")
    again = run_app(folder, "a=3")
    assert again.returncode == 0
    [run] = runs(folder)
    assert f"skipped: run {run.info.run_id} already finished" in again.stdout + again.stderr
    assert len(calls(folder)) == 1


@pytest.mark.slow
def test_a_failed_run_is_resumed_under_the_same_id_with_both_logs(tmp_path: Path) -> None:
    folder = write_app(tmp_path)
    failed = run_app(folder, "a=4", APP_FAIL="1")
    assert failed.returncode != 0
    [run] = runs(folder)
    assert run.info.status == "FAILED"
    assert run_app(folder, "a=4").returncode == 0
    [resumed] = runs(folder)
    assert resumed.info.run_id == run.info.run_id
    assert resumed.info.status == "FINISHED"
    assert [c["run_id"] for c in calls(folder)] == [run.info.run_id] * 2
    assert artifact(resumed, "app.log").count("[__main__]") == 0  # app logs nothing itself
    assert artifact(resumed, "app.log").count("resuming run") == 1


@pytest.mark.slow
def test_keyboard_interrupt_marks_the_run_killed(tmp_path: Path) -> None:
    folder = write_app(tmp_path)
    run_app(folder, "a=5", APP_INTERRUPT="1")
    [run] = runs(folder)
    assert run.info.status == "KILLED"


@pytest.mark.slow
def test_force_new_run_always_starts_a_run(tmp_path: Path) -> None:
    folder = write_app(tmp_path, "force_new_run=True")
    run_app(folder, "a=1")
    run_app(folder, "a=1")
    assert len(runs(folder)) == 2


@pytest.mark.slow
def test_rerun_finished_runs_again_in_the_same_run(tmp_path: Path) -> None:
    folder = write_app(tmp_path, "rerun_finished=True")
    run_app(folder, "a=1")
    run_app(folder, "a=1")
    [run] = runs(folder)
    assert len(calls(folder)) == 2
    assert run.info.status == "FINISHED"


@pytest.mark.slow
def test_match_overrides_ignores_config_changes_outside_them(tmp_path: Path) -> None:
    folder = write_app(tmp_path, "match_overrides=True, update=update")
    run_app(folder, "a=1", APP_B="first")
    run_app(folder, "a=1", APP_B="second")
    assert len(runs(folder)) == 1
    plain = tmp_path / "plain"
    plain.mkdir()
    write_app(plain, "update=update")
    run_app(plain, "a=1", APP_B="first")
    run_app(plain, "a=1", APP_B="second")
    assert len(runs(plain)) == 2


@pytest.mark.slow
def test_update_changes_what_is_saved(tmp_path: Path) -> None:
    folder = write_app(tmp_path, "update=update")
    run_app(folder, "a=2", APP_B="changed")
    [run] = runs(folder)
    assert run.data.params["b"] == "changed"
    assert yaml.safe_load(artifact(run, ".hydra/config.yaml")) == {"a": 2, "b": "changed"}


@pytest.mark.slow
def test_chdir_runs_the_app_in_its_artifact_dir(tmp_path: Path) -> None:
    folder = write_app(tmp_path, "chdir=True")
    run_app(folder, "a=1")
    [run] = runs(folder)
    assert artifact(run, "made_here.txt") == "hello"
    assert calls(folder)[0]["cwd"] == run.info.artifact_uri.removeprefix("file://")


@pytest.mark.slow
def test_dry_run_prints_configs_and_touches_no_store(tmp_path: Path) -> None:
    folder = write_app(tmp_path)
    result = run_app(folder, "--dry-run", "-m", "a=1,2")
    assert result.returncode == 0, result.stderr
    assert "# app: a=1\na: 1\nb: x\n" in result.stdout
    assert "# app: a=2\na: 2\nb: x\n" in result.stdout
    assert not (folder / "mlflow.db").exists()
    assert calls(folder) == []


@pytest.mark.slow
def test_a_custom_tracking_uri(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    folder = write_app(tmp_path, f"tracking_uri={uri!r}")
    run_app(folder, "a=1")
    assert not (folder / "mlflow.db").exists()
    assert len(runs(folder, db="elsewhere.db")) == 1


@pytest.mark.slow
def test_a_tracking_uri_without_a_scheme_is_a_sqlite_file(tmp_path: Path) -> None:
    folder = write_app(tmp_path, "tracking_uri='stores/here.db'")
    (folder / "stores").mkdir()
    result = run_app(folder, "a=1")
    assert result.returncode == 0, result.stderr
    assert len(runs(folder, db="stores/here.db")) == 1


@pytest.mark.slow
def test_the_tracking_uri_environment_variable(tmp_path: Path) -> None:
    folder = write_app(tmp_path)
    uri = f"sqlite:///{tmp_path / 'from_env.db'}"
    run_app(folder, "a=1", MLFLOW_TRACKING_URI=uri)
    assert len(runs(folder, db="from_env.db")) == 1


@pytest.mark.slow
def test_yaml_configs_are_validated_by_the_schema(tmp_path: Path) -> None:
    folder = write_app(tmp_path, "config_path='conf'")
    (folder / "conf").mkdir()
    (folder / "conf" / "config.yaml").write_text("b: from_yaml\n")
    result = run_app(folder, "b=7")
    assert result.returncode == 0, result.stderr
    [run] = runs(folder)
    assert run.data.params == {"a": "1", "b": "7"}  # `a` from the schema's defaults
    assert "Warning" not in result.stderr
    # As with @hydra.main, a key the YAML does not have cannot be overridden...
    refused = run_app(folder, "a=7")
    assert refused.returncode != 0
    assert "Key 'a' is not in struct" in refused.stderr
    # ...unless the schema comes first in the defaults list, as Hydra documents.
    (folder / "conf" / "config.yaml").write_text("defaults:\n  - config_schema\n  - _self_\nb: y\n")
    result = run_app(folder, "a=7")
    assert result.returncode == 0, result.stderr
    assert {r.data.params["a"] for r in runs(folder)} == {"1", "7"}
    assert "Warning" not in result.stderr


@pytest.mark.slow
def test_8_runs_through_joblib_with_4_workers(tmp_path: Path) -> None:
    """Four worker processes write one fresh store at once, two runs each."""
    folder = write_app(tmp_path)
    result = run_app(
        folder, "-m", "a=range(1,9)", "hydra/launcher=joblib", "hydra.launcher.n_jobs=4"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = runs(folder)
    assert len(found) == 8
    assert {r.info.status for r in found} == {"FINISHED"}
    assert sorted(int(r.data.params["a"]) for r in found) == list(range(1, 9))
    assert "database is locked" not in result.stderr


def test_start_run_and_artifact_helpers_without_the_decorator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hydraflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = {"lr": 0.1, "model": {"depth": 3}}
    with hydraflow.start_run(config, experiment_name="manual") as run:
        directory = hydraflow.get_artifact_dir(run)
        with hydraflow.chdir_artifact(run) as inside:
            Path("note.txt").write_text("kept")
        assert inside == directory == Path.cwd() / inside.relative_to(Path.cwd())
    [found] = runs(tmp_path, experiment="manual")
    assert found.info.status == "FINISHED"
    assert found.data.params == {"lr": "0.1", "model.depth": "3"}
    assert (directory / "note.txt").read_text() == "kept"
    with hydraflow.start_run(config, experiment_name="manual") as again:
        assert again.info.run_id == run.info.run_id
        # The same config again while this process runs it: a user's error.
        with (
            pytest.raises(HydraflowError, match=f"is running in pid {os.getpid()}") as busy,
            hydraflow.start_run(config, experiment_name="manual"),
        ):
            pass
        assert isinstance(busy.value, RuntimeError)
    mlflow.set_tracking_uri(None)


@pytest.mark.slow
def test_the_store_stays_in_the_launch_dir_when_hydra_changes_directory(tmp_path: Path) -> None:
    folder = write_app(tmp_path)
    result = run_app(folder, "a=1", "hydra.job.chdir=True")
    assert result.returncode == 0, result.stderr
    [run] = runs(folder)
    assert Path(run.info.artifact_uri.removeprefix("file://")).is_relative_to(folder / "mlruns")
    assert calls(folder)[0]["cwd"] != str(folder)
    assert not list(folder.glob("outputs/**/mlflow.db"))


@pytest.mark.slow
def test_parallel_commands_share_a_fresh_store(tmp_path: Path) -> None:
    folder = write_app(tmp_path)
    (folder / "hydraflow.yaml").write_text(
        "jobs:\n  app:\n    run: python app.py\n    sets:\n      - each: a=1:4\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["APP_RECORD"] = str(folder / "calls.jsonl")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "hydraflow"), "run", "app", "-j", "4"],
        cwd=folder,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client = mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    names = [e.name for e in client.search_experiments()]
    assert sorted(names) == ["Default", "app"]
    found = runs(folder)
    assert sorted(int(r.data.params["a"]) for r in found) == list(range(1, 5))
    assert {r.info.status for r in found} == {"FINISHED"}


START_RUN_IN_HYDRA = """
import logging
import hydra
import hydraflow

@hydra.main(config_path=None, config_name=None, version_base=None)
def task(cfg):
    with hydraflow.start_run({"a": 1}, experiment_name="other"):
        logging.getLogger("task").info("inside the run")

if __name__ == "__main__":
    task()
"""


@pytest.mark.slow
def test_start_run_inside_hydra_keeps_the_jobs_log(tmp_path: Path) -> None:
    (tmp_path / "task.py").write_text(START_RUN_IN_HYDRA)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    result = subprocess.run(
        [sys.executable, "task.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    [run] = runs(tmp_path, experiment="other")
    assert "inside the run" in artifact(run, "task.log")


@pytest.mark.slow
def test_a_new_stores_table_creation_is_not_announced(tmp_path: Path) -> None:
    """MLflow said "Creating initial MLflow database tables..." (and alembic
    its migrations) in the app's output on the first run into a new store."""
    folder = write_app(tmp_path)
    app = folder / "app.py"
    app.write_text("import logging\nlogging.basicConfig(level=logging.INFO)\n" + app.read_text())
    result = run_app(folder)
    assert result.returncode == 0, result.stderr
    assert [r.info.status for r in runs(folder)] == ["FINISHED"]
    for noise in ("Creating initial", "Updating database tables", "alembic", "Context impl"):
        assert noise not in result.stderr


def test_quieting_table_creation_keeps_warnings_and_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from hydraflow.store import quiet_table_creation

    logger = logging.getLogger("mlflow.store.db.utils")
    before = logger.level
    with caplog.at_level(logging.INFO), quiet_table_creation():
        logger.info("Creating initial MLflow database tables...")
        logging.getLogger("alembic.runtime.migration").info("Context impl SQLiteImpl.")
        logger.error("a real error")
    assert [record.getMessage() for record in caplog.records] == ["a real error"]
    assert logger.level == before


def test_reading_an_artifact_through_mlflow_draws_no_progress_bar(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from hydraflow.tracking.artifacts import ClientArtifacts
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.create_run(client.create_experiment("x", str(tmp_path / "artifacts")))
    (tmp_path / "a.log").write_text("hello")
    client.log_artifact(run.info.run_id, str(tmp_path / "a.log"))
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "true")
    capfd.readouterr()
    assert ClientArtifacts(client, run.info.run_id).read("a.log") == "hello"
    assert "Downloading artifacts" not in capfd.readouterr().err
    assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "true"  # the user's, kept
