"""The published HydraFlow's analysis API on runs made by this package.

The published analysis tutorial's statements (tests/published_tutorial.py,
written from reading its page) run against our tutorial's runs, and print
what the published HydraFlow printed on its own runs (tests/published_oracle.py
says how that was measured), run ids, paths and experiment ids aside. The
published tool lists a folder's runs in the file system's order and this
package in the order they started, so a value that hangs on that order (the
first run's config, a frame's first rows) is checked for its form here and for
its content by the order-free checks.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import polars as pl
import pytest

from tests.published_oracle import PUBLISHED_CHECKS, PUBLISHED_OUTPUTS
from tests.published_tutorial import CHECKS, STATEMENTS, run_tutorial

# Statements whose value is that of the first run listed.
FIRST_RUN = {
    "print(run.info.job_name)  # Hydra job name = MLflow experiment name",
    "print(run.cfg)",
    'print(run.get("width"))',
    'print(run.get("height"))',
}
# `print(run.impl)` and `print(run.impl.size)` of that first run (not of
# `rc.get(...)`'s, which is the same in both): their positions.
FIRST_RUN_POSITIONS = {
    STATEMENTS.index("run = Run[Config, Size].load(run_dir, Size)") + i for i in (2, 3)
}
# Statements printing a frame of 16 runs (10 rows shown), or groups in order.
SIXTEEN_ROWS = {s for s in STATEMENTS if s.startswith("print(rc.to_frame(")}
GROUPS = {s for s in STATEMENTS if s.startswith("for key, group in")} | {"print(df)"}


def normalized(text: str, folder: Path) -> str:
    text = text.replace(str(folder), "<folder>")
    text = re.sub(r"[0-9a-f]{32}", "<run_id>", text)
    text = re.sub(r"mlruns/\d+/", "mlruns/<exp>/", text)
    # The class's module: the published `hydraflow.core.run`, ours `hydraflow.analysis.runs`.
    return re.sub(r"<class 'hydraflow\.[\w.]+\.Run'>", "<class 'hydraflow.core.run.Run'>", text)


def form(text: str) -> str:
    return re.sub(r"job_\w+", "<job>", re.sub(r"\d+", "<n>", text))


def frame_head(text: str) -> tuple[list[str], int]:
    """A printed frame's shape, columns and types, and its number of lines;
    not the columns' widths, which follow the rows shown (the published tool
    lists runs in the file system's order)."""
    lines = text.splitlines()
    head = lines[: next(i for i, line in enumerate(lines) if line.startswith("╞")) + 1]
    return [re.sub(r"[\s─═┌┐┬╞╪╡]+", " ", line).strip() for line in head], len(lines)


@pytest.fixture(scope="module")
def ours(
    tutorial_store: object, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[tuple[str, str]], list[tuple[str, str]]]:
    from tests.conftest import Tutorial, copy_project

    assert isinstance(tutorial_store, Tutorial)
    folder = copy_project(tutorial_store.folder, tmp_path_factory.mktemp("published") / "examples")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        outputs, checks = run_tutorial(folder)
    return folder, outputs, checks


@pytest.mark.slow
def test_every_statement_of_the_published_tutorial_prints_what_the_published_tool_does(
    ours,
) -> None:
    folder, outputs, _ = ours
    assert [s for s, _ in outputs] == STATEMENTS
    for position, ((statement, output), expected) in enumerate(
        zip(outputs, PUBLISHED_OUTPUTS, strict=True)
    ):
        got = normalized(output, folder)
        assert not got.startswith("error:"), f"{statement}: {got}"
        if statement in FIRST_RUN or position in FIRST_RUN_POSITIONS:
            assert form(got) == form(expected), statement
        elif statement in SIXTEEN_ROWS:
            assert frame_head(got) == frame_head(expected), statement
        elif statement in GROUPS:
            assert sorted(got.splitlines()) == sorted(expected.splitlines()), statement
        else:
            assert got == expected, statement


@pytest.mark.slow
def test_the_order_free_checks_give_the_published_values(ours) -> None:
    _, _, checks = ours
    assert [c for c, _ in checks] == CHECKS
    for (check, got), expected in zip(checks, PUBLISHED_CHECKS, strict=True):
        assert got == expected, check


@pytest.mark.slow
def test_run_load_of_many_folders_reads_the_store_once_into_a_frame(
    tutorial_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`Run.load(iter_run_dirs(...))` is `hydraflow.load`'s frame underneath:
    config keys are filtered and framed in bulk, and `Runs`' methods work."""
    from hydraflow import Run, RunCollection, iter_run_dirs, load

    monkeypatch.chdir(tutorial_copy)
    rc = Run.load(iter_run_dirs("mlruns", "job_*"))
    assert isinstance(rc, RunCollection)
    assert rc.frame.height == 16
    assert (
        rc.frame.drop("start_time", "end_time")
        .sort("run_id")
        .equals(load(status=None).frame.drop("start_time", "end_time").sort("run_id"))
    )
    wide = rc.filter(width=400)
    assert wide.frame["height"].sort().to_list() == [100, 200, 300]
    assert wide.history("error")["run_id"].n_unique() == 3
    assert rc.to_frame("width", ("missing", 0)).schema == pl.Schema(
        {"width": pl.Int64, "missing": pl.Int64}
    )
    # The published 0.23's call: experiment names, in the default store.
    assert len(list(iter_run_dirs("job_s*"))) == 10
    assert len(list(iter_run_dirs(["job_sequential", "job_submit"]))) == 10
    assert len(list(iter_run_dirs(lambda name: name.endswith("submit")))) == 4
    assert [d.parent.name for d in iter_run_dirs("mlruns", lambda name: name == "job_submit")] == [
        "3"
    ] * 4


@pytest.mark.slow
def test_one_run_opened_from_its_folder_and_in_a_collection_is_one_kind(
    tutorial_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hydraflow import Run, iter_run_dirs, load

    monkeypatch.chdir(tutorial_copy)
    run_dir = next(iter_run_dirs("mlruns", "job_submit"))
    alone = Run(run_dir)
    loaded = load("job_submit").get(run_id=run_dir.name)
    assert type(alone) is type(loaded)
    assert alone.info.run_dir == loaded.info.run_dir == run_dir
    assert alone.info.job_name == loaded.info.job_name == "job_submit"
    assert alone.get("width") == loaded.get("width") == loaded.cfg.width
    assert alone.metrics == loaded.metrics and alone.status == "FINISHED"
    assert alone.get("metrics.area") == loaded.get("metrics.area") > 0


def test_the_api_is_exported_and_a_missing_tracking_folder_is_named(tmp_path: Path) -> None:
    import hydraflow
    from hydraflow.errors import HydraflowError, RunLookupError

    for name in ("iter_run_dirs", "Run", "RunCollection"):
        assert name in hydraflow.__all__ and getattr(hydraflow, name) is not None
    assert issubclass(RunLookupError, ValueError)
    with pytest.raises(HydraflowError, match=r"iter_run_dirs: no such folder '.*/mlrun'"):
        list(hydraflow.iter_run_dirs(tmp_path / "mlrun", "job_*"))
    for path in (str(tmp_path / "nothere"), "./mlruns", "~/nothere"):
        with pytest.raises(HydraflowError, match=r"iter_run_dirs: no such folder"):
            list(hydraflow.iter_run_dirs(path))
    empty = hydraflow.RunCollection()
    assert repr(empty) == "RunCollection(empty)" and not empty and empty.to_list("width") == []


def test_no_runs_warnings_point_at_the_users_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hydraflow
    from hydraflow.errors import NoRunsWarning
    from mlflow import MlflowClient

    MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").create_experiment("grid")
    monkeypatch.chdir(tmp_path)
    with pytest.warns(NoRunsWarning) as caught:
        hydraflow.Run.load(hydraflow.iter_run_dirs("nosuch"))
    with pytest.warns(NoRunsWarning) as caught_too:
        hydraflow.load("nosuch")
    assert {w.filename for w in [*caught, *caught_too]} == {__file__}
    assert "the experiments are: grid" in str(caught[0].message)  # not MLflow's empty Default
