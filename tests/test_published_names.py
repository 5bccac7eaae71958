"""The published HydraFlow's other six names: `Collection`,
`get_experiment_names`, `iter_experiment_dirs`, `iter_artifacts_dirs`,
`iter_artifact_paths` and `log_run`.

The statements of tests/published_names.py give here what the published
0.23.2 gave (tests/published_names_oracle.py says how that was measured): on
the store the published tool made (tests/fixtures/published/), on a
collection of plain items, and on this package's tutorial runs what they gave
on the published tool's own. A run `log_run` records holds what MLflow's
client reads of a run of `@hydraflow.main` with the same config, and the
files the published `log_run` records; never a secret.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import warnings
from pathlib import Path

import hydraflow
import mlflow
import pytest
from hydraflow.errors import HydraflowError

from tests.conftest import kill_group, replace_text, run_cli, run_in_own_group
from tests.published_names import (
    COLLECTION_SETUP,
    COLLECTION_STATEMENTS,
    STORE_STATEMENTS,
    TUTORIAL_STATEMENTS,
    evaluate,
    log_run_reading,
)
from tests.published_names_oracle import (
    PUBLISHED_COLLECTION,
    PUBLISHED_LOG_RUN,
    PUBLISHED_STORE,
    PUBLISHED_TUTORIAL,
)

# `hydraflow.__all__` as the published 0.23.2's Python printed it.
PUBLISHED_ALL = [
    "Collection",
    "Run",
    "RunCollection",
    "chdir_artifact",
    "get_artifact_dir",
    "get_experiment_names",
    "iter_artifact_paths",
    "iter_artifacts_dirs",
    "iter_experiment_dirs",
    "iter_run_dirs",
    "log_run",
    "main",
    "start_run",
]
FIXTURE = Path(__file__).parent / "fixtures" / "published"
APPS = Path(__file__).parent / "apps" / "logrun"
TOKEN = "logrun-secret-42"


@pytest.fixture
def published_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The published tool's store, its paths made this folder's; the default store here."""
    folder = tmp_path / "store"
    folder.mkdir()
    with tarfile.open(FIXTURE / "store.tar.gz") as archive:
        archive.extractall(folder, filter="data")
    replace_text(folder / "mlflow.db", "/PUBLISHED_STORE", str(folder))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return folder


def test_every_name_the_published_tool_exports_is_exported() -> None:
    assert set(PUBLISHED_ALL) <= set(hydraflow.__all__)
    for name in PUBLISHED_ALL:
        assert getattr(hydraflow, name) is not None, name


def test_on_the_published_tools_store_each_name_gives_its_values(published_store: Path) -> None:
    from hydraflow.errors import NoRunsWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoRunsWarning)  # `nosuch` names no experiment: said
        got = evaluate(STORE_STATEMENTS, published_store)
    for statement, value, expected in zip(STORE_STATEMENTS, got, PUBLISHED_STORE, strict=True):
        assert value == expected, statement


def test_runs_of_mlflows_default_experiment_are_left_out_unless_named(
    published_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run started outside any experiment goes to MLflow's `Default`. The
    published 0.23.2, on a store where `Default` holds a run with artifacts
    and `app` one, listed only `app`'s for `iter_run_dirs()`, `("*")`,
    `(lambda name: True)` and `(["Default", "app"])`, and none for
    `("Default")`; here the run is listed when named as `"Default"`."""
    monkeypatch.chdir(published_store)
    client = mlflow.MlflowClient("sqlite:///mlflow.db")
    default_run = client.create_run("0").info.run_id
    client.log_text(default_run, "x", "a.txt")
    client.set_terminated(default_run)
    apps = sorted(hydraflow.iter_run_dirs("app"))
    assert len(apps) == 7
    for names in (None, "*", lambda name: True, ["*"]):
        assert sorted(hydraflow.iter_run_dirs(names)) == apps, names
        assert sorted(hydraflow.iter_artifacts_dirs(names)) == [d / "artifacts" for d in apps]
    assert sorted(hydraflow.iter_run_dirs("mlruns")) == apps  # a tracking folder, all its runs
    (named,) = hydraflow.iter_run_dirs("Default")
    assert named.name == default_run and (named / "artifacts" / "a.txt").is_file()
    assert sorted(hydraflow.iter_run_dirs(["Default", "app"])) == sorted([named, *apps])
    assert list(hydraflow.iter_artifact_paths("a.txt", "Default")) == [named / "artifacts/a.txt"]


def test_a_collection_of_plain_items_behaves_as_the_published_one(tmp_path: Path) -> None:
    got = evaluate(COLLECTION_STATEMENTS, tmp_path, COLLECTION_SETUP)
    for statement, value, expected in zip(
        COLLECTION_STATEMENTS, got, PUBLISHED_COLLECTION, strict=True
    ):
        assert value == expected, statement


@pytest.mark.slow
def test_on_our_tutorial_runs_the_names_give_what_they_gave_on_the_published_tools(
    tutorial_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    got = evaluate(TUTORIAL_STATEMENTS, tutorial_copy, ids=True)
    for statement, value, expected in zip(
        TUTORIAL_STATEMENTS, got, PUBLISHED_TUTORIAL, strict=True
    ):
        assert value == expected, statement
    # A tracking folder first, as `iter_run_dirs` takes it.
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tutorial_copy)
        assert hydraflow.get_experiment_names("mlruns") == hydraflow.get_experiment_names()
        assert list(hydraflow.iter_artifacts_dirs("mlruns", "job_submit")) == list(
            hydraflow.iter_artifacts_dirs("job_submit")
        )


def test_a_run_collection_is_a_collection_and_a_sequence(
    published_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collections.abc import Sequence

    monkeypatch.chdir(published_store)
    runs = hydraflow.Run.load(hydraflow.iter_run_dirs("app"))
    assert isinstance(runs, hydraflow.Collection) and isinstance(runs, Sequence)
    assert runs.index(runs[2]) == 2 and runs[3] in runs and next(reversed(runs)) == runs[-1]
    assert sorted(runs.to_list("width")) == [100, 100, 200, 200, 300, 400, 500]
    assert runs.sample(3, seed=1).n_unique("run_id") == 3
    assert len(runs.filter(runs.gt("width", "height"))) == 4
    with pytest.raises(ValueError, match="no run matches width=999"):
        runs.get(width=999)


@pytest.mark.parametrize("wanted", [[100.5], ["100"], "100", 100.0, [True], (99.5, 100.5)])
def test_a_run_collection_filters_as_a_collection_of_its_values_does(
    published_store: Path, monkeypatch: pytest.MonkeyPatch, wanted: object
) -> None:
    """The frame answers only values of its column's own kind: its cast made
    100.5 and "100" the integer 100, and a text against numbers an error."""
    monkeypatch.chdir(published_store)
    runs = hydraflow.Run.load(hydraflow.iter_run_dirs("app"))
    values = hydraflow.Collection([{"width": run.get("width")} for run in runs])
    assert len(runs.filter(width=wanted)) == len(values.filter(width=wanted))


def test_a_name_is_a_name_beside_a_folder_of_that_name(
    published_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`iter_run_dirs("app")` beside a folder `app/` that holds no runs (a
    job's outputs, say) still names the experiment, as the published tool does."""
    monkeypatch.chdir(published_store)
    expected = sorted(hydraflow.iter_run_dirs("app"))
    (published_store / "app").mkdir()
    assert sorted(hydraflow.iter_run_dirs("app")) == expected
    assert len(expected) == 7


def test_bad_input_is_a_clear_error(published_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hydraflow import Collection

    monkeypatch.chdir(published_store)
    with pytest.raises(HydraflowError, match=r"iter_experiment_dirs: no such folder 'app'"):
        list(hydraflow.iter_experiment_dirs(Path("app")))
    with pytest.raises(HydraflowError, match=r"iter_artifacts_dirs: no such folder"):
        list(hydraflow.iter_artifacts_dirs("./nosuch", "app"))
    with pytest.raises(TypeError, match=r"experiment names must be a name or glob pattern"):
        list(hydraflow.iter_experiment_dirs("mlruns", 3))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"experiment names must be"):
        hydraflow.get_experiment_names([1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"'/etc/passwd' is not a path inside a run's artifacts"):
        list(hydraflow.iter_artifact_paths("/etc/passwd"))
    with pytest.raises(ValueError, match=r"not a path inside"):
        list(hydraflow.iter_artifact_paths("../../mlflow.db"))
    items = Collection([{"a": 1}, {"b": 2}])
    assert list(items.filter(a=1)) == [{"a": 1}]  # an item without the key matches nothing
    with pytest.raises(AttributeError, match=r"no item has the key 'c'"):
        items.filter(c=1)
    with pytest.raises(AttributeError, match=r"\{'b': 2\} has no key 'a'"):
        items.to_list("a")
    with pytest.raises(ValueError, match=r"a mask of 1 values for 2 items"):
        items.filter([True])
    monkeypatch.chdir(published_store.parent)
    with pytest.raises(HydraflowError, match=r"no MLflow store at .*mlflow.db"):
        hydraflow.get_experiment_names()


def run_app(folder: Path, script: str, *args: str) -> str:
    """The app's exit status and output; the script copied from APPS when not in `folder`."""
    if not (folder / script).exists():
        shutil.copy(APPS / script, folder / script)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env |= {"MLFLOW_TRACKING_URI": "sqlite:///mlflow.db", "LOGRUN_TOKEN": TOKEN}
    result = run_in_own_group([sys.executable, script, *args], folder, env, 300)
    return f"{result.returncode}\n{result.stdout}{result.stderr}"


@pytest.mark.slow
def test_a_log_run_job_run_again_is_proven_finished_and_makes_no_new_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app never skips a config itself (MLflow's `start_run` makes the
    run), so `hydraflow run` proves the command finished: a second run of
    the job starts no app and doubles no run."""
    shutil.copy(APPS / "app.py", tmp_path / "app.py")
    (tmp_path / "hydraflow.yaml").write_text(
        f"jobs:\n  lr:\n    run: {sys.executable} app.py\n    sets:\n      - each: width=1,2\n"
    )
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    first = run_cli("run", "lr", cwd=tmp_path, timeout=300)
    again = run_cli("run", "lr", cwd=tmp_path, timeout=300)
    assert first.returncode == again.returncode == 0, first.stderr + again.stderr
    assert "2 runs: 2 finished" in first.stderr
    assert "2 commands: 0 finished, 2 skipped; 2 runs: 2 skipped" in again.stderr, again.stderr
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    [experiment] = [e for e in client.search_experiments() if e.name == "logrun"]
    assert len(client.search_runs([experiment.experiment_id])) == 2


@pytest.mark.slow
def test_a_run_log_run_records_is_a_run_of_ours_and_keeps_no_secret(tmp_path: Path) -> None:
    for width in ("5", "-1"):
        run_app(tmp_path, "app.py", f"width={width}")
        run_app(tmp_path, "tracked.py", f"width={width}")
    logged, tracked = log_run_reading(tmp_path), log_run_reading(tmp_path, "tracked")
    # The published log_run's files and statuses; our params, as a run of ours has them.
    for ours, published, own in zip(logged, PUBLISHED_LOG_RUN, tracked, strict=True):
        assert ours["status"] == published["status"] == own["status"]
        assert ours["artifacts"] == published["artifacts"]
        assert ours["traceback in log"] == published["traceback in log"]
        assert ours["params"] == own["params"] != published["params"]
        assert ours["params"]["token"] == "${oc.env:LOGRUN_TOKEN,unset}"
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    by_name = {e.name: e.experiment_id for e in client.search_experiments()}
    runs = {
        name: sorted(client.search_runs([by_name[name]]), key=lambda r: r.data.params["width"])
        for name in ("logrun", "tracked")
    }
    for ours, own in zip(runs["logrun"], runs["tracked"], strict=True):
        assert hydraflow_tags(ours) == hydraflow_tags(own)
    # Never the secret's value: not in the store's tables, not in a file.
    assert TOKEN.encode() not in (tmp_path / "mlflow.db").read_bytes()
    for path in (tmp_path / "mlruns").rglob("*"):
        assert not path.is_file() or TOKEN not in path.read_text(errors="replace"), path
    # `load` reads it as a run of its config, and @hydraflow.main skips that config.
    loaded = hydraflow.load("logrun", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert sorted(loaded.frame["width"].to_list()) == [5]
    shutil.copy(APPS / "tracked.py", tmp_path / "logrun.py")
    assert "skipped" in run_app(tmp_path, "logrun.py", "width=5")
    assert len(client.search_runs([by_name["logrun"]])) == 2


@pytest.mark.slow
def test_a_run_log_run_records_interrupted_ends_killed_with_its_log(tmp_path: Path) -> None:
    """As a run of ours ends on Ctrl-C (MLflow's `start_run` alone says FAILED)."""
    shutil.copy(APPS / "app.py", tmp_path / "app.py")
    started = tmp_path / "started"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env |= {"MLFLOW_TRACKING_URI": "sqlite:///mlflow.db", "LOGRUN_STARTED": str(started)}
    process = subprocess.Popen(
        [sys.executable, "app.py", "width=7"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not started.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert started.exists(), "the app never started its run"
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=60)
    finally:
        kill_group(process.pid)
    [reading] = log_run_reading(tmp_path)
    assert reading["status"] == "KILLED"
    assert reading["artifacts"] == [*PUBLISHED_LOG_RUN[0]["artifacts"]]
    assert reading["params"]["width"] == "7"


def hydraflow_tags(run: mlflow.entities.Run) -> dict[str, str]:
    """The tags a run's identity and `load` read: not its owner, heartbeat or
    code (another file, another process)."""
    mine = {k: v for k, v in run.data.tags.items() if k.startswith("hydraflow.")}
    return {
        k: v
        for k, v in mine.items()
        if not k.startswith(("hydraflow.owner", "hydraflow.heartbeat", "hydraflow.code"))
    }


def test_log_run_outside_hydra_needs_the_config_and_records_it(launch_folder: Path) -> None:
    mlflow.set_tracking_uri(f"sqlite:///{launch_folder / 'mlflow.db'}")
    with mlflow.start_run() as run:
        with (
            pytest.raises(HydraflowError, match=r"log_run: called outside a Hydra job"),
            hydraflow.log_run(run),
        ):
            pass
        with (
            pytest.raises(TypeError, match=r"log_run: expected the MLflow run"),
            hydraflow.log_run(None),  # type: ignore[arg-type]
        ):
            pass
        config = {"lr": 0.1, "db": {"password": "p4ssw0rd-x"}}
        with hydraflow.log_run(run, config=config, secrets=["db.password"]):
            assert hydraflow.current_run().info.run_id == run.info.run_id
    stored = mlflow.MlflowClient().get_run(run.info.run_id)
    assert stored.info.status == "FINISHED"
    assert stored.data.params == {"lr": "0.1", "db.password": "***"}
    assert "p4ssw0rd-x" not in str(stored.data.tags)
    # A run of ours is recorded already: log_run only runs the block.
    with hydraflow.start_run({"lr": 0.2}) as own, hydraflow.log_run(own):
        assert hydraflow.current_run().info.run_id == own.info.run_id
    assert mlflow.MlflowClient().get_run(own.info.run_id).data.params == {"lr": "0.2"}


PUBLISHED_START_RUN_APP = """
import os, hydra, mlflow, hydraflow

@hydra.main(version_base=None, config_path=None, config_name=None)
def main(cfg):
    mlflow.set_experiment("started")
    with hydraflow.start_run(run_name="r1", tags={"k": "v"}, chdir=True) as run:
        print("in its artifacts:", os.getcwd().endswith("artifacts"), run.info.run_name)
        mlflow.log_metric("m", 1.0)

if __name__ == "__main__":
    main()
"""


@pytest.mark.slow
def test_start_run_takes_the_published_form_under_plain_hydra(tmp_path: Path) -> None:
    """The published `start_run(*, chdir, run_id, experiment_id, run_name,
    nested, parent_run_id, tags, description, log_system_metrics)`: MLflow's
    `start_run` recorded by `log_run`. The published 0.23.2 ran this app on
    2026-12-08 (CPython 3.13): printed `in its artifacts: True r1`; its run
    FINISHED, named r1, tag k=v, metric m=1.0, artifacts `.hydra` and the
    job's log (`app.log` for its `app.py`)."""
    (tmp_path / "started.py").write_text(PUBLISHED_START_RUN_APP)
    output = run_app(tmp_path, "started.py", "+lr=0.1")
    assert output.startswith("0\n") and "in its artifacts: True r1" in output, output
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("started").experiment_id])
    assert (run.info.status, run.info.run_name, run.data.tags["k"]) == ("FINISHED", "r1", "v")
    assert run.data.metrics == {"m": 1.0}
    artifacts = sorted(a.path for a in client.list_artifacts(run.info.run_id))
    assert artifacts == [".hydra", "started.log"]
    assert run.data.params == {"lr": "0.1"}  # ours records the config, as log_run does


def test_start_run_keeps_mlflows_options_and_a_config_apart(launch_folder: Path) -> None:
    mlflow.set_tracking_uri(f"sqlite:///{launch_folder / 'mlflow.db'}")
    with (
        pytest.raises(TypeError, match=r"MLflow's options come without a config"),
        hydraflow.start_run({"a": 1}, run_name="x"),
    ):
        pass
    with (
        pytest.raises(TypeError, match=r"come with a config: start_run\(config"),
        hydraflow.start_run(experiment_name="x"),
    ):
        pass
    with (
        pytest.raises(TypeError, match=r"unexpected keyword argument 'run_nmae'"),
        hydraflow.start_run(run_nmae="x"),
    ):
        pass
