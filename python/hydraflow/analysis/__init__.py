"""Analysis: every run of a store, typed, as a polars frame.

`hydraflow.load(...)` reads a SQLite store directly (no MLflow import) and
any other tracking URI through MLflow's client; see `runs.py`.
"""

from hydraflow.analysis.runs import Run, Runs, load

__all__ = ["Run", "Runs", "load"]
