"""`hydraflow.load` and `hydraflow runs` on real runs: the tutorial's 16
runs made through the installed CLI, and a test app with a key of every type."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import hydraflow
import mlflow
import polars as pl
import pytest
import yaml
from hydraflow.errors import FilterError, RunLookupError, StoreError, StoreNotFoundError
from omegaconf import DictConfig

from tests.apps.typed_app import Config, Model
from tests.conftest import (
    TUTORIAL_JOBS,
    Tutorial,
    copy_project,
    default_store_in,
    run_cli,
    user_environment,
)

pytestmark = pytest.mark.slow  # real Hydra apps, sweeps or services

TYPED_APP = Path(__file__).parent / "apps" / "typed_app.py"
BASE = ["run_id", "experiment", "status", "start_time", "end_time", "artifact_dir"]


def run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=folder, capture_output=True, text=True, env=user_environment(), timeout=900
    )


@pytest.fixture(scope="module")
def store(tutorial_store: Tutorial, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tutorial's three jobs, then the typed app: 8 finished runs and a failed one."""
    folder = copy_project(tutorial_store.folder, tmp_path_factory.mktemp("analysis") / "examples")
    shutil.copy(TYPED_APP, folder / "typed_app.py")
    sweep = ["seed=1,2", "model.depth=2,3", "flag=true,false"]
    result = run(folder, sys.executable, "typed_app.py", "-m", *sweep)
    assert result.returncode == 0, result.stderr[-3000:]
    failed = run(folder, sys.executable, "typed_app.py", "fail=true", "label=broken")
    assert failed.returncode != 0
    return folder


@pytest.fixture
def inside(store: Path) -> Iterator[Path]:
    with default_store_in(store) as folder:
        yield folder


def copy_store(source: Path, target: Path) -> Path:
    """A consistent copy of a SQLite store (WAL included), artifacts left where they are."""
    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)
    return target


def uri(path: Path) -> str:
    return f"sqlite:///{path}"


def test_the_tutorial_loads_as_16_typed_rows(inside: Path) -> None:
    runs = hydraflow.load("job_*")
    assert len(runs) == 16
    frame = runs.frame
    assert frame.columns == [*BASE, "height", "width", "metrics.area", "metrics.error"]
    counts = dict(frame.group_by("experiment").len().iter_rows())
    assert counts == TUTORIAL_JOBS
    assert frame.schema["width"] == pl.Int64
    assert frame.schema["start_time"] == pl.Datetime("ms", "UTC")
    assert frame.schema["metrics.error"] == pl.Float64
    assert set(frame["status"]) == {"FINISHED"}
    assert frame["start_time"].is_sorted()
    assert frame.select("experiment", "width", "height").is_duplicated().sum() == 0


def test_every_type_keeps_its_type(inside: Path) -> None:
    frame = hydraflow.load("typed_app").frame
    expected = {
        "fail": pl.Boolean,
        "flag": pl.Boolean,
        "label": pl.String,
        "lr": pl.Float64,
        "model.depth": pl.Int64,
        "model.name": pl.String,
        "seed": pl.Int64,
        "sizes": pl.List(pl.Int64),
        "metrics.ratio": pl.Float64,
        "metrics.score": pl.Float64,
    }
    assert {k: frame.schema[k] for k in expected} == expected
    assert frame.columns[: len(BASE)] == BASE
    assert len(frame) == 8
    assert frame["sizes"].to_list() == [[1, 2]] * 8
    assert sorted(frame["flag"].to_list()) == [False] * 4 + [True] * 4
    assert set(frame["lr"]) == {0.5}
    assert frame.filter(pl.col("metrics.ratio").is_nan())["flag"].to_list() == [True] * 4


def test_the_frame_agrees_with_mlflow(inside: Path) -> None:
    """MLflow's own reading is the oracle for ids, statuses, times and metrics."""
    client = mlflow.MlflowClient(uri(inside / "mlflow.db"))
    runs = hydraflow.load(status=None)
    for row in runs.frame.iter_rows(named=True):
        theirs = client.get_run(row["run_id"])
        assert row["status"] == theirs.info.status
        assert row["start_time"].timestamp() * 1000 == theirs.info.start_time
        assert row["artifact_dir"] == theirs.info.artifact_uri.removeprefix("file://")
        ours = {k.removeprefix("metrics."): v for k, v in row.items() if k.startswith("metrics.")}
        # repr, so that NaN equals NaN
        assert {k: repr(v) for k, v in ours.items() if v is not None} == {
            k: repr(v) for k, v in theirs.data.metrics.items()
        }
        params = {k: v for k, v in row.items() if k not in BASE and not k.startswith("metrics.")}
        assert {k: str(v) for k, v in params.items() if v is not None} == theirs.data.params


def test_filter_by_equal_value_list_range_and_callable(inside: Path) -> None:
    runs = hydraflow.load("job_*")
    assert len(runs.filter(width=100)) == 3
    assert len(runs.filter(width=[100, 300])) == 6
    # A value the column cannot hold matches nothing, in a list as alone.
    assert len(runs.filter(width=[100.5, 300])) == 3
    assert len(runs.filter(height=(150, 250))) == 8
    assert len(runs.filter(height=(None, 150))) == 6
    assert len(runs.filter(height=(250, None))) == 6
    assert len(runs.filter(width=lambda w: w % 200 == 0)) == 6
    assert len(runs.filter(width=100, height=200)) == 1
    assert len(runs.filter(experiment="job_submit", width=(300, 400))) == 2
    assert len(runs.filter(metrics__area=(None, 2.0))) == 3


def test_filter_by_dotted_keys_lists_and_booleans(inside: Path) -> None:
    runs = hydraflow.load("typed_app")
    assert len(runs.filter(model__depth=3)) == 4
    assert len(runs.filter(**{"model.depth": 3})) == 4
    assert len(runs.filter(flag=True, model__depth=2)) == 2
    assert len(runs.filter(sizes=[1, 2])) == 8
    assert len(runs.filter(sizes=[[3], [1, 2]])) == 8
    # A filter that leaves no run says so, with the values the key has.
    with pytest.warns(hydraflow.errors.NoRunsWarning, match=r"no run meets sizes=\[\[3\]\]"):
        assert len(runs.filter(sizes=[[3]])) == 0
    with pytest.warns(hydraflow.errors.NoRunsWarning, match=r"label=None \(label is "):
        assert len(runs.filter(label=None)) == 0
    with pytest.warns(
        hydraflow.errors.NoRunsWarning,
        match=r"^no run meets model__depth=7 \(model.depth is 2, 3\)$",
    ):
        assert len(runs.filter(model__depth=7)) == 0
    assert runs.try_get(model__depth=7) is None  # says so by its None, no warning


def test_filter_by_expression_and_by_run(inside: Path) -> None:
    runs = hydraflow.load("job_*")
    by_expr = runs.filter(pl.col("width") * pl.col("height") > 50_000)
    by_run = runs.filter(lambda run: run.cfg.width * run.cfg.height > 50_000)
    assert len(by_expr) == 8
    assert by_expr.frame.equals(by_run.frame)
    both = runs.filter(pl.col("width") > 200, height=100)
    assert sorted(both.frame["width"]) == [300, 400]


def test_exclude_is_the_complement(inside: Path) -> None:
    runs = hydraflow.load("job_*")
    kept, left = runs.filter(width=[100, 200]), runs.exclude(width=[100, 200])
    assert len(kept) + len(left) == 16
    assert set(kept.frame["run_id"]).isdisjoint(left.frame["run_id"])
    assert len(runs.exclude(pl.col("height") == 100)) == 12
    # the typed app's runs have no width: they never match, so exclude keeps them
    assert len(hydraflow.load().exclude(width=100)) == 21


def test_bad_filters_say_what_is_wrong(inside: Path) -> None:
    runs = hydraflow.load("job_*")
    with pytest.raises(FilterError, match=r"no column 'depth'.*width"):
        runs.filter(depth=3)
    with pytest.raises(FilterError, match="a range is a 2-tuple"):
        runs.filter(width=(1, 2, 3))
    with pytest.raises(FilterError, match="cannot filter on width='100'"):
        runs.filter(width="100")
    with pytest.raises(FilterError, match=r"unknown run status 'FINSHED'.*KILLED, or all$"):
        hydraflow.load(status="FINSHED")


def test_a_missing_column_suggests_the_one_meant(inside: Path) -> None:
    runs = hydraflow.load("job_*")
    with pytest.raises(
        FilterError, match=r"no column 'error' in the runs \(did you mean 'metrics\.error'\?\)"
    ):
        runs.filter(error=1)
    with pytest.raises(
        FilterError, match=r"no column 'widht' in the runs \(did you mean 'width'\?\)"
    ):
        runs.filter(widht=100)
    with pytest.raises(FilterError, match=r"no column 'depth' in the runs; the columns"):
        runs.filter(depth=3)  # nothing like it: no guess
    sort = run_cli("runs", "job_sequential", "--sort", "area", cwd=inside)
    assert sort.returncode == 2
    assert "no column 'area' in the runs (did you mean 'metrics.area'?)" in sort.stderr


def test_status_all_is_every_status_as_on_the_command_line(inside: Path) -> None:
    assert len(hydraflow.load(status="all")) == len(hydraflow.load(status=None))


def test_a_mistyped_group_suggests_the_group() -> None:
    from hydraflow.analysis.filters import meant_column

    columns = ["run_id", "lr", "model.name", "data.name", "choice.model", "choice.data"]
    assert meant_column("modle", columns) == "model"
    assert meant_column("name", columns) is None  # two columns end so: no guess by ending


def test_of_columns_as_close_the_first_is_meant() -> None:
    from hydraflow.analysis.filters import meant_column

    # difflib's own pick among equals is the greater: `value.1`.
    assert meant_column("value", ["run_id", "value.0", "value.1"]) == "value.0"


def test_get_one_run_or_a_clear_error(inside: Path) -> None:
    runs = hydraflow.load("job_*")
    run = runs.get(width=100, height=200)
    assert (run.cfg.width, run.cfg.height) == (100, 200)
    with pytest.raises(RunLookupError, match="no run matches width=999") as none:
        runs.get(width=999)
    assert none.value.count == 0
    with pytest.raises(RunLookupError, match="3 runs match width=100; expected exactly one"):
        runs.get(width=100)
    assert runs.try_get(width=999) is None
    assert runs.try_get(width=100, height=100) == runs.get(width=100, height=100)
    with pytest.raises(RunLookupError):
        runs.try_get(width=100)


def test_get_artifact_dir_takes_a_loaded_run_as_an_mlflow_one(inside: Path) -> None:
    import mlflow

    run = hydraflow.load("job_sequential")[0]
    mlflow_run = mlflow.MlflowClient(f"sqlite:///{inside / 'mlflow.db'}").get_run(run.run_id)
    assert hydraflow.get_artifact_dir(run) == hydraflow.get_artifact_dir(mlflow_run)
    assert hydraflow.get_artifact_dir(run) == run.artifact_dir and run.artifact_dir.is_dir()


def test_first_and_last_with_no_match_say_they_wanted_one(inside: Path) -> None:
    runs = hydraflow.load("job_*")
    collection = hydraflow.RunCollection(runs)
    for pick in (runs.first, runs.last, collection.first, collection.last):
        with pytest.raises(
            RunLookupError, match=r"^no run matches width=999; expected at least one$"
        ):
            pick(width=999)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"experiments": 123}, "experiments must be an experiment name or glob pattern, or a list"),
        ({"experiments": ["job_*", 1]}, "experiments must be an experiment name"),
        ({"experiments": {"job": 1}}, "experiments must be an experiment name"),
        ({"status": 1}, "status must be a run status, or a list of them, not 1"),
    ],
)
def test_load_says_what_it_takes_for_an_argument_it_cannot(
    inside: Path, arguments: dict[str, object], message: str
) -> None:
    with pytest.raises(TypeError, match=f"^load: {message}"):
        hydraflow.load(**arguments)  # type: ignore[arg-type]


def test_load_takes_any_texts_for_experiments(inside: Path) -> None:
    names = ["job_sequential", "job_parallel"]
    expected = len(hydraflow.load(names))
    assert len(hydraflow.load(tuple(names))) == len(hydraflow.load(n for n in names)) == expected


def test_first_last_sort_and_indexing(inside: Path) -> None:
    runs = hydraflow.load("job_*")
    assert runs.first().run_id == runs.frame["run_id"][0]
    assert runs.last().run_id == runs.frame["run_id"][-1]
    assert runs.first().experiment == "job_sequential"
    assert runs.last(width=100).start_time == max(r.start_time for r in runs.filter(width=100))
    ordered = runs.sort("width", "height", descending=True)
    assert [(r.cfg.width, r.cfg.height) for r in ordered][:2] == [(400, 300), (400, 200)]
    assert runs[-1] == runs.last()
    assert len(runs[2:5]) == 3
    with pytest.raises(IndexError):
        runs[16]
    with pytest.raises(RunLookupError):
        runs.first(width=999)


def test_group_by_has_polars_semantics(inside: Path) -> None:
    runs = hydraflow.load("job_*")
    table = runs.group_by("experiment").agg(pl.len(), pl.col("metrics.error").min())
    assert table["experiment"].to_list() == list(TUTORIAL_JOBS)
    assert table["len"].to_list() == list(TUTORIAL_JOBS.values())
    depth = hydraflow.load("typed_app").group_by("model__depth").agg(pl.len())
    assert dict(depth.iter_rows()) == {2: 4, 3: 4}
    pandas = runs.to_pandas()
    assert pandas.shape == (16, runs.frame.width)
    assert pandas["width"].dtype.kind == "i"


def test_group_choices_become_columns(store: Path, tmp_path: Path) -> None:
    """`hydraflow.choice.<group>` tags (the decorator's record of Hydra's
    choices) become `choice.<group>` columns after the config."""
    db = copy_store(store / "mlflow.db", tmp_path / "choices.db")
    client = mlflow.MlflowClient(uri(db))
    for run in hydraflow.load("job_sequential", tracking_uri=uri(db)):
        size = "big" if run.cfg.width > 100 else "small"
        client.set_tag(run.run_id, "hydraflow.choice.model", size)
    loaded = hydraflow.load("job_*", tracking_uri=uri(db))
    columns = loaded.frame.columns
    assert columns.index("width") < columns.index("choice.model") < columns.index("metrics.area")
    assert len(loaded.filter(choice__model="big")) == 3
    assert loaded.filter(experiment="job_submit").frame["choice.model"].null_count() == 4
    assert "choice.model" not in hydraflow.load("job_submit", tracking_uri=uri(db)).frame.columns


def test_cfg_is_the_dataclass_when_given(inside: Path) -> None:
    typed = hydraflow.load("typed_app", config=Config)
    run = typed.get(seed=2, model__depth=3, flag=True)
    assert isinstance(run.cfg, Config)
    assert run.cfg == Config(seed=2, model=Model(depth=3), flag=True)
    plain = hydraflow.load("typed_app").get(seed=2, model__depth=3, flag=True)
    assert isinstance(plain.cfg, DictConfig)
    assert plain.cfg.model.depth == 3
    assert plain.cfg.sizes == [1, 2]


def test_artifact_dir_holds_the_hydra_config(inside: Path) -> None:
    for run in hydraflow.load("job_*"):
        assert run.artifact_dir.is_relative_to(inside / "mlruns")
        saved = yaml.safe_load(run.path(".hydra/config.yaml").read_text())
        assert saved == {"width": run.cfg.width, "height": run.cfg.height}
        assert run.path(".hydra") in [p.parent for p in run.glob(".hydra/*.yaml")]
        assert list(run.glob("*.log")) == [run.path(f"{run.experiment}.log")]
        with run.chdir() as here:
            assert Path.cwd() == here == run.artifact_dir
        assert Path.cwd() == inside
    text = repr(hydraflow.load("job_sequential").get(width=100, height=200))
    assert text.startswith("Run(job_sequential ") and "FINISHED height=200 width=100" in text


def test_metrics_and_history(inside: Path) -> None:
    runs = hydraflow.load("job_*")
    run = runs.get(width=300, height=100)
    assert run.metrics == {"area": 3.0, "error": pytest.approx(1 / 5 + 1.0986122886681098)}
    history = runs.history("error")
    assert history.columns == ["run_id", "metric", "step", "timestamp", "value"]
    assert len(history) == 16 * 5
    mine = history.filter(pl.col("run_id") == run.run_id)
    assert mine["step"].to_list() == [0, 1, 2, 3, 4]
    assert mine["value"][-1] == run.metrics["error"]
    assert set(runs.history()["metric"]) == {"area", "error"}
    assert len(runs.filter(width=100).history("metrics.area")) == 3


def test_status_selects_runs(inside: Path) -> None:
    assert len(hydraflow.load("typed_app")) == 8
    failed = hydraflow.load("typed_app", status="FAILED")
    assert failed.get().cfg.label == "broken"
    assert len(hydraflow.load("typed_app", status=["failed", "FINISHED"])) == 9
    assert len(hydraflow.load("typed_app", status=None)) == 9


def test_an_experiment_matching_nothing_gives_empty_runs(inside: Path) -> None:
    with pytest.warns(hydraflow.errors.NoRunsWarning, match="'nothing_\\*'; the experiments are"):
        runs = hydraflow.load("nothing_*")
    assert len(runs) == 0
    assert list(runs) == []
    assert runs.frame.columns == BASE
    assert runs.frame.schema["start_time"] == pl.Datetime("ms", "UTC")
    assert len(runs.filter(status="FINISHED")) == 0
    assert runs.history().is_empty()


def test_several_patterns_and_all_experiments(inside: Path) -> None:
    assert len(hydraflow.load(["job_submit", "typed_*"])) == 12
    assert len(hydraflow.load()) == 24
    assert len(hydraflow.load(tracking_uri=uri(inside / "mlflow.db"))) == 24


def test_deleted_runs_and_experiments_are_left_out(store: Path, tmp_path: Path) -> None:
    db = copy_store(store / "mlflow.db", tmp_path / "copy.db")
    client = mlflow.MlflowClient(uri(db))
    runs = hydraflow.load("job_*", tracking_uri=uri(db))
    client.delete_run(runs.get(width=100, height=100).run_id)
    experiment = client.get_experiment_by_name("job_submit")
    assert experiment is not None
    client.delete_experiment(experiment.experiment_id)
    left = hydraflow.load("job_*", tracking_uri=uri(db))
    assert len(left) == 11
    assert set(left.frame["experiment"]) == {"job_sequential", "job_parallel"}
    assert left.try_get(width=100, height=100) is None


def test_a_path_names_a_sqlite_store(inside: Path) -> None:
    """As for `@hydraflow.main`: a `Path`, or a string without a scheme."""
    for store in ("mlflow.db", "./mlflow.db", str(inside / "mlflow.db"), inside / "mlflow.db"):
        assert len(hydraflow.load(tracking_uri=store)) == 24, store
    result = run_cli("runs", "--tracking-uri", "mlflow.db", "--format", "csv", cwd=inside)
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 25


def test_a_missing_store_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError, match=r"no MLflow store at .*--tracking-uri or MLFLOW"):
        hydraflow.load(tracking_uri=uri(tmp_path / "absent.db"))


def test_a_damaged_store_or_another_file_is_a_clear_error(store: Path, tmp_path: Path) -> None:
    damaged = copy_store(store / "mlflow.db", tmp_path / "damaged.db")
    with contextlib.closing(sqlite3.connect(damaged)) as db:
        (root,) = db.execute("SELECT rootpage FROM sqlite_schema WHERE name = 'runs'").fetchone()
        (page_size,) = db.execute("PRAGMA page_size").fetchone()
    with damaged.open("r+b") as file:  # the runs table's root page is no B-tree page now
        file.seek((root - 1) * page_size)
        file.write(b"\x42")
    not_a_store = tmp_path / "notes.db"
    not_a_store.write_text("not a database\n" * 100)
    for path, reason in ((damaged, "damaged page"), (not_a_store, "file is not a database")):
        with pytest.raises(StoreError, match=reason):
            hydraflow.load(tracking_uri=uri(path))
        result = run_cli("runs", "--tracking-uri", uri(path), cwd=tmp_path)
        assert result.returncode == 2
        assert "move it aside" in result.stderr and "Traceback" not in result.stderr


def test_pages_and_sql_give_the_same_frame(inside: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Rust core reads the store's pages; SQL (for files it cannot read,
    such as UTF-16 ones) must give the very same runs."""
    from_pages = hydraflow.load(status=None).frame
    monkeypatch.setattr("hydraflow.analysis.reading.read_pages", lambda db, path: None)
    from_sql = hydraflow.load(status=None).frame
    assert from_pages.equals(from_sql, null_equal=True)
    assert from_pages.height == 25


def test_runs_without_the_config_tag_load_from_params_or_config_yaml(
    store: Path, tmp_path: Path
) -> None:
    """Runs recorded before the tag existed (or by other tools) give the same frame."""
    db = copy_store(store / "mlflow.db", tmp_path / "old.db")
    expected = hydraflow.load(tracking_uri=uri(db), status=None)
    missing = expected.filter(experiment=["typed_app", "job_submit"]).frame["run_id"].to_list()
    no_params = expected.filter(experiment="job_submit").frame["run_id"].to_list()
    with contextlib.closing(sqlite3.connect(db)) as connection, connection:
        connection.execute("DELETE FROM tags WHERE key = 'hydraflow.config'")
        marks = ",".join("?" * len(no_params))
        connection.execute(f"DELETE FROM params WHERE run_uuid IN ({marks})", no_params)
    loaded = hydraflow.load(tracking_uri=uri(db), status=None)
    assert len(missing) == 13
    assert loaded.frame.select(sorted(loaded.frame.columns)).equals(
        expected.frame.select(sorted(expected.frame.columns))
    )
    run = hydraflow.load("typed_app", tracking_uri=uri(db), config=Config).get(
        seed=1, model__depth=2, flag=False
    )
    assert run.cfg == Config(seed=1, model=Model(depth=2))


def test_loading_a_sqlite_store_imports_no_mlflow(inside: Path) -> None:
    code = (
        "import sys, hydraflow\n"
        "runs = hydraflow.load()\n"
        "print(len(runs), [m for m in ('mlflow', 'hydra', 'omegaconf') if m in sys.modules])\n"
    )
    result = run(inside, sys.executable, "-c", code)
    assert result.stdout.strip() == "24 []", result.stderr[-2000:]


def test_the_runs_command_imports_no_mlflow(inside: Path) -> None:
    code = (
        "import sys\n"
        "from hydraflow.cli import cli\n"
        "try:\n"
        "    cli(['runs', 'job_*', 'width=100'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('mlflow', 'hydra', 'omegaconf') if m in sys.modules]\n"
        "print(heavy, file=sys.stderr)\n"
    )
    result = run(inside, sys.executable, "-c", code)
    assert result.stderr.strip().endswith("[]")
    rows = [line for line in result.stdout.splitlines() if re.match(r"[0-9a-f]{8} ", line)]
    assert len(rows) == 3


def test_the_runs_command_table_csv_and_json(inside: Path) -> None:
    frame = hydraflow.load().frame
    table = run_cli("runs", "job_sequential", cwd=inside)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0] == "6 runs; in every one: experiment=job_sequential status=FINISHED"
    assert lines[1].split() == ["run_id", "height", "width", "metrics.area", "metrics.error"]
    sequential = frame.filter(experiment="job_sequential")["run_id"]
    assert [line.split()[0] for line in lines[3:]] == [r[:8] for r in sequential]
    csv = run_cli("runs", "job_sequential", "--format", "csv", cwd=inside)
    parsed = pl.read_csv(csv.stdout.encode())
    assert (
        parsed["run_id"].to_list() == frame.filter(experiment="job_sequential")["run_id"].to_list()
    )
    assert parsed.schema["width"] == pl.Int64
    dumped = json.loads(run_cli("runs", "typed_app", "--format", "json", cwd=inside).stdout)
    assert len(dumped) == 8
    assert dumped[0]["sizes"] == [1, 2] and isinstance(dumped[0]["flag"], bool)


def test_the_runs_command_filters_with_the_sweep_grammar(inside: Path) -> None:
    def ids(*args: str) -> list[str]:
        result = run_cli("runs", *args, "--format", "csv", cwd=inside)
        found = pl.read_csv(result.stdout.encode())["run_id"].to_list() if result.stdout else []
        assert result.returncode == (0 if found else 1), result.stderr  # 1: none matched
        return found

    assert len(ids("job_*", "width=100,300", "height=100:200")) == 4
    assert len(ids("typed_app", "flag=true", "model.depth=3")) == 2
    assert len(ids("typed_app", "lr=0.5")) == 8
    assert len(ids("typed_app", "--status", "all")) == 9
    assert len(ids("typed_app", "--status", "FAILED,KILLED")) == 1
    assert ids("nothing") == []
    forgot_the_value = run_cli("runs", "job_sequential", "width", cwd=inside)
    assert forgot_the_value.returncode == 0
    assert "no runs of an experiment matching 'width'" in forgot_the_value.stderr


def test_a_missing_column_named_like_a_group_filters_on_its_choice(store: Path) -> None:
    runs = hydraflow.load(tracking_uri=uri(store / "mlflow.db"))
    frame = runs.frame.with_columns(pl.lit("small").alias("choice.model"))
    assert len(runs.derive(frame).filter(model="small")) == len(runs)
    with pytest.warns(hydraflow.errors.NoRunsWarning):
        assert len(runs.derive(frame).filter(model="large")) == 0


def test_the_runs_command_refuses_bad_input(inside: Path, tmp_path: Path) -> None:
    cases = {
        ("runs", "depth=3"): "no column 'depth'",
        ("runs", "width=abc"): "width=abc: the column holds Int64 values",
        ("runs", "width=1:3tep"): "'3tep' is not a number",
        ("runs", "--status", "DONE"): "unknown run status 'DONE'",
        ("runs", "--tracking-uri", uri(tmp_path / "x.db")): "no MLflow store at",
        ("runs", "--tracking-uri", str(tmp_path)): "no MLflow store at",
        ("runs", "--tracking-uri", (tmp_path / "mlruns").as_uri()): "cannot use the MLflow store",
    }
    for args, message in cases.items():
        result = run_cli(*args, cwd=inside)
        assert result.returncode == 2, args
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def mlflow_server(db: Path, artifacts: Path) -> Iterator[str]:
    """`mlflow server` on 127.0.0.1 over `db`, stopped with its process group."""
    port = free_port()
    command = [
        *[str(Path(sys.executable).parent / "mlflow"), "server"],
        *["--backend-store-uri", uri(db), "--artifacts-destination", str(artifacts)],
        *["--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
    ]
    log = (db.parent / "server.log").open("w")
    process = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=user_environment(),
    )
    try:
        address = f"http://127.0.0.1:{port}"
        wait_for_health(address, process, db.parent / "server.log")
        yield address
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def wait_for_health(address: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 240  # a loaded 2-core machine starts it slowly
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mlflow server exited: {log.read_text()[-3000:]}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{address}/health", timeout=5) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.5)
    pytest.fail(f"mlflow server did not answer in time: {log.read_text()[-3000:]}")


def test_a_tracking_server_gives_the_same_frame(store: Path, tmp_path: Path) -> None:
    db = copy_store(store / "mlflow.db", tmp_path / "s.db")
    direct = hydraflow.load(tracking_uri=uri(db), status=None)
    with mlflow_server(db, tmp_path / "art") as address:
        served = hydraflow.load(tracking_uri=address, status=None)
        assert served.frame.equals(direct.frame)
        assert served.history().equals(direct.history())
        one = hydraflow.load("typed_*", tracking_uri=address, config=Config)
        cfg = one.get(seed=1, model__depth=3, flag=True).cfg
        assert cfg == Config(seed=1, model=Model(depth=3), flag=True)
        listed = run_cli(
            "runs", "job_*", "--tracking-uri", address, "--format", "csv", cwd=tmp_path
        )
        assert listed.returncode == 0, listed.stderr
        assert len(listed.stdout.splitlines()) == 17
        # `hydraflow ui` on a server: its own UI, at the job's runs table; nothing started.
        shown = run_cli("ui", "job_sequential", "--tracking-uri", address, cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        experiment = mlflow.MlflowClient(address).get_experiment_by_name("job_sequential")
        assert experiment is not None
        assert shown.stdout == (
            f"{address}/#/experiments/{experiment.experiment_id}/runs"
            "?workflowType=machine_learning&viewStateShareKey=hydraflow\n"
        )
        assert "mlflow.sharedViewState.hydraflow" in experiment.tags


def test_results_are_not_what_a_sweep_varies() -> None:
    from hydraflow.analysis import variation

    frame = pl.DataFrame(
        {
            "run_id": ["a", "b"],
            "experiment": ["grid", "grid"],
            "stopped": [True, False],
            "value": [0.5, 0.7],
            "value.0": [1, 2],
            "seed": [0, 1],
            "choice.model": ["cnn", "cnn"],
            "metrics.loss": [0.1, 0.2],
        }
    )
    assert variation.varying(frame) == ["seed"]
    assert variation.constants(frame) == {"experiment": "grid", "choice.model": "cnn"}
    assert variation.table_columns(frame) == [
        *["run_id", "seed", "stopped", "value", "value.0", "metrics.loss"]
    ]


def test_the_ui_view_shows_the_objective_and_the_stopped_runs() -> None:
    """What a search optimised is often no metric: the view selects the
    `hydraflow.value` tag (once, for scalars and tuples alike) and
    `hydraflow.stopped`, as `hydraflow runs` shows `value` and `stopped`."""
    from hydraflow.analysis.ui import view_state

    frame = pl.DataFrame(
        {
            "run_id": ["a", "b", "c"],
            "status": ["FINISHED"] * 3,
            "stopped": [False, True, False],
            "lr": [0.1, 0.2, 0.3],
            "value": [0.5, 0.7, None],
            "value.0": [None, None, 1.0],
            "value.1": [None, None, 2.0],
            "metrics.loss": [0.1, 0.2, 0.3],
        }
    )
    assert view_state(frame) == {
        "selectedColumns": [
            *["params.`lr`", "tags.`hydraflow.stopped`", "tags.`hydraflow.value`"],
            "metrics.`loss`",
        ]
    }
    # No run returned anything or stopped: neither column.
    plain = frame.drop("stopped", "value", "value.0", "value.1")
    assert view_state(plain) == {"selectedColumns": ["params.`lr`", "metrics.`loss`"]}
    # A name MLflow's 190 px would cut (`lr=0.0017826497151386949 model=cnn`)
    # widens the name column, to at most 480 px; a short one leaves it be.
    named = view_state(plain, len("lr=0.0017826497151386949 model=cnn"))
    assert named["columnOrder"] == ["attributes.`Run Name`"]
    assert named["columnWidths"] == {"attributes.`Run Name`": 320}
    assert view_state(plain, 250)["columnWidths"] == {"attributes.`Run Name`": 480}
    assert "columnWidths" not in view_state(plain, len("model=cnn lr=0.01"))


def test_a_table_leaves_out_the_results_none_of_its_runs_has() -> None:
    """Runs filtered to the scalar returns show no empty `value.0` column."""
    from hydraflow.analysis import variation

    frame = pl.DataFrame(
        {"run_id": ["a", "b"], "x": [1, 2], "value": [0.5, 0.7], "value.0": [None, None]}
    )
    assert variation.table_columns(frame) == ["run_id", "x", "value"]
    assert variation.table_columns(frame.clear()) == ["run_id", "value", "value.0"]
