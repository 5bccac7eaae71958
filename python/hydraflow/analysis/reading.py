"""Reading runs out of a store, in bulk, into long tables.

A SQLite store is read directly and read-only, each table whole from the
file's pages by the Rust core (no MLflow import); any other tracking URI goes
through MLflow's client. Both give the same `Tables`, which `frame.py` turns into
the typed frame.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import sqlite3
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import polars as pl

from hydraflow._core import SqliteFileError, StoreSnapshot
from hydraflow.errors import StoreError, StoreNotFoundError, user_stacklevel
from hydraflow.mlflow_schema import (
    ACTIVE,
    ACTIVE_EXPERIMENTS_QUERY,
    CHOICE_TAG_PREFIX,
    CONFIG_AND_CHOICE_TAGS_QUERY,
    CONFIG_TAG,
    EXPERIMENT_LOCATIONS_QUERY,
    HISTORY_QUERY,
    LATEST_METRICS_QUERY,
    PARAMS_QUERY,
    RUN_TAGS,
    TAG_RANGE,
)
from hydraflow.store import connect_read_only, notice_when_waiting, sqlite_path

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
    "value": pl.String,
    "stopped": pl.String,
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
# Reads from pages begun again when a writer commits or restarts the log at
# the wrong moment, before SQL reads the store instead.
ATTEMPTS = 5
# A read through SQL slower than this is worth a warning (once per process).
SLOW_SQL_SECONDS = 1.0
# MLflow's own experiment: in a list of the experiments only when it has runs.
DEFAULT_EXPERIMENT = "Default"
ANY_RUN_QUERY = (
    f"SELECT 1 FROM runs WHERE experiment_id = ? AND lifecycle_stage = '{ACTIVE}' LIMIT 1"
)
# The tables a load reads. MLflow makes a new store's tables one by one (its
# first ones, then some 60 alembic migrations, each committed), so a load
# racing it may find only some of them.
READ_TABLES = ("experiments", "runs", "tags", "latest_metrics", "params")

log = logging.getLogger("hydraflow")


@dataclass(frozen=True)
class Tables:
    """The runs as read. `runs` has one row per run: the RUN_SCHEMA columns
    (`config` is the config tag, null without it), then `choice.<group>` and
    `metrics.<name>` columns. `params` holds the params of the runs without
    the config tag, the fallback."""

    runs: pl.DataFrame
    params: pl.DataFrame
    # The folder of a SQLite store's file: its runs' folders are found beside it.
    home: Path | None = None


def experiment_folder(recorded: Path, home: Path | None) -> Path | None:
    """Where the experiment MLflow recorded at `recorded` (`…/mlruns/1`)
    keeps its runs' folders, for the store whose file is in `home`. MLflow
    keeps absolute locations, so a store moved or copied with its folders
    still names the old ones: its own `mlruns/1` then (never the
    original's). A recorded folder that is there otherwise stands (kept
    apart from the store on purpose, or a copy of the store's file alone,
    as MLflow reads it). Else the store's own place for it when it has a
    `mlruns/`; else None: on no path of this machine."""
    if home is None or len(recorded.parts) < 3:
        return recorded
    own = home / recorded.parent.name / recorded.name
    if own == recorded:
        return own
    # MLflow's own layout ends in the experiment's id: a copy's folder wins.
    if recorded.is_dir() and not (recorded.name.isdigit() and own.is_dir()):
        return recorded
    return own if own.is_dir() or own.parent.is_dir() else None


def frame(rows: Iterable[Sequence[Any]], schema: dict[str, Any]) -> pl.DataFrame:
    """A frame from row tuples, built column by column (quicker than by row)."""
    columns = [list(column) for column in zip(*rows, strict=True)] or [[] for _ in schema]
    return columns_frame(columns, schema)


def matches(name: str, patterns: Sequence[str] | None) -> bool:
    return patterns is None or any(fnmatch.fnmatchcase(name, p) for p in patterns)


class Store(Protocol):
    """Where runs come from: a SQLite file or an MLflow tracking server."""

    uri: str
    # The folder of a SQLite store's file (None for a server): see `experiment_folder`.
    home: Path | None

    def read(self, experiments: Sequence[str] | None, statuses: Sequence[str] | None) -> Tables:
        """The runs of the matching, active experiments with these statuses."""
        ...

    def history(self, run_ids: Sequence[str], metrics: Sequence[str]) -> pl.DataFrame:
        """Every logged step of these metrics (all when empty) of these runs."""
        ...

    def experiments(self) -> list[str]:
        """The names of the active experiments, sorted (MLflow's `Default`
        only when it has runs)."""
        ...

    def experiment_locations(self) -> list[tuple[str, str]]:
        """Each active experiment's name and artifact location, newest first."""
        ...


def open_store(uri: str) -> Store:
    path = sqlite_path(uri)
    if path is None:
        return ClientStore(uri)
    if not path.is_file():
        raise StoreNotFoundError(str(path))
    return SqliteStore(uri, path)


class SqliteStore:
    """A SQLite store read in bulk and read-only: the runs, their config and
    choice tags and their latest metrics, each table read whole from the
    file's pages by the Rust core (SQL when it cannot), then joined by polars."""

    def __init__(self, uri: str, path: Path) -> None:
        self.uri = uri
        self.path = path
        self.home: Path | None = path.absolute().parent

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection; SQLite's errors (a damaged file, one that
        is not a database) become one clear StoreError."""
        try:
            with contextlib.closing(self.connect_waiting()) as connection:
                # A bulk read touches most pages: map the file and cache more
                # of it than SQLite's 2 MB default, rather than page by page.
                connection.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
                connection.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
                yield connection
        except sqlite3.DatabaseError as error:
            raise StoreError(str(self.path), error) from error

    def connect_waiting(self) -> sqlite3.Connection:
        """A read-only connection that has read once: a writer keeping
        readers out makes it wait here, and after a while say for whom."""
        with notice_when_waiting(self.path):
            connection = connect_read_only(self.path)
            try:
                connection.execute("SELECT 1 FROM sqlite_schema LIMIT 1").fetchall()
            except BaseException:
                connection.close()
                raise
        return connection

    def read(self, experiments: Sequence[str] | None, statuses: Sequence[str] | None) -> Tables:
        with self.connect() as db:
            for _ in range(ATTEMPTS):
                with contextlib.suppress(LogMoved):
                    return self.read_once(db, experiments, statuses, pages=True)
            return self.read_once(db, experiments, statuses, pages=False)

    def read_once(
        self,
        db: sqlite3.Connection,
        experiments: Sequence[str] | None,
        statuses: Sequence[str] | None,
        pages: bool,
    ) -> Tables:
        """Everything from one read transaction, so from one commit: SQLite's
        lock keeps the pages of its snapshot, and `StoreSnapshot` makes the
        pages read by the Rust core those of the same snapshot."""
        snapshot = open_snapshot(self.path) if pages else "the write-ahead log kept moving"
        db.execute("BEGIN")
        try:
            if has_no_runs_yet(db):  # the transaction's first read
                return Tables(assemble(no_raw_tables(), {}, statuses), frame([], PARAM_SCHEMA))
            names = self.experiment_names(db, experiments)
            raw = read_raw(db, snapshot, self.path)
            runs = assemble(raw, names, statuses)
            without = runs.filter(pl.col("config").is_null())["run_id"].to_list()
            params = frame(self.params(db, without), PARAM_SCHEMA)
        finally:
            db.rollback()
        return Tables(runs, params, self.home)

    @staticmethod
    def experiment_names(
        db: sqlite3.Connection, experiments: Sequence[str] | None
    ) -> dict[int, str]:
        rows = db.execute(ACTIVE_EXPERIMENTS_QUERY).fetchall()
        return {int(i): name for i, name in rows if matches(name, experiments)}

    def experiments(self) -> list[str]:
        with self.connect() as db:
            if has_no_runs_yet(db):
                return []
            names = self.experiment_names(db, None)
            return sorted(
                name
                for i, name in names.items()
                if name != DEFAULT_EXPERIMENT or db.execute(ANY_RUN_QUERY, (i,)).fetchone()
            )

    def experiment_locations(self) -> list[tuple[str, str]]:
        with self.connect() as db:
            if has_no_runs_yet(db):
                return []
            return [(name, location) for name, location in db.execute(EXPERIMENT_LOCATIONS_QUERY)]

    @staticmethod
    def params(db: sqlite3.Connection, run_ids: list[str]) -> Iterator[tuple[str, str, str]]:
        for start in range(0, len(run_ids), CHUNK):
            chunk = run_ids[start : start + CHUNK]
            marks = ",".join("?" * len(chunk))
            yield from db.execute(PARAMS_QUERY.format(marks=marks), chunk)

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


def has_no_runs_yet(db: sqlite3.Connection) -> bool:
    """An empty database, or a store MLflow is still creating: some of the
    tables a load reads are missing, and so is any run. (A store missing
    them with runs, or another app's database, fails on reading: damaged.)"""
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
    if not tables:
        return True
    if "experiments" not in tables or tables.issuperset(READ_TABLES):
        return False
    return "runs" not in tables or db.execute("SELECT 1 FROM runs LIMIT 1").fetchone() is None


@dataclass(frozen=True)
class RawTables:
    """MLflow's tables as stored: every run, the config and choice tags, and
    every latest metric."""

    runs: pl.DataFrame
    tags: pl.DataFrame
    latest: pl.DataFrame


# MLflow's column names, in the order the frames take them.
RAW_RUNS = {
    "run_uuid": pl.String,
    "experiment_id": pl.Int64,
    "status": pl.String,
    "start_time": pl.Int64,
    "end_time": pl.Int64,
    "artifact_uri": pl.String,
    "lifecycle_stage": pl.String,
}
RAW_TAGS = {"run_uuid": pl.String, "key": pl.String, "value": pl.String}
RAW_LATEST = {"run_uuid": pl.String, "key": pl.String, "value": pl.Float64, "is_nan": pl.Int64}


def no_raw_tables() -> RawTables:
    return RawTables(frame([], RAW_RUNS), frame([], RAW_TAGS), frame([], RAW_LATEST))


class LogMoved(Exception):
    """A writer committed or restarted the log under the read: read again."""


def open_snapshot(path: Path) -> StoreSnapshot | str:
    """The snapshot to pin once the transaction has begun, or why the
    store's pages cannot be read (SQL reads it then)."""
    shm = Path(f"{path}-shm")
    if shm.exists() and not os.access(shm, os.W_OK):
        # SQLite then builds its wal-index in memory: the file's may be older.
        return "its -shm file is read-only to this user"
    try:
        return StoreSnapshot(path)
    except SqliteFileError as error:
        if error.moved:  # the wal-index header was being written, again and again
            raise LogMoved from error
        return str(error)


def read_raw(db: sqlite3.Connection, snapshot: StoreSnapshot | str, path: Path) -> RawTables:
    """The tables from the pages when the core can read them, else through
    SQL. A page that looks damaged is not taken on the core's word: SQLite
    reads the store, and only if it fails too is the store damaged."""
    failure: SqliteFileError | None = None
    if isinstance(snapshot, str):
        reason = snapshot
    else:
        try:
            raw = read_pages(db, snapshot)
        except SqliteFileError as error:
            if error.moved:
                log.debug("hydraflow: the log of %s moved under the read: again", path)
                raise LogMoved from error
            failure, reason = error, str(error)
        else:
            if raw is not None:
                return raw
            reason = "a table layout the page reader does not know"
    log.debug("hydraflow: reading %s through SQL: %s", path, reason)
    started = time.perf_counter()
    try:
        raw = read_sql(db)
    except sqlite3.DatabaseError as error:
        raise StoreError(str(path), failure or error) from error
    warn_if_slow(path, reason, time.perf_counter() - started)
    return raw


# Paths warned about: the warning is given once per process.
_warned_slow: set[Path] = set()


def warn_if_slow(path: Path, reason: str, seconds: float) -> None:
    """Once per process: a load read through SQL, not pages, and it showed."""
    if seconds < SLOW_SQL_SECONDS or _warned_slow:
        return
    _warned_slow.add(path)
    warnings.warn(
        f"hydraflow.load read {path} through SQL in {seconds:.1f} s, not from its pages"
        f" ({reason}); the 'hydraflow' logger at DEBUG tells each time it does",
        RuntimeWarning,
        stacklevel=user_stacklevel(),
    )


def read_pages(db: sqlite3.Connection, snapshot: StoreSnapshot) -> RawTables | None:
    """The tables read from the file's pages by the Rust core at the
    snapshot of the caller's transaction; None when the core cannot read a
    table faithfully (a table layout it does not know): SQL must."""
    snapshot.pin()
    runs = table_layout(db, "runs", list(RAW_RUNS))
    tags = table_layout(db, "tags", list(RAW_TAGS))
    latest = table_layout(db, "latest_metrics", list(RAW_LATEST))
    if runs is None or tags is None or latest is None:
        return None
    tag_key = tags[1][1]
    raw = RawTables(
        columns_frame(snapshot.read_table(*runs), RAW_RUNS),
        columns_frame(
            snapshot.read_table(
                *tags, key_column=tag_key, exact=list(RUN_TAGS), prefixes=[CHOICE_TAG_PREFIX]
            ),
            RAW_TAGS,
        ),
        columns_frame(snapshot.read_table(*latest), RAW_LATEST),
    )
    snapshot.check()
    return raw


def table_layout(
    db: sqlite3.Connection, table: str, columns: list[str], *, defaults_ok: bool = False
) -> tuple[int, list[int]] | None:
    """The table's root page and the record position of each column; None
    unless every column is stored plainly in an ordinary rowid table. With
    `defaults_ok`, a column with a default is taken too: the caller puts the
    default where a record ends before it (read as None)."""
    row = db.execute(
        "SELECT rootpage, sql FROM sqlite_schema WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    if row is None or "WITHOUT ROWID" in row[1].upper():
        return None
    info = db.execute(f"PRAGMA table_xinfo({table})").fetchall()
    if any(hidden for *_, hidden in info):
        return None  # generated columns: not every column is in the record
    positions = {name: i for i, (_, name, *_) in enumerate(info)}
    primary_key = [name for _, name, _, _, _, key, _ in info if key]
    for name in columns:
        if name not in positions:
            return None
        _, _, kind, _, default, _, _ = info[positions[name]]
        rowid_alias = primary_key == [name] and str(kind).upper() == "INTEGER"
        # A column added with a default is missing from older records.
        if rowid_alias or (default is not None and not defaults_ok):
            return None
    return int(row[0]), [positions[name] for name in columns]


def columns_frame(columns: list[list[Any]], schema: dict[str, Any]) -> pl.DataFrame:
    """A frame from columns of SQLite values. strict=False applies each
    column's affinity: SQLite stores a whole REAL as an int."""
    return pl.DataFrame(
        [
            pl.Series(name, column, dtype=dtype, strict=False)
            for (name, dtype), column in zip(schema.items(), columns, strict=True)
        ]
    )


def read_sql(db: sqlite3.Connection) -> RawTables:
    """The same tables through SQL: slower (one Python object per cell)."""
    runs = db.execute(f"SELECT {', '.join(RAW_RUNS)} FROM runs")
    tags = db.execute(CONFIG_AND_CHOICE_TAGS_QUERY, (*RUN_TAGS, *TAG_RANGE))
    latest = db.execute(LATEST_METRICS_QUERY)
    return RawTables(frame(runs, RAW_RUNS), frame(tags, RAW_TAGS), frame(latest, RAW_LATEST))


def assemble(raw: RawTables, names: dict[int, str], statuses: Sequence[str] | None) -> pl.DataFrame:
    """One row per selected run: RUN_SCHEMA, then a `choice.<group>` column
    per choice tag and a `metrics.<name>` column per metric, sorted by name."""
    runs = raw.runs.filter(
        pl.col("lifecycle_stage") == "active",
        pl.col("experiment_id").is_in(list(names)),
        pl.col("status").is_in(list(statuses)) if statuses is not None else pl.lit(True),
    ).select(
        pl.col("run_uuid").alias("run_id"),
        pl.col("experiment_id").replace_strict(names, return_dtype=pl.String).alias("experiment"),
        "status",
        "start_time",
        "end_time",
        "artifact_uri",
    )
    tags = raw.tags.rename({"run_uuid": "run_id"})
    choices = tags.filter(pl.col("key").str.starts_with(CHOICE_TAG_PREFIX)).with_columns(
        pl.col("key").str.strip_prefix(CHOICE_TAG_PREFIX)
    )
    latest = raw.latest.select(pl.col("run_uuid").alias("run_id"), "key", value=STORED_VALUE)
    result = runs
    for tag, column in zip(RUN_TAGS, ("config", "value", "stopped"), strict=True):
        value = tags.filter(pl.col("key") == tag).select("run_id", pl.col("value").alias(column))
        result = result.join(value, on="run_id", how="left")
    # Keys only runs outside the selection have give all-null columns,
    # which `frame.build` leaves out.
    for long, prefix in ((choices, CHOICE_PREFIX), (latest, METRIC_PREFIX)):
        result = result.join(pivot(long, prefix), on="run_id", how="left")
    return result


def pivot(long: pl.DataFrame, prefix: str) -> pl.DataFrame:
    """A wide frame, `run_id` and one column per key (named prefix + key)."""
    if long.is_empty():
        return long.select("run_id")
    wide = long.pivot(on="key", index="run_id", values="value", aggregate_function="first")
    keys = sorted(c for c in wide.columns if c != "run_id")
    return wide.select("run_id", *[pl.col(k).alias(prefix + k) for k in keys])


# MLflow stores a NaN metric as 0 with `is_nan` set: the value it stands for.
STORED_VALUE = pl.when(pl.col("is_nan") == 1).then(float("nan")).otherwise(pl.col("value"))


def with_nan(metrics: pl.DataFrame) -> pl.DataFrame:
    return metrics.with_columns(STORED_VALUE.alias("value")).drop("is_nan")


class ClientStore:
    """Any other tracking URI (an MLflow tracking server): MLflow's client,
    page by page, into the same tables."""

    def __init__(self, uri: str) -> None:
        from hydraflow.remote import CLI_SECONDS, Unreachable, check_reachable

        self.uri = uri
        self.home: Path | None = None
        try:
            check_reachable(uri, CLI_SECONDS)
        except (Unreachable, ImportError) as error:
            raise StoreError(uri, error) from None

    def client(self) -> MlflowClient:
        from mlflow import MlflowClient

        return MlflowClient(self.uri)

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """MLflow's refusals (an unknown or retired kind of store, a server
        that does not answer, a database driver not installed, a database
        user without the rights to MLflow's tables) become one clear
        StoreError, without the password a URI may hold."""
        from mlflow.exceptions import MlflowException
        from sqlalchemy.exc import DBAPIError

        try:
            yield
        except (MlflowException, ImportError, DBAPIError) as error:
            raise StoreError(self.uri, error) from None

    def read(self, experiments: Sequence[str] | None, statuses: Sequence[str] | None) -> Tables:
        with self.errors():
            return self.read_runs(experiments, statuses)

    def read_runs(
        self, experiments: Sequence[str] | None, statuses: Sequence[str] | None
    ) -> Tables:
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
                *[r.data.tags.get(tag) for tag in RUN_TAGS],
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

    def experiments(self) -> list[str]:
        with self.errors():
            client = self.client()
            names = self.experiment_names(client, None)
            return sorted(
                name
                for i, name in names.items()
                if name != DEFAULT_EXPERIMENT or client.search_runs([i], max_results=1)
            )

    def experiment_locations(self) -> list[tuple[str, str]]:
        with self.errors():
            client = self.client()
            found: list[tuple[str, str]] = []
            token = None
            while True:
                page = client.search_experiments(max_results=1000, page_token=token)
                found += [(e.name, e.artifact_location) for e in page]
                token = page.token
                if not token:
                    return found

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
        with self.errors():
            return self.read_history(run_ids, metrics)

    def read_history(self, run_ids: Sequence[str], metrics: Sequence[str]) -> pl.DataFrame:
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
