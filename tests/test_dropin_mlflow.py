"""An app's own MLflow calls keep working after `@hydra.main` becomes
`@hydraflow.main` (tracking/inner_calls.py), and hydraflow's runs carry the
tags MLflow's `start_run` gives a run (user, source, git).

The in-process tests track a job with `claim` and `tracked_run` (what the
decorator does) and make the app's calls inside; MLflow's own reading of the
store is the oracle for where the app's values landed. The end-to-end test
runs the reviewer's app under `@hydra.main` (the oracle: exit 0) and
`@hydraflow.main`.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import hydraflow
import mlflow
import pytest
from hydraflow.errors import HydraflowError
from hydraflow.tracking.configs import to_record
from hydraflow.tracking.lifecycle import (
    Claim,
    JobContext,
    TrackingOptions,
    claim,
    tracked_run,
)

# Bound as an app's `from mlflow import start_run` binds them: before any job.
from mlflow import end_run as early_end_run
from mlflow import start_run as early_start_run

from tests.conftest import run_in_own_group

CONFIG = {"lr": 0.1}


@pytest.fixture(autouse=True)
def no_experiment_chosen() -> Iterator[None]:
    """`mlflow.set_experiment` outlives a test otherwise: MLflow keeps it,
    and sets MLFLOW_EXPERIMENT_ID, which later subprocesses would take."""
    from mlflow.tracking import fluent

    before = os.environ.get("MLFLOW_EXPERIMENT_ID")
    yield
    fluent._active_experiment_id = None
    if before is None:
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    else:
        os.environ["MLFLOW_EXPERIMENT_ID"] = before


def take(launch_folder: Path, experiment: str = "inner") -> tuple[Claim, JobContext]:
    context = JobContext(experiment=experiment, launch_dir=launch_folder, overrides=["lr=0.1"])
    config_yaml, container = to_record(CONFIG)
    options = TrackingOptions(force_new_run=True)
    return claim(context, config_yaml, container, options), context


def client(launch_folder: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(f"sqlite:///{launch_folder / 'mlflow.db'}")


def test_the_apps_start_run_is_handed_the_jobs_run(launch_folder: Path) -> None:
    claimed, context = take(launch_folder)
    with tracked_run(claimed, context, CONFIG) as job:
        with mlflow.start_run(run_name="myrun", tags={"team": "a"}, description="d") as run:
            mlflow.log_metric("loss", 0.5)
        assert run.info.run_id == job.info.run_id
        # Its `with` exit left the run to hydraflow: still active, still running.
        active = mlflow.active_run()
        assert active is not None and active.info.run_id == job.info.run_id
        assert client(launch_folder).get_run(job.info.run_id).info.status == "RUNNING"
        mlflow.log_metric("after", 1.0)
    ended = client(launch_folder).get_run(job.info.run_id)
    assert ended.info.status == "FINISHED"
    assert ended.data.metrics == {"loss": 0.5, "after": 1.0}
    assert ended.info.run_name == "myrun"
    assert ended.data.tags["team"] == "a"
    assert ended.data.tags["mlflow.note.content"] == "d"
    assert mlflow.active_run() is None


def test_start_run_bound_before_the_job_is_handed_it_too(launch_folder: Path) -> None:
    claimed, context = take(launch_folder)
    with tracked_run(claimed, context, CONFIG) as job:
        with early_start_run(run_id=job.info.run_id) as run:
            mlflow.log_metric("loss", 0.25)
        early_start_run()
        early_end_run()  # the job's run: hydraflow ends it
        assert run.info.run_id == job.info.run_id
        assert client(launch_folder).get_run(job.info.run_id).info.status == "RUNNING"
    ended = client(launch_folder).get_run(job.info.run_id)
    assert (ended.info.status, ended.data.metrics) == ("FINISHED", {"loss": 0.25})


def test_the_app_failing_in_its_own_run_fails_the_jobs_run(launch_folder: Path) -> None:
    claimed, context = take(launch_folder)
    with (
        pytest.raises(ValueError, match="boom"),
        tracked_run(claimed, context, CONFIG) as job,
        mlflow.start_run(),
    ):
        mlflow.end_run()
        raise ValueError("boom")
    assert client(launch_folder).get_run(job.info.run_id).info.status == "FAILED"


def test_a_nested_run_is_mlflows_child_beside_its_parent(launch_folder: Path) -> None:
    claimed, context = take(launch_folder)
    with tracked_run(claimed, context, CONFIG) as job:
        with mlflow.start_run(nested=True) as child:
            mlflow.log_metric("inner", 1.0)
        assert child.info.run_id != job.info.run_id
    found = client(launch_folder).get_run(child.info.run_id)
    assert found.info.status == "FINISHED"
    assert found.data.tags["mlflow.parentRunId"] == job.info.run_id
    assert found.info.experiment_id == job.info.experiment_id
    assert found.data.metrics == {"inner": 1.0}


def test_another_store_is_one_line_naming_the_decorators_option(launch_folder: Path) -> None:
    claimed, context = take(launch_folder)
    with tracked_run(claimed, context, CONFIG) as job:
        mlflow.set_tracking_uri("sqlite:///mlflow.db")  # the job's store, spelt otherwise
        mlflow.log_metric("loss", 0.5)
        with pytest.raises(HydraflowError, match=r"tracking_uri='sqlite:///other.db'"):
            mlflow.set_tracking_uri("sqlite:///other.db")
        mlflow.log_metric("still", 1.0)
    ended = client(launch_folder).get_run(job.info.run_id)
    assert ended.data.metrics == {"loss": 0.5, "still": 1.0}
    assert not (launch_folder / "other.db").exists()


def test_another_experiment_is_a_warning_and_the_run_stays(
    launch_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    claimed, context = take(launch_folder)
    with caplog.at_level(logging.WARNING, "hydraflow"), tracked_run(claimed, context, CONFIG):
        experiment = mlflow.set_experiment("my-exp")
        with mlflow.start_run():
            mlflow.log_metric("loss", 0.5)
    assert experiment.name == "inner"
    assert "mlflow.set_experiment('my-exp') in a job: its run stays in experiment 'inner'" in (
        caplog.text
    )
    assert client(launch_folder).get_experiment_by_name("my-exp") is None


def test_outside_a_job_mlflow_is_itself(launch_folder: Path) -> None:
    claimed, context = take(launch_folder)
    with tracked_run(claimed, context, CONFIG):
        pass
    mlflow.set_tracking_uri(f"sqlite:///{launch_folder / 'other.db'}")
    mlflow.set_experiment("plain")
    with early_start_run() as run:
        mlflow.log_metric("x", 1.0)
    assert mlflow.active_run() is None
    ended = mlflow.MlflowClient().get_run(run.info.run_id)
    assert (ended.info.status, ended.data.metrics) == ("FINISHED", {"x": 1.0})
    with pytest.raises(Exception, match="already active"), mlflow.start_run():
        mlflow.start_run()


def test_a_run_has_the_tags_mlflows_start_run_gives(launch_folder: Path) -> None:
    """The oracle: a plain `mlflow.start_run()` run made in this process."""
    claimed, _ = take(launch_folder)
    assert claimed.run is not None
    mlflow.set_experiment("oracle")
    with mlflow.start_run() as oracle:
        pass
    theirs = standard_tags(client(launch_folder).get_run(oracle.info.run_id))
    ours = standard_tags(claimed.run)
    assert ours == theirs
    # Git's tags too where the script is in a repository (MLflow looks once a
    # process): the end-to-end test below shows them.
    assert {"mlflow.user", "mlflow.source.name", "mlflow.source.type"} <= set(ours)
    assert claimed.run.info.user_id == oracle.info.user_id != "unknown"


def standard_tags(run: mlflow.entities.Run) -> dict[str, str]:
    return {
        key: value
        for key, value in run.data.tags.items()
        if key.startswith("mlflow.") and key != "mlflow.runName"
    }


APP = """
import os, sys

import hydra, hydraflow, mlflow
from mlflow import start_run

decorate = hydraflow.main if sys.argv.pop(1) == "hydraflow" else hydra.main


# The reviewer's app: written for `@hydra.main`, run under both.
@decorate(version_base=None, config_path=None, config_name=None)
def main(cfg):
    mlflow.set_experiment("my-exp")
    with start_run(run_name="myrun"):
        mlflow.log_metric("loss", 0.5)
    with mlflow.start_run(nested=True) if mlflow.active_run() else mlflow.start_run():
        mlflow.log_metric("step", 1.0)
    return 0.5


if __name__ == "__main__":
    main()
"""


@pytest.mark.slow
def test_the_reviewers_app_runs_as_under_hydra(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(APP)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "app.py"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "app"], cwd=tmp_path, check=True)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.strip()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    plain = run_in_own_group([sys.executable, "app.py", "hydra", "+lr=0.1"], tmp_path, env, 300)
    assert plain.returncode == 0, plain.stderr
    ours = run_in_own_group([sys.executable, "app.py", "hydraflow", "+lr=0.1"], tmp_path, env, 300)
    assert ours.returncode == 0, ours.stderr
    assert "Traceback" not in ours.stderr
    store = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = store.get_experiment_by_name("app")
    assert experiment is not None
    runs = store.search_runs([experiment.experiment_id])
    [job] = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    [child] = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == job.info.run_id]
    assert (job.info.status, job.info.run_name, job.data.metrics) == (
        "FINISHED",
        "myrun",
        {"loss": 0.5},
    )
    assert child.data.metrics == {"step": 1.0}
    # MLflow's standard tags, as on the run the oracle's `start_run` made.
    mine = store.get_experiment_by_name("my-exp")
    assert mine is not None
    [oracle] = store.search_runs([mine.experiment_id], "attributes.run_name = 'myrun'")
    assert standard_tags(job) == standard_tags(oracle)
    assert job.data.tags["mlflow.source.git.commit"] == commit
    assert "mlflow.source.git.branch" in job.data.tags
    assert job.info.user_id == oracle.info.user_id != "unknown"


class Plain:
    x: int = 1


def test_a_class_that_is_not_a_dataclass_is_named_so() -> None:
    with pytest.raises(TypeError, match=r"^hydraflow.main\(Plain\): Plain is a class, not a data"):
        hydraflow.main(Plain)


ATTRS_APP = """
import attr
import hydraflow


@attr.s(auto_attribs=True)
class C:
    x: int = 1


@hydraflow.main(C)
def app(cfg):
    print(type(cfg).__name__, attr.asdict(cfg))


if __name__ == "__main__":
    app()
"""


@pytest.mark.slow
def test_an_attrs_class_is_a_schema_as_hydra_takes_it(tmp_path: Path) -> None:
    """Oracle: Hydra composes the attrs class stored as the primary config."""
    attr = pytest.importorskip("attr")
    from hydra import compose, initialize
    from hydra.core.config_store import ConfigStore

    @attr.s(auto_attribs=True)
    class C:
        x: int = 1

    ConfigStore.instance().store(name="attrs_oracle", node=C)
    with initialize(version_base=None):
        oracle = compose("attrs_oracle", overrides=["x=3"])
    (tmp_path / "app.py").write_text(ATTRS_APP)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = run_in_own_group([sys.executable, "app.py", "x=3"], tmp_path, env, 300)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"C {dict(oracle)}\n"
    store = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = store.get_experiment_by_name("app")
    assert experiment is not None
    [run] = store.search_runs([experiment.experiment_id])
    assert run.data.params == {"x": "3"}


def test_a_moved_project_is_said_once_and_unwritable_artifacts_in_one_line(
    launch_folder: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """MLflow keeps an experiment's artifact location absolute: after `mv proj
    moved`, new runs' artifacts go to `proj/` (here a file: not writable)."""
    from hydraflow import store

    project = launch_folder / "proj"
    hydra_dir = project / "outputs" / ".hydra"
    hydra_dir.mkdir(parents=True)
    (hydra_dir / "config.yaml").write_text("lr: 0.1\n")
    monkeypatch.chdir(project)
    job = JobContext("moved", project, project / "outputs", ["lr=0.1"])
    config_yaml, container = to_record(CONFIG)
    with tracked_run(claim(job, config_yaml, container, TrackingOptions()), job, CONFIG):
        pass
    store.forget_opened()
    mlflow.set_tracking_uri(None)  # and MLFLOW_TRACKING_URI, which it had set
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    project.rename(launch_folder / "moved")
    project.write_text("no longer a folder")
    moved = launch_folder / "moved"
    monkeypatch.chdir(moved)
    job = JobContext("moved", moved, moved / "outputs", ["lr=0.2"])
    config_yaml, container = to_record({"lr": 0.2})
    claimed = claim(job, config_yaml, container, TrackingOptions())
    with (
        caplog.at_level(logging.WARNING, "hydraflow"),
        pytest.raises(
            HydraflowError, match=rf"^the run's artifacts cannot be written to {project}"
        ),
        tracked_run(claimed, job, {"lr": 0.2}),
    ):
        pass
    assert f"keeps its artifacts in {project / 'mlruns'}" in caplog.text
    assert f"outside the store's folder {moved}, whose mlruns/" in caplog.text
