"""Early stopping: `hydraflow.report` logs a metric and says whether the run
should stop now, by the rule given to `@hydraflow.main(stopping=...)`.

The rule compares with the experiment's completed runs: FINISHED and not
stopped themselves, the runs whose histories are whole. A SQLite store is
read directly (read-only, one indexed query per call); a tracking server
through MLflow's client, each completed run's history fetched once.
"""

from __future__ import annotations

import contextlib
import functools
import math
import sqlite3
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from hydraflow.store import connect_read_only, retry_busy, sqlite_path
from hydraflow.tracking.identity import STOPPED_TAG, VALUE_TAG
from hydraflow.tracking.values import encode

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

DIRECTIONS = ("min", "max")


@dataclass(frozen=True)
class MedianStopping:
    """Stop a run when its value at a step is worse than the median of the
    experiment's completed runs at that step (higher for `direction="min"`,
    lower for `"max"`; NaN is always worse). No run stops before step
    `warmup_steps`, nor while fewer than `min_runs` completed runs have a
    value at the step."""

    direction: str = "min"
    warmup_steps: int = 0
    min_runs: int = 3

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be 'min' or 'max', not {self.direction!r}")
        if self.warmup_steps < 0 or self.min_runs < 1:
            raise ValueError("warmup_steps must be >= 0 and min_runs >= 1")

    def should_stop(self, value: float, step: int, others: Sequence[float]) -> bool:
        known = [v for v in others if not math.isnan(v)]
        if step < self.warmup_steps or len(known) < self.min_runs:
            return False
        if math.isnan(value):
            return True
        median = statistics.median(known)
        return value > median if self.direction == "min" else value < median


class Histories(Protocol):
    def at_step(self, metric: str, step: int) -> list[float]:
        """The completed runs' values of `metric` at `step`."""
        ...

    def close(self) -> None: ...


# MLflow's metrics table is indexed on (run_uuid, key, step): one probe per
# completed run. A value logged twice at a step counts with its latest.
AT_STEP_QUERY = f"""
    SELECT metrics.value, metrics.is_nan, MAX(metrics.timestamp)
    FROM runs
    JOIN metrics ON metrics.run_uuid = runs.run_uuid AND metrics.key = ? AND metrics.step = ?
    WHERE runs.experiment_id = ? AND runs.run_uuid != ? AND runs.status = 'FINISHED'
      AND runs.lifecycle_stage = 'active'
      AND NOT EXISTS (
        SELECT 1 FROM tags WHERE tags.run_uuid = runs.run_uuid AND tags.key = '{STOPPED_TAG}')
    GROUP BY runs.run_uuid
"""


class SqliteHistories:
    """A SQLite store, read-only, through one connection kept for the run."""

    def __init__(self, connection: sqlite3.Connection, experiment_id: str, run_id: str) -> None:
        self.connection = connection
        self.experiment_id = int(experiment_id)
        self.run_id = run_id

    def at_step(self, metric: str, step: int) -> list[float]:
        rows = self.connection.execute(
            AT_STEP_QUERY, (metric, step, self.experiment_id, self.run_id)
        ).fetchall()
        return [math.nan if is_nan else float(value) for value, is_nan, _ in rows]

    def close(self) -> None:
        self.connection.close()


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


@dataclass
class Trial:
    """The run being tracked in this process, and how `report` judges it."""

    run_id: str
    rule: MedianStopping | None
    histories: Histories | None
    stopped_at: int | None = None
    last_value: float | None = None

    def report(self, name: str, value: float, step: int) -> bool:
        self.last_value = value
        if self.rule is None or self.histories is None:
            return False
        if self.rule.should_stop(value, step, self.histories.at_step(name, step)):
            if self.stopped_at is None:
                self.stopped_at = step
            return True
        return False

    def finish(self, client: MlflowClient, value: Any, old_tags: dict[str, str]) -> Any:
        """Records what the app returned (a stopped run that returns None:
        its last reported value) and where it stopped; returns that value.
        Tags an earlier attempt left and this one does not set are removed."""
        from mlflow.entities import RunTag

        if value is None and self.stopped_at is not None:
            value = self.last_value
        tags = {VALUE_TAG: encode(value) if value is not None else None}
        tags[STOPPED_TAG] = None if self.stopped_at is None else str(self.stopped_at)
        kept = [RunTag(key, text) for key, text in tags.items() if text is not None]
        if kept:
            retry_busy(lambda: client.log_batch(self.run_id, tags=kept))
        for stale in [key for key, text in tags.items() if text is None and key in old_tags]:
            retry_busy(functools.partial(client.delete_tag, self.run_id, stale))
        return value


_current: Trial | None = None


@contextlib.contextmanager
def watching(run: Run, client: MlflowClient, rule: MedianStopping | None) -> Iterator[Trial]:
    """Makes `run` the one `report` judges while the app runs."""
    global _current
    histories = open_histories(run, client) if rule is not None else None
    trial = Trial(run.info.run_id, rule, histories)
    _current = trial
    try:
        yield trial
    finally:
        _current = None
        if histories is not None:
            histories.close()


def open_histories(run: Run, client: MlflowClient) -> Histories:
    experiment_id, run_id = run.info.experiment_id, run.info.run_id
    path = sqlite_path(str(client.tracking_uri))
    if path is not None:
        return SqliteHistories(connect_read_only(path), experiment_id, run_id)
    return ClientHistories(client, experiment_id, run_id)


def report(name: str, value: float, step: int) -> bool:
    """Logs `value` of metric `name` at `step` (as `mlflow.log_metric`
    would) and returns True when the run should stop now, by the rule of
    `@hydraflow.main(stopping=...)`; always False without one."""
    import mlflow

    mlflow.log_metric(name, value, step=step)
    trial = _current
    return trial is not None and trial.report(name, float(value), step)


def was_stopped(run_id: str) -> bool:
    """Whether `report` stopped the run being tracked in this process."""
    trial = _current
    return trial is not None and trial.run_id == run_id and trial.stopped_at is not None
