"""MLflow as hydraflow uses it, in one place: the tags hydraflow writes on
every run, MLflow's limits, the SQL that reads MLflow's tables in a SQLite
store directly, and the one answer to "is this run finished?".

Only the standard library is used: the runner and a skipping app read a
store without importing MLflow.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydraflow.store import connect_read_only

# The tags hydraflow writes on every run.
# A digest of the resolved config (or of the sorted overrides): the run's identity.
DIGEST_TAG = "hydraflow.digest"
OVERRIDES_TAG = "hydraflow.overrides"
# The resolved config as compact JSON with sorted keys, when it fits in a tag.
CONFIG_TAG = "hydraflow.config"
# 1 for a new run, counted up each time the run is resumed.
ATTEMPT_TAG = "hydraflow.attempt"
# One tag per config group: `hydraflow.choice.model` = `vit_l`.
CHOICE_TAG_PREFIX = "hydraflow.choice."
# Who runs the run (see `hydraflow.tracking.owner`), and its last sign of life.
OWNER_TAG = "hydraflow.owner"
# MLflow's UI: an experiment tag holding a runs-table view (JSON), which the
# URL parameter `viewStateShareKey=<key>` applies (`hydraflow ui` writes one).
SHARED_VIEW_TAG_PREFIX = "mlflow.sharedViewState."
HEARTBEAT_TAG = "hydraflow.heartbeat"
# The app's return value as JSON (a float's repr, a tuple as an array), so a
# replayed run returns exactly what the sweeper saw the first time.
VALUE_TAG = "hydraflow.value"
# The step at which `hydraflow.report` stopped the run early.
STOPPED_TAG = "hydraflow.stopped"
# What code made the run (`hydraflow.tracking.code`): a digest of the script
# and project modules, and, when they fit, each file's hash as JSON.
CODE_TAG = "hydraflow.code"
CODE_FILES_TAG = "hydraflow.code.files"
# A run another tool made (the published HydraFlow, MLflow and Hydra by hand),
# examined once (`hydraflow.tracking.adoption`): what its digest was taken of,
# `.hydra/config.yaml` or `.hydra/overrides.yaml`, or `none` when it has
# neither and so is never any config's run.
ADOPTED_TAG = "hydraflow.adopted"
# MLflow's tag on a nested run: a part of its parent, never a config's run.
PARENT_RUN_TAG = "mlflow.parentRunId"

# MLflow's limits (mlflow.utils.validation), restated to avoid importing it.
MAX_KEY_LENGTH = 250
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 8000
MAX_RUN_NAME = 250
PARAMS_PER_BATCH = 100

# MLflow's run status of a run that ended well, and the stage of what is not deleted.
FINISHED = "FINISHED"
ACTIVE = "active"

# A run counts as finished when it is FINISHED and neither it nor its experiment is deleted.
FINISHED_RUN_SQL = (
    f"runs.status = '{FINISHED}' AND runs.lifecycle_stage = '{ACTIVE}' "
    f"AND experiments.lifecycle_stage = '{ACTIVE}'"
)

# The SQL `hydraflow.load` reads a SQLite store with (when the page reader cannot).
ACTIVE_EXPERIMENTS_QUERY = (
    f"SELECT experiment_id, name FROM experiments WHERE lifecycle_stage = '{ACTIVE}'"
)
# The active experiments' names and artifact locations in the order of
# MLflow's `search_experiments` (newest first), which the published tool lists.
EXPERIMENT_LOCATIONS_QUERY = (
    "SELECT name, artifact_location FROM experiments "
    f"WHERE lifecycle_stage = '{ACTIVE}' ORDER BY creation_time DESC, experiment_id ASC"
)
PARAMS_QUERY = "SELECT run_uuid, key, value FROM params WHERE run_uuid IN ({marks})"
# The config tag and the choice tags: a key range (`.` + 1 is `/`) uses the
# tags' primary key index.
TAG_RANGE = (CHOICE_TAG_PREFIX, CHOICE_TAG_PREFIX[:-1] + "/")
# The tags `load` reads whole, each into its column of the runs.
RUN_TAGS = (CONFIG_TAG, VALUE_TAG, STOPPED_TAG)
CONFIG_AND_CHOICE_TAGS_QUERY = (
    "SELECT run_uuid, key, value FROM tags WHERE key IN (?, ?, ?) OR (key > ? AND key < ?)"
)
LATEST_METRICS_QUERY = "SELECT run_uuid, key, value, is_nan FROM latest_metrics"
HISTORY_QUERY = (
    "SELECT run_uuid, key, step, timestamp, value, is_nan "
    "FROM metrics WHERE run_uuid IN ({marks}){keys}"
)


def is_finished(status: str) -> bool:
    """Whether an active run with this MLflow status is finished."""
    return status == FINISHED


@dataclass(frozen=True)
class FinishedRun:
    run_id: str
    overrides: str
    code: str | None = None
    code_files: str | None = None
    value: str | None = None  # VALUE_TAG


# A config's attempts newest first: MLflow's search order (`find_runs`) reversed.
NEWEST_FIRST = "ORDER BY runs.start_time DESC, runs.run_uuid DESC"


def find_finished_in_sqlite(path: Path, experiment: str, digest: str) -> FinishedRun | None:
    """The run of `experiment` with `digest` when its newest attempt is
    finished (see `hydraflow.tracking.lifecycle.decide`), read from a SQLite
    store with the standard library alone, so a skip costs no MLflow import.
    None when there is none, or when the store cannot be read this way."""
    query = f"""
        SELECT runs.run_uuid, COALESCE(overrides.value, ''), code.value, files.value,
               returned.value
        FROM (
            SELECT runs.run_uuid, runs.status, runs.lifecycle_stage, runs.experiment_id
            FROM runs
            JOIN experiments ON experiments.experiment_id = runs.experiment_id
            JOIN tags AS digest ON digest.run_uuid = runs.run_uuid AND digest.key = ?
            WHERE experiments.name = ? AND runs.lifecycle_stage = '{ACTIVE}'
              AND digest.value = ?
            {NEWEST_FIRST} LIMIT 1
        ) AS runs
        JOIN experiments ON experiments.experiment_id = runs.experiment_id
        LEFT JOIN tags AS overrides ON overrides.run_uuid = runs.run_uuid AND overrides.key = ?
        LEFT JOIN tags AS code ON code.run_uuid = runs.run_uuid AND code.key = ?
        LEFT JOIN tags AS files ON files.run_uuid = runs.run_uuid AND files.key = ?
        LEFT JOIN tags AS returned ON returned.run_uuid = runs.run_uuid AND returned.key = ?
        WHERE {FINISHED_RUN_SQL}
    """
    keys = (OVERRIDES_TAG, CODE_TAG, CODE_FILES_TAG, VALUE_TAG)
    try:
        # fetchall: the statement ends, no read lock outlives the query.
        cursor = kept_connection(path).execute(query, (DIGEST_TAG, experiment, digest, *keys))
        rows = cursor.fetchall()
    except (sqlite3.Error, OSError):
        forget_connection(path)
        return None
    return FinishedRun(*rows[0]) if rows else None


# A read-only connection per store file and thread, kept for the process: a
# new one reads MLflow's schema (about a millisecond) before its first query,
# and a replayed study asks once per trial. Each query still sees the latest
# commit; a file replaced since (another inode) gets a new connection.
_kept: dict[tuple[Path, int], tuple[tuple[int, int], sqlite3.Connection]] = {}


def kept_connection(path: Path) -> sqlite3.Connection:
    stat = path.stat()
    identity = (stat.st_dev, stat.st_ino)
    key = (path, threading.get_ident())
    known = _kept.get(key)
    if known is not None and known[0] == identity:
        return known[1]
    forget_connection(path)
    connection = connect_read_only(path)
    _kept[key] = (identity, connection)
    return connection


def forget_connection(path: Path) -> None:
    known = _kept.pop((path, threading.get_ident()), None)
    if known is not None:
        known[1].close()


def runs_with_digest_in_sqlite(path: Path, experiment_id: str, digest: str) -> list[str] | None:
    """The ids of the experiment's newest 100 active runs with `digest`,
    oldest first (as `identity.find_runs` orders them: the newest decides);
    None when the store cannot be read this way."""
    query = f"""
        SELECT runs.run_uuid FROM runs
        JOIN tags ON tags.run_uuid = runs.run_uuid AND tags.key = ?
        WHERE runs.experiment_id = ? AND runs.lifecycle_stage = '{ACTIVE}' AND tags.value = ?
        {NEWEST_FIRST} LIMIT 100
    """
    try:
        with contextlib.closing(connect_read_only(path)) as connection:
            rows = connection.execute(query, (DIGEST_TAG, int(experiment_id), digest)).fetchall()
    except (sqlite3.Error, ValueError):
        return None
    return [str(row[0]) for row in reversed(rows)]


@dataclass(frozen=True)
class ForeignRun:
    """A run without hydraflow's digest, not examined yet (see ADOPTED_TAG)."""

    run_id: str
    status: str
    artifact_uri: str


def foreign_runs_in_sqlite(path: Path, experiment: str) -> list[ForeignRun]:
    """The active runs of `experiment` that carry neither hydraflow's digest
    nor the mark of an earlier examination, nested runs left out: one query
    on the tags' index."""
    query = f"""
        SELECT runs.run_uuid, runs.status, COALESCE(runs.artifact_uri, '')
        FROM runs JOIN experiments ON experiments.experiment_id = runs.experiment_id
        WHERE experiments.name = ? AND runs.lifecycle_stage = '{ACTIVE}'
          AND NOT EXISTS (SELECT 1 FROM tags WHERE tags.run_uuid = runs.run_uuid
                          AND tags.key IN (?, ?, ?))
    """
    keys = (DIGEST_TAG, ADOPTED_TAG, PARENT_RUN_TAG)
    try:
        with contextlib.closing(connect_read_only(path)) as connection:
            rows = connection.execute(query, (experiment, *keys)).fetchall()
    except sqlite3.Error:
        return []
    return [ForeignRun(*row) for row in rows]


def write_tags_in_sqlite(path: Path, tags: list[tuple[str, str, str]]) -> None:
    """Sets tags `(run_id, key, value)` in one transaction, straight into
    MLflow's `tags` table (MLflow's client would take a call per run)."""
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as connection, connection:
        connection.executemany(
            "INSERT OR REPLACE INTO tags (run_uuid, key, value) VALUES (?, ?, ?)", tags
        )


def all_finished_in_sqlite(path: Path, run_ids: list[str]) -> bool:
    """Whether every run is finished in the SQLite store at `path` and still
    its config's newest attempt: a later `--rerun` supersedes it, finished
    or not."""
    if not run_ids:
        return False
    marks = ",".join("?" * len(run_ids))
    recorded = f"""
        SELECT runs.run_uuid, runs.experiment_id, digest.value, runs.start_time FROM runs
        JOIN experiments ON experiments.experiment_id = runs.experiment_id
        JOIN tags AS digest ON digest.run_uuid = runs.run_uuid AND digest.key = ?
        WHERE runs.run_uuid IN ({marks}) AND {FINISHED_RUN_SQL}
    """
    try:
        with contextlib.closing(connect_read_only(path)) as connection:
            finished = connection.execute(recorded, (DIGEST_TAG, *run_ids)).fetchall()
            if len(finished) != len(set(run_ids)):
                return False
            newest = newest_attempts(connection, finished)
    except sqlite3.Error:
        return False
    return all(newest.get((experiment, digest)) == run for run, experiment, digest, _ in finished)


def newest_attempts(
    connection: sqlite3.Connection, runs: list[tuple[str, int, str, int]]
) -> dict[tuple[int, str], str]:
    """The newest active run of each (experiment, digest) of `runs` (id,
    experiment, digest, start time). Only the runs started since the oldest
    of them can be newer: the runs table is read in one pass (it has no index
    but its key), and only those runs' digests are looked up, by the tags' key."""
    experiments = sorted({experiment for _, experiment, _, _ in runs})
    digests = sorted({digest for _, _, digest, _ in runs})
    query = f"""
        SELECT later.experiment_id, digest.value, later.run_uuid
        FROM runs AS later
        CROSS JOIN tags AS digest ON digest.key = ? AND digest.run_uuid = later.run_uuid
        WHERE later.experiment_id IN ({",".join("?" * len(experiments))})
          AND later.start_time >= ? AND later.lifecycle_stage = '{ACTIVE}'
          AND digest.value IN ({",".join("?" * len(digests))})
        ORDER BY later.start_time ASC, later.run_uuid ASC
    """
    oldest = min(start for _, _, _, start in runs)
    rows = connection.execute(query, (DIGEST_TAG, *experiments, oldest, *digests)).fetchall()
    return {(experiment, digest): run for experiment, digest, run in rows}  # the last wins


def flatten(
    config: Mapping[str, Any], prefix: str = "", *, empty_is_value: bool = False
) -> Iterator[tuple[str, Any]]:
    """The config's leaves under dotted keys (the params' names); lists stay
    whole. An empty mapping is a value only with `empty_is_value`."""
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and (value or not empty_is_value):
            yield from flatten(value, f"{name}.", empty_is_value=empty_is_value)
        else:
            yield name, value
