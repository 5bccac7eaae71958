"""Reading runs out of a store, in bulk, into long tables.

A SQLite store is read directly and read-only with the standard library (a
handful of queries, no MLflow import); any other tracking URI goes through
MLflow's client. Both give the same `Tables`, which `frame.py` turns into
the typed frame.
"""

from __future__ import annotations

import contextlib
import fnmatch
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import polars as pl

from hydraflow.errors import StoreNotFoundError
from hydraflow.store import connect_read_only, sqlite_path
from hydraflow.tracking.identity import CHOICE_TAG_PREFIX, CONFIG_TAG

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run as MlflowRun

RUN_SCHEMA = {
    "run_id": pl.String,
    "experiment": pl.String,
    "status": pl.String,
    "start_time": pl.Int64,
    "end_time": pl.Int64,
    "artifact_uri": pl.String,
    "config": pl.String,
}
PARAM_SCHEMA = {"run_id": pl.String, "key": pl.String, "value": pl.String}
HISTORY_SCHEMA = {
    "run_id": pl.String,
    "metric": pl.String,
    "step": pl.Int64,
    "timestamp": pl.Int64,
    "value": pl.Float64,
}
CHOICE_PREFIX = "choice."
METRIC_PREFIX = "metrics."
MMAP_BYTES = 2**32
CACHE_KIB = 256 * 1024
# SQLite allows 32766 bound parameters; chunks well below that keep each query quick.
CHUNK = 5000


@dataclass(frozen=True)
class Tables:
    """The runs as read. `runs` has one row per run: the RUN_SCHEMA columns
    (`config` is the config tag, null without it), then `choice.<group>` and
    `metrics.<name>` columns. `params` holds the params of the runs without
    the config tag, the fallback."""

    runs: pl.DataFrame
    params: pl.DataFrame


def frame(rows: Iterable[Sequence[Any]], schema: dict[str, Any]) -> pl.DataFrame:
    """A frame from row tuples, built column by column (quicker than by row)."""
    columns = list(zip(*rows, strict=True)) or [()] * len(schema)
    return pl.DataFrame(
        [
            pl.Series(name, column, dtype=dtype)
            for (name, dtype), column in zip(schema.items(), columns, strict=True)
        ]
    )


def matches(name: str, patterns: Sequence[str] | None) -> bool:
    return patterns is None or any(fnmatch.fnmatchcase(name, p) for p in patterns)


class Store(Protocol):
    """Where runs come from: a SQLite file or an MLflow tracking server."""

    uri: str

    def read(self, experiments: Sequence[str] | None, statuses: Sequence[str] | None) -> Tables:
        """The runs of the matching, active experiments with these statuses."""
        ...

    def history(self, run_ids: Sequence[str], metrics: Sequence[str]) -> pl.DataFrame:
        """Every logged step of these metrics (all when empty) of these runs."""
        ...


def open_store(uri: str) -> Store:
    path = sqlite_path(uri)
    if path is None:
        return ClientStore(uri)
    if not path.is_file():
        raise StoreNotFoundError(str(path))
    return SqliteStore(uri, path)


class SqliteStore:
    """A SQLite store read with plain SQL, read-only, a few queries in all."""

    def __init__(self, uri: str, path: Path) -> None:
        self.uri = uri
        self.path = path

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        with contextlib.closing(connect_read_only(self.path)) as connection:
            # A bulk read touches most pages: map the file and cache more of
            # it than SQLite's 2 MB default, rather than reading page by page.
            connection.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
            connection.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            yield connection

    def read(self, experiments: Sequence[str] | None, statuses: Sequence[str] | None) -> Tables:
        """One query for the runs, each row with its config tag, choice tags
        and latest metrics (looked up by primary key), then the params of the
        runs without the config tag."""
        with self.connect() as db:
            names = self.experiment_names(db, experiments)
            where, args = run_filter(list(names), statuses)
            groups = [k for (k,) in db.execute(CHOICE_KEYS_QUERY, TAG_RANGE)]
            metrics = [k for (k,) in db.execute("SELECT DISTINCT key FROM latest_metrics")]
            query = RUNS_QUERY.format(
                extra="".join([CHOICE_COLUMN] * len(groups) + [METRIC_COLUMN] * len(metrics)),
                where=where,
            )
            rows = db.execute(query, [CONFIG_TAG, *groups, *metrics, *args]).fetchall()
            schema = {**RUN_SCHEMA, "experiment": pl.Int64}
            schema.update({CHOICE_PREFIX + g[len(CHOICE_TAG_PREFIX) :]: pl.String for g in groups})
            schema.update({METRIC_PREFIX + m: pl.Float64 for m in metrics})
            runs = frame(rows, schema)
            nans = db.execute(
                "SELECT run_uuid, key FROM latest_metrics WHERE is_nan = 1"
            ).fetchall()
            without = runs.filter(pl.col("config").is_null())["run_id"].to_list()
            params = frame(self.params(db, without), PARAM_SCHEMA)
        experiment = pl.col("experiment").replace_strict(names, return_dtype=pl.String)
        return Tables(with_nans(runs.with_columns(experiment), nans), params)

    @staticmethod
    def experiment_names(
        db: sqlite3.Connection, experiments: Sequence[str] | None
    ) -> dict[int, str]:
        rows = db.execute(
            "SELECT experiment_id, name FROM experiments WHERE lifecycle_stage = 'active'"
        ).fetchall()
        return {int(i): name for i, name in rows if matches(name, experiments)}

    @staticmethod
    def params(db: sqlite3.Connection, run_ids: list[str]) -> Iterator[tuple[str, str, str]]:
        for start in range(0, len(run_ids), CHUNK):
            chunk = run_ids[start : start + CHUNK]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT run_uuid, key, value FROM params WHERE run_uuid IN ({marks})"
            yield from db.execute(query, chunk)

    def history(self, run_ids: Sequence[str], metrics: Sequence[str]) -> pl.DataFrame:
        rows: list[tuple[Any, ...]] = []
        key_filter = f" AND key IN ({','.join('?' * len(metrics))})" if metrics else ""
        with self.connect() as db:
            for start in range(0, len(run_ids), CHUNK):
                chunk = list(run_ids[start : start + CHUNK])
                marks = ",".join("?" * len(chunk))
                query = HISTORY_QUERY.format(marks=marks, keys=key_filter)
                rows.extend(db.execute(query, [*chunk, *metrics]))
        return with_nan(frame(rows, {**HISTORY_SCHEMA, "is_nan": pl.Int64}))


def run_filter(experiment_ids: list[int], statuses: Sequence[str] | None) -> tuple[str, list[Any]]:
    """The WHERE clause (on `runs r`) selecting active runs of these
    experiments with these statuses, and its arguments."""
    where = (
        "r.lifecycle_stage = 'active' "
        f"AND r.experiment_id IN ({','.join('?' * len(experiment_ids)) or 'NULL'})"
    )
    args: list[Any] = list(experiment_ids)
    if statuses is not None:
        where += f" AND r.status IN ({','.join('?' * len(statuses)) or 'NULL'})"
        args.extend(statuses)
    return where, args


RUNS_QUERY = (
    "SELECT r.run_uuid, r.experiment_id, r.status, r.start_time, r.end_time, r.artifact_uri, "
    "(SELECT t.value FROM tags t WHERE t.key = ? AND t.run_uuid = r.run_uuid){extra} "
    "FROM runs r WHERE {where}"
)
CHOICE_COLUMN = ", (SELECT t.value FROM tags t WHERE t.key = ? AND t.run_uuid = r.run_uuid)"
METRIC_COLUMN = (
    ", (SELECT m.value FROM latest_metrics m WHERE m.key = ? AND m.run_uuid = r.run_uuid)"
)
# The choice tags: a key range (`.` + 1 is `/`) uses the tags' primary key index.
CHOICE_KEYS_QUERY = "SELECT DISTINCT key FROM tags WHERE key > ? AND key < ?"
TAG_RANGE = (CHOICE_TAG_PREFIX, CHOICE_TAG_PREFIX[:-1] + "/")
HISTORY_QUERY = (
    "SELECT run_uuid, key, step, timestamp, value, is_nan "
    "FROM metrics WHERE run_uuid IN ({marks}){keys}"
)


def with_nans(runs: pl.DataFrame, nans: list[tuple[str, str]]) -> pl.DataFrame:
    """MLflow stores a NaN metric as 0 with `is_nan` set; give the NaN back."""
    by_metric: dict[str, list[str]] = {}
    for run_id, key in nans:
        by_metric.setdefault(METRIC_PREFIX + key, []).append(run_id)
    return runs.with_columns(
        pl.when(pl.col("run_id").is_in(ids)).then(float("nan")).otherwise(pl.col(name)).alias(name)
        for name, ids in by_metric.items()
        if name in runs.columns
    )


def with_nan(metrics: pl.DataFrame) -> pl.DataFrame:
    value = pl.when(pl.col("is_nan") == 1).then(float("nan")).otherwise(pl.col("value"))
    return metrics.with_columns(value.alias("value")).drop("is_nan")


class ClientStore:
    """Any other tracking URI (an MLflow tracking server): MLflow's client,
    page by page, into the same tables."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def client(self) -> MlflowClient:
        from mlflow import MlflowClient

        return MlflowClient(self.uri)

    def read(self, experiments: Sequence[str] | None, statuses: Sequence[str] | None) -> Tables:
        client = self.client()
        names = self.experiment_names(client, experiments)
        found = [
            r for r in self.search(client, list(names)) if not statuses or r.info.status in statuses
        ]
        groups = sorted({k for r in found for k in r.data.tags if k.startswith(CHOICE_TAG_PREFIX)})
        metrics = sorted({k for r in found for k in r.data.metrics})
        schema = dict(RUN_SCHEMA)
        schema.update({CHOICE_PREFIX + g[len(CHOICE_TAG_PREFIX) :]: pl.String for g in groups})
        schema.update({METRIC_PREFIX + m: pl.Float64 for m in metrics})
        rows = [
            (
                *run_row(r, names),
                r.data.tags.get(CONFIG_TAG),
                *[r.data.tags.get(g) for g in groups],
                *[r.data.metrics.get(m) for m in metrics],
            )
            for r in found
        ]
        params = [
            (r.info.run_id, k, v)
            for r in found
            if CONFIG_TAG not in r.data.tags
            for k, v in r.data.params.items()
        ]
        return Tables(frame(rows, schema), frame(params, PARAM_SCHEMA))

    @staticmethod
    def experiment_names(client: MlflowClient, experiments: Sequence[str] | None) -> dict[str, str]:
        names: dict[str, str] = {}
        token = None
        while True:
            page = client.search_experiments(max_results=1000, page_token=token)
            names.update((e.experiment_id, e.name) for e in page if matches(e.name, experiments))
            token = page.token
            if not token:
                return names

    @staticmethod
    def search(client: MlflowClient, experiment_ids: list[str]) -> Iterator[MlflowRun]:
        if not experiment_ids:
            return
        token = None
        while True:
            page = client.search_runs(experiment_ids, max_results=10000, page_token=token)
            yield from page
            token = page.token
            if not token:
                return

    def history(self, run_ids: Sequence[str], metrics: Sequence[str]) -> pl.DataFrame:
        client = self.client()
        rows = []
        for run_id in run_ids:
            keys = metrics or sorted(client.get_run(run_id).data.metrics)
            for key in keys:
                for m in client.get_metric_history(run_id, key):
                    rows.append((run_id, key, m.step, m.timestamp, m.value))
        return frame(rows, HISTORY_SCHEMA)


def run_row(run: MlflowRun, names: dict[str, str]) -> tuple[Any, ...]:
    info = run.info
    experiment = names[info.experiment_id]
    return (info.run_id, experiment, info.status, info.start_time, info.end_time, info.artifact_uri)
