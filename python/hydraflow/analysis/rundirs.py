"""Runs by their folders, as the published HydraFlow finds them.

A run's folder is `<tracking dir>/<experiment id>/<run id>` (`mlruns/1/...`),
its artifacts in `artifacts/` below it. Its store is the `mlflow.db` beside
the tracking dir (where `hydraflow run` and the published tool put it), else
the one `hydraflow.load` would read (MLFLOW_TRACKING_URI, else `./mlflow.db`).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from hydraflow.errors import ArtifactsNotFoundError, HydraflowError
from hydraflow.remote import masked
from hydraflow.store import DEFAULT_DB
from hydraflow.store import tracking_uri as resolve_uri
from hydraflow.tracking.artifacts import local_path

if TYPE_CHECKING:
    from hydraflow.analysis.reading import Store

Names = str | Sequence[str] | Callable[[str], bool] | None


def iter_run_dirs(
    tracking_dir: str | os.PathLike[str] | Names = None, experiment_names: Names = None
) -> Iterator[Path]:
    """The folders of the runs (all statuses) in `tracking_dir`, of the
    experiments named by `experiment_names`: a name, a glob pattern, a list of
    them, a function of a name, or None for all; in the order of their start.
    MLflow's `Default` is left out, as the published tool leaves it out,
    unless named as `"Default"`.

    `iter_run_dirs("job_*")`, a name that is no folder, is read as the
    published 0.23 reads it: experiment names, in the default store; so is a
    list of names or a function as the one argument. A
    `tracking_dir` that is no folder beside `experiment_names`, or one that
    looks like a path (`a/b`, `./mlruns`, `~/x`), is an error.
    """
    return run_dirs("iter_run_dirs", tracking_dir, experiment_names)


def run_dirs(
    caller: str, tracking_dir: str | os.PathLike[str] | Names, experiment_names: Names
) -> Iterator[Path]:
    root, names = where(caller, tracking_dir, experiment_names)
    uri = store_beside(root)
    frame = runs_frame(uri, names)
    elsewhere = frame.filter(pl.col("artifact_dir").is_null())["experiment"]
    if len(elsewhere):  # never none listed in silence
        from hydraflow.analysis.reading import open_store

        locations = dict(open_store(uri).experiment_locations())
        raise not_here(caller, elsewhere[0], locations.get(elsewhere[0], "?"))
    for folder in frame["artifact_dir"]:
        run_dir = Path(folder).parent
        if (root is None or run_dir.parent.parent == root) and Path(folder).is_dir():
            yield run_dir


def iter_artifacts_dirs(
    tracking_dir: str | os.PathLike[str] | Names = None, experiment_names: Names = None
) -> Iterator[Path]:
    """The `artifacts` folder of each run of `iter_run_dirs` (same arguments, same order)."""
    return artifacts_dirs("iter_artifacts_dirs", tracking_dir, experiment_names)


def artifacts_dirs(
    caller: str, tracking_dir: str | os.PathLike[str] | Names, experiment_names: Names
) -> Iterator[Path]:
    for run_dir in run_dirs(caller, tracking_dir, experiment_names):
        yield run_dir / "artifacts"


def iter_artifact_paths(
    artifact_path: str | os.PathLike[str],
    tracking_dir: str | os.PathLike[str] | Names = None,
    experiment_names: Names = None,
) -> Iterator[Path]:
    """`artifact_path` in each run's artifacts folder (`iter_artifacts_dirs`),
    whether the run has it or not, as the published tool gives it: check
    `.exists()`, or use `Run.glob` for a pattern."""
    if not isinstance(artifact_path, str | os.PathLike):
        raise TypeError(
            f"iter_artifact_paths: the artifact path must be text or a Path, "
            f"not {type(artifact_path).__name__}"
        )
    relative = Path(artifact_path)
    if relative.is_absolute() or ".." in relative.parts:
        raise ValueError(
            f"iter_artifact_paths: {os.fspath(artifact_path)!r} is not a path inside "
            "a run's artifacts folder (no leading '/', no '..')"
        )
    dirs = artifacts_dirs("iter_artifact_paths", tracking_dir, experiment_names)
    return (artifacts_dir / relative for artifacts_dir in dirs)


def get_experiment_names(tracking_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """The names of the experiments (of `tracking_dir`, else of the default
    store), newest first as MLflow lists them; MLflow's `Default` left out."""
    return [name for name, _ in experiment_folders("get_experiment_names", tracking_dir, None)]


def iter_experiment_dirs(
    tracking_dir: str | os.PathLike[str] | Names = None, experiment_names: Names = None
) -> Iterator[Path]:
    """The folders of the experiments named by `experiment_names` (the forms
    of `iter_run_dirs`), newest first as MLflow lists them: where each keeps
    its runs, whether it has any yet or not. MLflow's `Default` left out."""
    for _, folder in experiment_folders("iter_experiment_dirs", tracking_dir, experiment_names):
        yield folder


def experiment_folders(
    caller: str, tracking_dir: str | os.PathLike[str] | Names, experiment_names: Names
) -> list[tuple[str, Path]]:
    """The named experiments of the store and their artifact folders."""
    from hydraflow.analysis.reading import DEFAULT_EXPERIMENT, open_store

    root, names = where(caller, tracking_dir, experiment_names)
    found = []
    store = open_store(store_beside(root))
    for name, location in store.experiment_locations():
        if name == DEFAULT_EXPERIMENT or not named(name, names):
            continue
        folder = local_experiment_folder(store, location)
        if folder is None:
            raise not_here(caller, name, location)
        if root is None or folder.parent == root:
            found.append((name, folder))
    return found


def local_experiment_folder(store: Store, location: str) -> Path | None:
    """The folder of this machine an experiment's recorded location stands
    for (`experiment_folder`: a moved store's own), None when there is none."""
    from hydraflow.analysis.reading import experiment_folder

    recorded = local_path(location)
    return None if recorded is None else experiment_folder(recorded, store.home)


def not_here(caller: str, experiment: str, location: str) -> ArtifactsNotFoundError:
    return ArtifactsNotFoundError(
        f"{caller}: the experiment {experiment!r} keeps its runs at {location}, "
        "not in a folder of this machine (a store moved without its mlruns/?)"
    )


def named(name: str, names: Names) -> bool:
    """Whether `experiment_names` (None, a pattern, patterns, a function) names `name`."""
    if names is None:
        return True
    if callable(names):
        return bool(names(name))
    patterns = [names] if isinstance(names, str) else names
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def where(
    caller: str, tracking_dir: str | os.PathLike[str] | Names, experiment_names: Names
) -> tuple[Path | None, Names]:
    """The tracking folder (None: the default store's runs) and the names, from
    the arguments in any of their forms; a clear error for a missing folder
    or names of the wrong kind."""
    if not isinstance(tracking_dir, str | os.PathLike | None):
        # The published 0.23's one argument: a list of names or a function of one.
        tracking_dir, experiment_names = None, tracking_dir
    check_names(caller, experiment_names)
    one_name = experiment_names is None and not looks_like_path(tracking_dir)
    if tracking_dir is not None and one_name and not is_tracking_folder(Path(tracking_dir)):
        experiment_names = os.fspath(tracking_dir)
        tracking_dir = None
    if tracking_dir is not None and not Path(tracking_dir).is_dir():
        raise HydraflowError(
            f"{caller}: no such folder {os.fspath(tracking_dir)!r} (cwd {Path.cwd()})"
        )
    return (Path(tracking_dir).resolve() if tracking_dir is not None else None), experiment_names


def check_names(caller: str, names: object) -> None:
    """Experiment names are a name or pattern, a list of them, a function, or None."""
    if names is None or isinstance(names, str) or callable(names):
        return
    if isinstance(names, Sequence | set) and all(isinstance(n, str) for n in names):
        return
    raise TypeError(
        f"{caller}: experiment names must be a name or glob pattern, a list of them, "
        f"or a function of a name; got {names!r}"
    )


def is_tracking_folder(path: Path) -> bool:
    """A folder of runs: a store's (`mlflow.db`, `mlruns/`) or MLflow's
    `mlruns` itself (experiment folders by number). A plain word naming any
    other folder (`data`, a job's outputs) is an experiment's name."""
    if (path / "mlflow.db").is_file() or (path / "mlruns").is_dir():
        return True
    try:
        return any(child.name.isdigit() and child.is_dir() for child in path.iterdir())
    except OSError:
        return False


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
    names = frame["experiment"].unique().to_list()
    chosen = [name for name in names if run_experiment(name, experiment_names)]
    return frame.filter(pl.col("experiment").is_in(chosen))


def run_experiment(name: str, names: Names) -> bool:
    """Whether the runs of experiment `name` are listed. MLflow's `Default`
    (where a run started outside any experiment goes) never is by the
    published tool; here only when named as `"Default"`, not by a glob,
    None or a function."""
    from hydraflow.analysis.reading import DEFAULT_EXPERIMENT

    if name != DEFAULT_EXPERIMENT:
        return named(name, names)
    patterns = [names] if isinstance(names, str) else names
    return not callable(patterns) and patterns is not None and DEFAULT_EXPERIMENT in patterns


def store_beside(tracking_dir: Path | None) -> str:
    """The store of the runs in `tracking_dir`: the `mlflow.db` beside it,
    else the default one."""
    if tracking_dir is not None and (tracking_dir.parent / DEFAULT_DB).is_file():
        return resolve_uri(tracking_dir.parent / DEFAULT_DB, Path.cwd())
    return resolve_uri(None, Path.cwd())


def store_of(run_dir: Path) -> str:
    """The store of the run in `run_dir`."""
    return store_beside(run_dir.resolve().parent.parent)


def row_of(run_dir: Path) -> tuple[dict[str, Any], frozenset[str]]:
    """The row of the run in `run_dir`, read from its store, and which of
    its keys hold JSON text (`Runs.json_columns`)."""
    from hydraflow.analysis.runs import Runs, load

    runs: Runs[Any] = load(tracking_uri=store_of(run_dir), status=None)
    found = runs.frame.filter(pl.col("run_id") == run_dir.name)
    if not found.height:
        raise LookupError(f"{run_dir}: no run {run_dir.name} in the store {masked(runs.store_uri)}")
    return found.row(0, named=True), runs.json_columns
