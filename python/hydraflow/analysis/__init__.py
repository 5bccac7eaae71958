"""Analysis: every run of a store, typed, as a polars frame.

`hydraflow.load(...)` reads a SQLite store directly (no MLflow import) and
any other tracking URI through MLflow's client; see `runs.py`.
"""

from hydraflow.analysis.collection import RunCollection
from hydraflow.analysis.rundirs import iter_run_dirs
from hydraflow.analysis.runs import Run, Runs, load

__all__ = ["Run", "RunCollection", "Runs", "iter_run_dirs", "load"]
