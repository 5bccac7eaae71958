"""Analysis: every run of a store, typed, as a polars frame.

`hydraflow.load(...)` reads a SQLite store directly (no MLflow import) and
any other tracking URI through MLflow's client; see `runs.py`.
"""

from hydraflow.analysis.collection import RunCollection
from hydraflow.analysis.rundirs import (
    get_experiment_names,
    iter_artifact_paths,
    iter_artifacts_dirs,
    iter_experiment_dirs,
    iter_run_dirs,
)
from hydraflow.analysis.runs import Run, Runs, load
from hydraflow.analysis.sequence import Collection

__all__ = [
    "Collection",
    "Run",
    "RunCollection",
    "Runs",
    "get_experiment_names",
    "iter_artifact_paths",
    "iter_artifacts_dirs",
    "iter_experiment_dirs",
    "iter_run_dirs",
    "load",
]
