"""Run identity: the same configuration is the same MLflow run.

A digest of the resolved config (or of the sorted task overrides) is stored
as a run tag and looked up with an MLflow search on that tag, so finding a
run never means reading other runs' artifacts.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hydraflow.store import connect_read_only, retry_busy

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

DIGEST_TAG = "hydraflow.digest"
OVERRIDES_TAG = "hydraflow.overrides"
# The resolved config as compact JSON with sorted keys, when it fits in a tag.
CONFIG_TAG = "hydraflow.config"
# 1 for a new run, counted up each time the run is resumed.
ATTEMPT_TAG = "hydraflow.attempt"
# One tag per config group: `hydraflow.choice.model` = `vit_l`.
CHOICE_TAG_PREFIX = "hydraflow.choice."
# The app's return value as JSON (a float's repr, a tuple as an array), so a
# replayed run returns exactly what the sweeper saw the first time.
VALUE_TAG = "hydraflow.value"
# The step at which `hydraflow.report` stopped the run early.
STOPPED_TAG = "hydraflow.stopped"


def config_digest(config_yaml: str) -> str:
    return hashlib.sha256(config_yaml.encode()).hexdigest()


def overrides_digest(overrides: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(overrides)).encode()).hexdigest()


def find_runs(client: MlflowClient, experiment_id: str, digest: str) -> list[Run]:
    """The experiment's active runs carrying `digest`, oldest first."""
    return retry_busy(
        lambda: client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{DIGEST_TAG}` = '{digest}'",
            max_results=100,
            order_by=["attributes.start_time ASC", "attributes.run_id ASC"],
        )
    )


@dataclass(frozen=True)
class FinishedRun:
    run_id: str
    overrides: str
    value: str | None = None


def find_finished_in_sqlite(path: Path, experiment: str, digest: str) -> FinishedRun | None:
    """A FINISHED run of `experiment` with `digest`, read from a SQLite store
    with the standard library alone, so a skip costs no MLflow import. None
    when there is none, or when the store cannot be read this way."""
    query = """
        SELECT runs.run_uuid, COALESCE(overrides.value, ''), returned.value
        FROM runs
        JOIN experiments ON experiments.experiment_id = runs.experiment_id
        JOIN tags AS digest ON digest.run_uuid = runs.run_uuid AND digest.key = ?
        LEFT JOIN tags AS overrides ON overrides.run_uuid = runs.run_uuid AND overrides.key = ?
        LEFT JOIN tags AS returned ON returned.run_uuid = runs.run_uuid AND returned.key = ?
        WHERE experiments.name = ? AND experiments.lifecycle_stage = 'active'
          AND runs.lifecycle_stage = 'active' AND runs.status = 'FINISHED' AND digest.value = ?
        ORDER BY runs.start_time DESC LIMIT 1
    """
    try:
        with contextlib.closing(connect_read_only(path)) as connection:
            row = connection.execute(
                query, (DIGEST_TAG, OVERRIDES_TAG, VALUE_TAG, experiment, digest)
            ).fetchone()
    except sqlite3.Error:
        return None
    return FinishedRun(*row) if row else None
