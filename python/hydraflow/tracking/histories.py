"""The completed runs' values of a metric at a step, for the stopping rule
(see `stopping.py`): from a SQLite store's pages, or a tracking server."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import polars as pl

from hydraflow._core import SqliteFileError
from hydraflow.analysis.reading import columns_frame, frame, open_snapshot, table_layout, with_nan
from hydraflow.mlflow_schema import STOPPED_TAG
from hydraflow.store import connect_read_only, retry_busy, sqlite_path

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run


class Histories(Protocol):
    def at_step(self, metric: str, step: int) -> list[float]:
        """The completed runs' values of `metric` at `step`."""
        ...

    def close(self) -> None: ...


class SqliteHistories:
    """A SQLite store, read-only. The first call for a metric reads its
    points from the file's pages (the Rust core, as `load` does) and keeps
    the completed runs' values by step; later calls look for runs completed
    since (at most once a second) and fetch only theirs, through the index
    MLflow keeps on (run, key, step). A completed run's history is final."""

    REFRESH_SECONDS = 1.0

    def __init__(self, path: Path, experiment_id: str, run_id: str) -> None:
        self.path = path
        self.connection = connect_read_only(path)
        self.experiment_id = int(experiment_id)
        self.run_id = run_id
        self.completed: set[str] = set()
        self.checked_at = -math.inf
        self.by_step: dict[str, list[dict[int, pl.Series]]] = {}
        self.included: dict[str, set[str]] = {}

    def at_step(self, metric: str, step: int) -> list[float]:
        self.refresh()
        if metric not in self.by_step:
            self.by_step[metric], self.included[metric] = [], set()
            self.add(metric, self.read_all(metric))
        missing = self.completed - self.included[metric]
        if missing:
            self.add(metric, self.read_runs(metric, sorted(missing)))
        return [v for part in self.by_step[metric] if step in part for v in part[step]]

    def refresh(self) -> None:
        now = time.monotonic()
        if now - self.checked_at >= self.REFRESH_SECONDS:
            self.checked_at = now
            query = (COMPLETED_QUERY, (self.experiment_id, self.run_id, STOPPED_TAG))
            self.completed = {run_id for (run_id,) in self.connection.execute(*query)}

    def add(self, metric: str, points: pl.DataFrame) -> None:
        """Keeps the completed runs' values grouped by step (a step logged
        twice: the later row); Python lists are made per step when asked."""
        completed = pl.DataFrame({"run_uuid": list(self.completed)}, schema={"run_uuid": pl.String})
        grouped = (
            points.join(completed, on="run_uuid", how="semi")
            .group_by("step", "run_uuid")
            .agg(pl.col("value").last())
            .group_by("step")
            .agg("value")
        )
        self.by_step[metric].append(dict(grouped.iter_rows()))
        self.included[metric] |= self.completed

    def read_all(self, metric: str) -> pl.DataFrame:
        """The metric's points, from the file's pages when the core can read
        them (at the snapshot of a read transaction, as `load` does), else
        through SQL in the same transaction."""
        db = self.connection
        snapshot = open_snapshot(self.path)
        db.execute("BEGIN")
        try:
            db.execute("SELECT 1 FROM metrics LIMIT 1").fetchall()  # takes SQLite's read lock
            layout = table_layout(db, "metrics", ["key", *POINTS], defaults_ok=True)
            if layout is None or isinstance(snapshot, str):
                return self.query(f"{POINTS_QUERY} WHERE key = ? ORDER BY rowid", [metric])
            root, (key, *positions) = layout
            try:
                snapshot.pin()
                columns = snapshot.read_table(root, positions, key_column=key, exact=[metric])
                snapshot.check()
            except SqliteFileError:
                # The log moved under the read, or pages the core cannot read:
                # SQL in this transaction reads the same commit.
                return self.query(f"{POINTS_QUERY} WHERE key = ? ORDER BY rowid", [metric])
            points = columns_frame(columns, POINTS).fill_null(0)  # MLflow's defaults: 0
            return with_nan(points)
        finally:
            db.rollback()

    def read_runs(self, metric: str, run_ids: list[str]) -> pl.DataFrame:
        marks = ",".join("?" * len(run_ids))
        query = f"{POINTS_QUERY} WHERE run_uuid IN ({marks}) AND key = ? ORDER BY rowid"
        return self.query(query, [*run_ids, metric])

    def query(self, sql: str, parameters: list[str]) -> pl.DataFrame:
        return with_nan(frame(self.connection.execute(sql, parameters), POINTS))

    def close(self) -> None:
        self.connection.close()


# The completed runs: FINISHED, and not stopped early (their histories end short).
COMPLETED_QUERY = """
    SELECT run_uuid FROM runs
    WHERE experiment_id = ? AND run_uuid != ? AND status = 'FINISHED'
      AND lifecycle_stage = 'active'
      AND NOT EXISTS (SELECT 1 FROM tags WHERE tags.run_uuid = runs.run_uuid AND tags.key = ?)
"""
# Rows in rowid order: a step logged twice keeps its later value.
POINTS = {"run_uuid": pl.String, "step": pl.Int64, "value": pl.Float64, "is_nan": pl.Int64}
POINTS_QUERY = f"SELECT {', '.join(POINTS)} FROM metrics"


class ClientHistories:
    """A tracking server: the completed runs found by one search per call,
    the history of each fetched once (a completed run's history is final)."""

    def __init__(self, client: MlflowClient, experiment_id: str, run_id: str) -> None:
        self.client = client
        self.experiment_id = experiment_id
        self.run_id = run_id
        self.cache: dict[tuple[str, str], dict[int, float]] = {}

    def completed(self) -> list[str]:
        runs = retry_busy(
            lambda: self.client.search_runs(
                [self.experiment_id], filter_string="attributes.status = 'FINISHED'"
            )
        )
        return [
            r.info.run_id
            for r in runs
            if r.info.run_id != self.run_id and STOPPED_TAG not in r.data.tags
        ]

    def history(self, run_id: str, metric: str) -> dict[int, float]:
        if (run_id, metric) not in self.cache:
            points = retry_busy(lambda: self.client.get_metric_history(run_id, metric))
            latest = sorted(points, key=lambda p: p.timestamp)
            self.cache[run_id, metric] = {p.step: p.value for p in latest}
        return self.cache[run_id, metric]

    def at_step(self, metric: str, step: int) -> list[float]:
        values = (self.history(run_id, metric).get(step) for run_id in self.completed())
        return [v for v in values if v is not None]

    def close(self) -> None:
        pass


def open_histories(run: Run, client: MlflowClient) -> Histories:
    experiment_id, run_id = run.info.experiment_id, run.info.run_id
    path = sqlite_path(str(client.tracking_uri))
    if path is not None:
        return SqliteHistories(path, experiment_id, run_id)
    return ClientHistories(client, experiment_id, run_id)
