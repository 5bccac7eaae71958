"""`hydraflow runs`' order, limit and columns, and `load`'s arguments, on a
small store MLflow's client writes (six runs of `grid`, started a second
apart; `seed` 0..5, `group` a for the first three and b after, `lr` 0.1 in
all). MLflow's own reading is the oracle for the runs' order.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import hydraflow
import mlflow
import polars as pl
import pytest
from click.testing import CliRunner, Result
from hydraflow.cli import cli

START = 1_700_000_000_000


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("listing")
    client = mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.create_experiment("grid", artifact_location=str(folder / "mlruns" / "1"))
    for seed in range(6):
        run = client.create_run(experiment, start_time=START + 1000 * seed)
        run_id = run.info.run_id
        for key, value in {"seed": seed, "group": "ab"[seed // 3], "lr": 0.1}.items():
            client.log_param(run_id, key, value)
        client.log_metric(run_id, "loss", 1.0 / (seed + 1))
        client.set_terminated(run_id, end_time=START + 1000 * seed + 500)
    return folder


def runs_cli(store: Path, *args: str) -> Result:
    uri = f"sqlite:///{store / 'mlflow.db'}"
    env = {"COLUMNS": "2000", "TZ": "UTC"}
    return CliRunner().invoke(cli, ["runs", *args, "--tracking-uri", uri], env=env)


def first_column(result: Result) -> list[str]:
    """The table's first column, below its header and rule."""
    lines = result.stdout.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("─"))
    return [line.split()[0] for line in lines[rule + 1 :]]


def test_desc_without_sort_lists_the_newest_runs_first(store: Path) -> None:
    client = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("grid")
    assert experiment is not None
    newest = client.search_runs([experiment.experiment_id], order_by=["start_time DESC"])
    result = runs_cli(store, "grid", "--desc", "--limit", "5", "--columns", "run_id")
    assert result.exit_code == 0, result.output
    assert first_column(result) == [run.info.run_id[:8] for run in newest[:5]]
    oldest = runs_cli(store, "grid", "--limit", "5", "--columns", "run_id")
    assert first_column(oldest) == [run.info.run_id[:8] for run in newest[::-1][:5]]
    csv = runs_cli(store, "grid", "--desc", "--format", "csv", "--columns", "seed")
    assert csv.stdout.split() == ["seed", "5", "4", "3", "2", "1", "0"]


@pytest.mark.parametrize("interval", ["2:1", "0.5:0.1", "b:a"])
def test_an_inverted_interval_is_a_located_error(store: Path, interval: str) -> None:
    """As the sweep grammar refuses `2:1`: no run could be within it."""
    key = {"2:1": "seed", "0.5:0.1": "metrics.loss", "b:a": "group"}[interval]
    result = runs_cli(store, "grid", f"{key}={interval}")
    assert result.exit_code == 2, result.output
    low, high = interval.split(":")
    assert result.stderr == (
        f"Error: {key}={interval}: invalid interval {interval!r}: "
        f"{low} is greater than {high}; write {high}:{low}\n"
    )
    assert not result.stdout


def test_a_proper_interval_still_filters(store: Path) -> None:
    for interval, seeds in (("1:2", ["1", "2"]), ("2:2", ["2"]), (":1", ["0", "1"])):
        result = runs_cli(store, "grid", f"seed={interval}", "--format", "csv", "--columns", "seed")
        assert result.exit_code == 0, result.output
        assert result.stdout.split()[1:] == seeds


def test_a_limited_table_says_how_many_runs_there_are_and_what_all_of_them_share(
    store: Path,
) -> None:
    """`group` is `a` in the first three runs, not in all six: a column of
    the table, not a value 'in every one'."""
    result = runs_cli(store, "grid", "--limit", "3")
    assert result.exit_code == 0, result.output
    title, header = result.stdout.splitlines()[:2]
    assert title.startswith("the first 3 of 6 runs; in every one: ")
    assert "lr=0.1" in title and "group" not in title
    assert header.split()[:3] == ["run_id", "group", "seed"]
    assert first_column(result) == [row[:8] for row in listed(store)["run_id"][:3]]
    whole = runs_cli(store, "grid")
    assert whole.stdout.splitlines()[0].startswith("6 runs; in every one: ")
    assert runs_cli(store, "grid", "--limit", "6").stdout == whole.stdout


def test_all_columns_are_every_column_of_the_frame(store: Path) -> None:
    result = runs_cli(store, "grid", "--all-columns")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].split() == listed(store).columns
    assert {"end_time", "artifact_dir"} <= set(result.stdout.splitlines()[0].split())


def listed(store: Path) -> pl.DataFrame:
    return hydraflow.load("grid", tracking_uri=store / "mlflow.db").frame


@pytest.mark.parametrize("config", ["seed", 3, dict])
def test_load_config_must_be_a_dataclass(store: Path, config: object) -> None:
    with pytest.raises(TypeError, match=r"config must be the app's config class \(a @dataclass\)"):
        hydraflow.load("grid", tracking_uri=store / "mlflow.db", config=config)  # type: ignore[arg-type]


def test_load_config_takes_a_dataclass_and_types_cfg(store: Path) -> None:
    from dataclasses import dataclass

    @dataclass
    class Config:
        seed: int = 0
        group: str = ""
        lr: float = 0.0

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runs = hydraflow.load("grid", tracking_uri=store / "mlflow.db", config=Config)
    assert [run.cfg for run in runs][:2] == [Config(0, "a", 0.1), Config(1, "a", 0.1)]
