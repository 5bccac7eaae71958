"""The store the warm server opens ahead for the commands it forks
(`store.open_ahead`): a forked command uses it as it would its own, and
never where a fresh command would see another store or experiment.
MLflow's own client is the oracle for what was stored."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pytest
from hydraflow import store

NAME = "sweep"


@pytest.fixture
def ahead(launch_folder: Path) -> str:
    """A store with experiment NAME, opened ahead as the warm server does."""
    uri = store.tracking_uri(None, launch_folder)
    store.open_experiment(uri, NAME, launch_folder)
    store.forget_opened()
    store.forget_cached_stores()
    store.open_ahead(uri, NAME, launch_folder)
    return uri


def in_fork(uri: str) -> str:
    """Opens the experiment in a forked process, as a command does, and
    starts and ends a run in it; the run's id."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        status = 1
        try:
            client, experiment_id = store.open_experiment(uri, NAME, Path.cwd())
            run = client.create_run(experiment_id)
            client.set_terminated(run.info.run_id)
            os.write(write, run.info.run_id.encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        run_id = pipe.read().decode()
    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0
    return run_id


def experiment_id(client: mlflow.MlflowClient) -> str:
    experiment = client.get_experiment_by_name(NAME)
    assert experiment is not None
    return str(experiment.experiment_id)


def test_a_forked_command_records_in_the_store_opened_ahead(ahead: str) -> None:
    run_ids = {in_fork(ahead) for _ in range(3)}
    client = mlflow.MlflowClient(ahead)
    runs = client.search_runs([experiment_id(client)])
    assert {run.info.run_id for run in runs} == run_ids
    assert {run.info.status for run in runs} == {"FINISHED"}


def test_opened_ahead_holds_no_connection_across_the_fork(ahead: str) -> None:
    client, _ = store._experiments_ahead[(ahead, NAME)]
    assert client._tracking_client.store.engine.pool.checkedin() == 0


def test_an_experiment_deleted_since_is_restored_as_a_fresh_command_would(ahead: str) -> None:
    client = mlflow.MlflowClient(ahead)
    deleted = experiment_id(client)
    client.delete_experiment(deleted)
    in_fork(ahead)
    assert client.get_experiment(deleted).lifecycle_stage == "active"


def test_a_store_replaced_since_is_made_afresh(ahead: str, launch_folder: Path) -> None:
    path = store.sqlite_path(ahead)
    assert path is not None
    for leftover in launch_folder.glob("mlflow.db*"):
        leftover.unlink()
    run_id = in_fork(ahead)
    client = mlflow.MlflowClient(ahead)
    assert client.get_run(run_id).info.status == "FINISHED"
    assert [e.name for e in client.search_experiments()] == [NAME, "Default"]


def test_nothing_is_opened_ahead_before_the_store_is_made(launch_folder: Path) -> None:
    uri = store.tracking_uri(None, launch_folder)
    store.open_ahead(uri, NAME, launch_folder)
    assert not (launch_folder / "mlflow.db").exists()
    assert store.opened_ahead(uri, NAME) is None


def test_an_experiment_not_yet_made_is_left_to_the_command(launch_folder: Path) -> None:
    uri = store.tracking_uri(None, launch_folder)
    store.open_experiment(uri, "other", launch_folder)
    store.forget_opened()
    store.open_ahead(uri, NAME, launch_folder)
    assert mlflow.MlflowClient(uri).get_experiment_by_name(NAME) is None
    assert store.opened_ahead(uri, NAME) is None
