"""The completed runs' values of a metric at a step, for the stopping rule
(see `stopping.py`): from a SQLite store's pages, or a tracking server."""

from __future__ import annotations

import bisect
import functools
import hashlib
import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import polars as pl

from hydraflow._core import SqliteFileError
from hydraflow.analysis.reading import columns_frame, frame, open_snapshot, table_layout, with_nan
from hydraflow.mlflow_schema import STOPPED_TAG
from hydraflow.store import connect_read_only, retry_busy, sqlite_path

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.store.entities.paged_list import PagedList


class Histories(Protocol):
    def at_step(self, metric: str, step: int) -> list[float]:
        """The completed runs' values of `metric` at `step`."""
        ...

    def close(self) -> None: ...


class SqliteHistories:
    """A SQLite store, read-only. A completed run's history is final, so the
    completed runs' points of a metric are kept beside the store, in files
    sorted by step and memory-mapped (`Segments`): a step's values are a
    binary search away, in any process. Runs completed since are fetched
    through MLflow's index on (run, key, step), or, when there are many (a
    store never cached), from the metric's pages read by the Rust core as
    `load` reads them; they are written as a new file when the job ends."""

    REFRESH_SECONDS = 1.0
    # More runs to fetch than this: reading the whole metric is quicker.
    FETCH_LIMIT = 1000

    def __init__(self, path: Path, experiment_id: str, run_id: str) -> None:
        self.path = path
        self.connection = connect_read_only(path)
        self.experiment_id = int(experiment_id)
        self.run_id = run_id
        self.completed: frozenset[str] = frozenset()
        self.checked_at = -math.inf
        self.segments: dict[str, Segments] = {}

    def at_step(self, metric: str, step: int) -> list[float]:
        self.refresh()
        segments = self.segments.get(metric)
        if segments is None:
            folder = cache_folder(self.path, self.experiment_id, metric)
            segments = self.segments[metric] = Segments.load(folder)
        missing = self.completed - segments.included
        if missing:
            runs = sorted(missing)
            points = (
                self.read_all(metric)
                if len(runs) > self.FETCH_LIMIT
                else self.read_runs(metric, runs)
            )
            segments.add(points, runs)
        return segments.at_step(step, self.completed)

    def refresh(self) -> None:
        now = time.monotonic()
        if now - self.checked_at >= self.REFRESH_SECONDS:
            self.checked_at = now
            query = (COMPLETED_QUERY, (self.experiment_id, self.run_id, STOPPED_TAG))
            self.completed = frozenset(run_id for (run_id,) in self.connection.execute(*query))

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
        parts = []
        for start in range(0, len(run_ids), 500):  # within SQLite's variable limit
            chunk = run_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            query = f"{POINTS_QUERY} WHERE run_uuid IN ({marks}) AND key = ? ORDER BY rowid"
            parts.append(self.query(query, [*chunk, metric]))
        return pl.concat(parts)

    def query(self, sql: str, parameters: list[str]) -> pl.DataFrame:
        return with_nan(frame(self.connection.execute(sql, parameters), POINTS))

    def close(self) -> None:
        self.connection.close()
        for segments in self.segments.values():
            segments.save(self.completed)


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

# A segment's points: sorted by step, the run as an index into its runs.
RECORD = np.dtype([("step", "<i8"), ("run", "<u4"), ("value", "<f8")])
CACHE_DIR = Path(".hydraflow") / "histories"
# More segments than this are merged into one when a job ends.
MAX_SEGMENTS = 16


def cache_folder(store: Path, experiment_id: int, metric: str) -> Path:
    """Beside the store; named by the store file, the experiment and the metric."""
    key = hashlib.sha256(f"{store.name}\0{experiment_id}\0{metric}".encode()).hexdigest()
    return store.resolve().parent / CACHE_DIR / key[:32]


@dataclass
class Segment:
    """Completed runs' points of one metric: `runs` were fetched whole (a
    run without points too); `records` sorted by step. `counted` marks the
    runs this segment answers for: completed now, and not already in an
    earlier segment (two processes may have written the same run)."""

    runs: np.ndarray
    records: np.ndarray
    name: str | None = None
    counted: np.ndarray | None = None

    @classmethod
    def of(cls, points: pl.DataFrame, runs: list[str]) -> Segment:
        """From points in rowid order: a step logged twice keeps its later value."""
        numbers = pl.DataFrame(
            {"run_uuid": runs, "run": np.arange(len(runs), dtype=RECORD["run"])},
            schema={"run_uuid": pl.String, "run": pl.UInt32},
        )
        ordered = (
            points.join(numbers, on="run_uuid", maintain_order="left")
            .select("step", "run", "value")
            .sort("step", "run", maintain_order=True)
        )
        records = np.empty(len(ordered), dtype=RECORD)
        for column in ("step", "run", "value"):
            records[column] = ordered[column].to_numpy()
        # A step logged twice: its rows are now together, the later last.
        step, run = records["step"], records["run"]
        last = np.ones(len(records), dtype=bool)
        last[:-1] = (step[1:] != step[:-1]) | (run[1:] != run[:-1])
        records = records[last]
        return cls(np.array(runs, dtype=object), records)

    def values_at(self, step: int) -> list[float]:
        # bisect reads ~20 steps of the mapped file; numpy's searchsorted
        # would first copy the (strided) column whole.
        steps = self.records["step"]
        rows = self.records[bisect.bisect_left(steps, step) : bisect.bisect_right(steps, step)]
        assert self.counted is not None
        values: list[float] = rows["value"][self.counted[rows["run"]]].tolist()
        return values


class Segments:
    """The segments of one metric: those on disk, and those fetched here."""

    def __init__(self, folder: Path, stored: list[Segment]) -> None:
        self.folder = folder
        self.stored = stored
        self.fetched: list[Segment] = []
        self.counted_for: frozenset[str] | None = None

    @classmethod
    def load(cls, folder: Path) -> Segments:
        stored = []
        for file in sorted(folder.glob("*.npy")):
            try:
                runs = file.with_suffix(".runs").read_text().split()
                try:
                    records = np.load(file, mmap_mode="r")
                except ValueError:  # an empty segment cannot be mapped
                    records = np.load(file)
            except (OSError, ValueError):
                continue  # being replaced by a merge: its runs are fetched again
            stored.append(Segment(np.array(runs, dtype=object), records, file.stem))
        return cls(folder, stored)

    @property
    def all(self) -> list[Segment]:
        return [*self.stored, *self.fetched]

    @functools.cached_property
    def included(self) -> frozenset[str]:
        """The runs fetched whole, with or without points."""
        return frozenset(run for segment in self.all for run in segment.runs)

    def add(self, points: pl.DataFrame, runs: list[str]) -> None:
        self.fetched.append(Segment.of(points, runs))
        self.__dict__.pop("included", None)
        self.counted_for = None

    def at_step(self, step: int, completed: frozenset[str]) -> list[float]:
        if self.counted_for is not completed:
            self.count(completed)
        return [value for segment in self.all for value in segment.values_at(step)]

    def count(self, completed: frozenset[str]) -> None:
        seen: set[str] = set()
        for segment in self.all:
            counted = [run in completed and run not in seen for run in segment.runs]
            segment.counted = np.array(counted, dtype=bool)
            seen.update(segment.runs)
        self.counted_for = completed

    def save(self, completed: frozenset[str]) -> None:
        """Writes what was fetched as one more file, or, when there would be
        too many, all in one (only the runs still completed) in place of the
        others. A cache: what cannot be written is left out."""
        self.count(completed)
        try:
            if len(self.stored) + bool(self.fetched) > MAX_SEGMENTS:
                self.write(merged(self.all))
                for segment in self.stored:
                    for suffix in (".npy", ".runs"):
                        (self.folder / f"{segment.name}{suffix}").unlink(missing_ok=True)
            elif self.fetched:
                self.write(merged(self.fetched))
        except OSError:
            pass

    def write(self, segment: Segment) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = uuid.uuid4().hex
        runs = "\n".join(segment.runs).encode()
        # The runs first: a segment is whole once its .npy appears.
        for suffix, write in (
            (".runs", lambda out: out.write(runs)),
            (".npy", lambda out: np.save(out, segment.records)),
        ):
            partial = self.folder / f".{name}{suffix}.partial"
            with open(partial, "wb") as out:
                write(out)
            partial.replace(self.folder / f"{name}{suffix}")


def merged(segments: list[Segment]) -> Segment:
    """One segment of the runs these count (see `Segments.count`), its
    records in step order."""
    runs: list[str] = []
    parts = []
    for segment in segments:
        assert segment.counted is not None
        kept = segment.counted
        position = np.zeros(len(kept), dtype=RECORD["run"])
        position[kept] = np.arange(len(runs), len(runs) + int(kept.sum()))
        runs.extend(segment.runs[kept])
        records = np.array(segment.records[kept[segment.records["run"]]])  # a copy
        records["run"] = position[records["run"]]
        parts.append(records)
    records = np.concatenate(parts) if parts else np.empty(0, dtype=RECORD)
    order = np.argsort(records["step"], kind="stable")
    return Segment(np.array(runs, dtype=object), records[order])


class ClientHistories:
    """A tracking server: the completed runs found by a search (every page,
    at most once a second), the history of each fetched once (a completed
    run's history is final)."""

    REFRESH_SECONDS = 1.0

    def __init__(self, client: MlflowClient, experiment_id: str, run_id: str) -> None:
        self.client = client
        self.experiment_id = experiment_id
        self.run_id = run_id
        self.cache: dict[tuple[str, str], dict[int, float]] = {}
        self.runs: list[str] = []
        self.checked_at = -math.inf

    def completed(self) -> list[str]:
        now = time.monotonic()
        if now - self.checked_at >= self.REFRESH_SECONDS:
            self.checked_at = now
            self.runs = [
                run.info.run_id
                for run in self.search()
                if run.info.run_id != self.run_id and STOPPED_TAG not in run.data.tags
            ]
        return self.runs

    def search(self) -> Iterator[Run]:
        token = None
        while True:
            page = retry_busy(functools.partial(self.page, token))
            yield from page
            token = page.token
            if not token:
                return

    def page(self, token: str | None) -> PagedList[Run]:
        return self.client.search_runs(
            [self.experiment_id],
            filter_string="attributes.status = 'FINISHED'",
            max_results=10_000,
            page_token=token,
        )

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
