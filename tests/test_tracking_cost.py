"""The shortcuts that make a run cheap give what MLflow's own calls give:
the digest lookup, the fluent active run, the artifacts and the code record.
In-process, on a real temporary SQLite store (the end-to-end record is
pinned by test_stored_record.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import mlflow
import pytest
from hydraflow import store
from hydraflow.mlflow_schema import DIGEST_TAG
from hydraflow.tracking.artifacts import ClientArtifacts, LocalArtifacts, artifacts_of
from hydraflow.tracking.configs import to_record
from hydraflow.tracking.identity import find_runs
from hydraflow.tracking.inputs import project_modules
from hydraflow.tracking.lifecycle import JobContext, TrackingOptions, claim, tracked_run

CONFIG = {"lr": 0.1}


def client_of(launch_folder: Path) -> tuple[mlflow.MlflowClient, str]:
    return store.open_experiment(f"sqlite:///{launch_folder / 'mlflow.db'}", "cost", launch_folder)


def test_the_digest_lookup_finds_what_mlflows_search_finds(launch_folder: Path) -> None:
    client, experiment_id = client_of(launch_folder)
    made = [client.create_run(experiment_id, tags={DIGEST_TAG: "d"}) for _ in range(3)]
    client.create_run(experiment_id, tags={DIGEST_TAG: "other"})
    client.delete_run(made[1].info.run_id)
    searched = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{DIGEST_TAG}` = 'd'",
        order_by=["attributes.start_time ASC", "attributes.run_id ASC"],
    )
    found = find_runs(client, experiment_id, "d")
    assert [r.info.run_id for r in found] == [r.info.run_id for r in searched]
    assert [r.data.tags for r in found] == [r.data.tags for r in searched]
    assert len(found) == 2


def test_the_claimed_run_is_mlflows_active_run_and_ends_as_with_start_run(
    launch_folder: Path,
) -> None:
    config_yaml, container = to_record(CONFIG)
    job = JobContext(experiment="cost", launch_dir=launch_folder, overrides=["lr=0.1"])
    claimed = claim(job, config_yaml, container, TrackingOptions())
    with tracked_run(claimed, job, container) as run:
        active = mlflow.active_run()
        assert active is not None and active.info.run_id == run.info.run_id
        mlflow.log_metric("loss", 0.5)  # the fluent API logs to the job's run
        with mlflow.start_run() as inner:  # the app's own is handed the job's run
            assert inner.info.run_id == run.info.run_id
    assert mlflow.active_run() is None
    last = mlflow.last_active_run()
    assert last is not None and last.info.run_id == run.info.run_id
    stored = claimed.client.get_run(str(run.info.run_id))
    assert (stored.info.status, stored.data.metrics) == ("FINISHED", {"loss": 0.5})


def test_system_metrics_logging_takes_mlflows_own_start_run(
    launch_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "true")
    config_yaml, container = to_record(CONFIG)
    job = JobContext(experiment="cost", launch_dir=launch_folder, overrides=["lr=0.1"])
    claimed = claim(job, config_yaml, container, TrackingOptions())
    with tracked_run(claimed, job, container) as run:
        from mlflow.tracking.fluent import run_id_to_system_metrics_monitor

        assert run.info.run_id in run_id_to_system_metrics_monitor
    assert mlflow.active_run() is None


def test_local_artifacts_are_written_as_mlflow_writes_them(launch_folder: Path) -> None:
    source = launch_folder / "source"
    (source / "sub").mkdir(parents=True)
    (source / "a.yaml").write_text("a: 1\n")
    (source / "sub" / "b.txt").write_text("b\n")
    (launch_folder / "job.log").write_text("line\n")
    client, experiment_id = client_of(launch_folder)
    theirs, mine = (client.create_run(experiment_id) for _ in range(2))
    client.log_artifacts(theirs.info.run_id, str(source), ".hydra")
    client.log_artifact(theirs.info.run_id, str(launch_folder / "job.log"))
    artifacts = artifacts_of(client, mine)
    assert isinstance(artifacts, LocalArtifacts)
    artifacts.log_dir(source, ".hydra")
    artifacts.log_file(launch_folder / "job.log")
    assert listing(client, mine.info.run_id) == listing(client, theirs.info.run_id)
    assert artifacts.read("job.log") == "line\n"
    assert artifacts.read("absent.log") == ""
    through_client = ClientArtifacts(client, theirs.info.run_id)
    assert through_client.read("job.log") == "line\n"
    assert through_client.read("absent.log") == ""


def listing(client: mlflow.MlflowClient, run_id: str, path: str | None = None) -> list[tuple]:
    found: list[tuple] = []
    for item in client.list_artifacts(run_id, path):
        found += (
            listing(client, run_id, item.path) if item.is_dir else [(item.path, item.file_size)]
        )
    return found


def test_project_modules_follow_imports_and_removals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cost_probe_module.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    probe = (tmp_path / "cost_probe_module.py").resolve()
    assert probe not in set(project_modules())
    import cost_probe_module  # noqa: F401

    assert probe in set(project_modules())
    del sys.modules["cost_probe_module"]
    assert probe not in set(project_modules())
