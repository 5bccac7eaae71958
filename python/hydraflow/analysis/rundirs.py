"""Runs by their folders, as the published HydraFlow finds them.

A run's folder is `<tracking dir>/<experiment id>/<run id>` (`mlruns/1/...`),
its artifacts in `artifacts/` below it. Its store is the `mlflow.db` beside
the tracking dir (where `hydraflow run` and the published tool put it), else
the one `hydraflow.load` would read (MLFLOW_TRACKING_URI, else `./mlflow.db`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from hydraflow.errors import HydraflowError
from hydraflow.store import DEFAULT_DB
from hydraflow.store import tracking_uri as resolve_uri

Names = str | Sequence[str] | Callable[[str], bool] | None


def iter_run_dirs(
    tracking_dir: str | os.PathLike[str] | Names = None, experiment_names: Names = None
) -> Iterator[Path]:
    """The folders of the runs (all statuses) in `tracking_dir`, of the
    experiments named by `experiment_names`: a name, a glob pattern, a list of
    them, a function of a name, or None for all; in the order of their start.

    `iter_run_dirs("job_*")`, a name that is no folder, is read as the
    published 0.23 reads it: experiment names, in the default store; so is a
    list of names or a function as the one argument. A
    `tracking_dir` that is no folder beside `experiment_names`, or one that
    looks like a path (`a/b`, `./mlruns`, `~/x`), is an error.
    """
    if not isinstance(tracking_dir, str | os.PathLike | None):
        # The published 0.23's one argument: a list of names or a function of one.
        tracking_dir, experiment_names = None, tracking_dir
    one_name = experiment_names is None and not looks_like_path(tracking_dir)
    if tracking_dir is not None and one_name and not Path(tracking_dir).is_dir():
        experiment_names = os.fspath(tracking_dir)
        tracking_dir = None
    if tracking_dir is not None and not Path(tracking_dir).is_dir():
        raise HydraflowError(
            f"iter_run_dirs: no such folder {os.fspath(tracking_dir)!r} (cwd {Path.cwd()})"
        )
    root = Path(tracking_dir).resolve() if tracking_dir is not None else None
    frame = runs_frame(store_beside(root), experiment_names)
    for folder in frame["artifact_dir"].drop_nulls():
        run_dir = Path(folder).parent
        if (root is None or run_dir.parent.parent == root) and Path(folder).is_dir():
            yield run_dir


def looks_like_path(argument: str | os.PathLike[str] | None) -> bool:
    """A Path, or text no experiment name looks like: `a/b`, `./mlruns`, `~/x`."""
    if argument is None:
        return False
    if not isinstance(argument, str):
        return True
    return "/" in argument or argument.startswith((".", "~"))


def runs_frame(uri: str, experiment_names: Names) -> pl.DataFrame:
    """The frame of every run of the experiments named, read by `load`."""
    from hydraflow.analysis.runs import load

    patterns = None if callable(experiment_names) else experiment_names
    frame = load(patterns, tracking_uri=uri, status=None).frame
    if callable(experiment_names):
        names = frame["experiment"].unique().to_list()
        frame = frame.filter(pl.col("experiment").is_in([n for n in names if experiment_names(n)]))
    return frame


def store_beside(tracking_dir: Path | None) -> str:
    """The store of the runs in `tracking_dir`: the `mlflow.db` beside it,
    else the default one."""
    if tracking_dir is not None and (tracking_dir.parent / DEFAULT_DB).is_file():
        return resolve_uri(tracking_dir.parent / DEFAULT_DB, Path.cwd())
    return resolve_uri(None, Path.cwd())


def store_of(run_dir: Path) -> str:
    """The store of the run in `run_dir`."""
    return store_beside(run_dir.resolve().parent.parent)


def row_of(run_dir: Path) -> dict[str, Any]:
    """The row of the run in `run_dir`, read from its store."""
    from hydraflow.analysis.runs import Runs, load

    runs: Runs[Any] = load(tracking_uri=store_of(run_dir), status=None)
    found = runs.frame.filter(pl.col("run_id") == run_dir.name)
    if not found.height:
        raise LookupError(f"{run_dir}: no run {run_dir.name} in the store {runs.store_uri}")
    return found.row(0, named=True)
