"""Run identity: the same configuration is the same MLflow run.

A digest of the resolved config (or of the sorted task overrides) is stored
as a run tag (see `hydraflow.mlflow_schema`) and looked up with an MLflow
search on that tag, so finding a run never means reading other runs' artifacts.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from hydraflow.mlflow_schema import DIGEST_TAG, runs_with_digest_in_sqlite
from hydraflow.store import retry_busy, sqlite_path

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run


def config_digest(config_yaml: str) -> str:
    return hashlib.sha256(config_yaml.encode()).hexdigest()


def overrides_digest(overrides: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(overrides)).encode()).hexdigest()


def config_json(config: Mapping[str, Any]) -> str:
    """The recorded config as the tag `hydraflow.config` holds it, keys sorted."""
    return json.dumps(in_key_order(config), separators=(",", ":"), default=str)


def key_order(key: Any) -> tuple[str, Any]:
    """An order of every key a config can hold, mixed ones too (`{1: a, b: c}`):
    by type, then by value (text for keys that have no order)."""
    return type(key).__name__, key if type(key) in (bool, int, float, str) else str(key)


def in_key_order(value: Any) -> Any:
    """Mappings with their keys in `key_order`: the same config is the same
    text whatever order it was written in, where sorting cannot compare its keys."""
    if isinstance(value, dict):
        return {key: in_key_order(value[key]) for key in sorted(value, key=key_order)}
    if isinstance(value, list):
        return [in_key_order(item) for item in value]
    return value


def find_runs(client: MlflowClient, experiment_id: str, digest: str) -> list[Run]:
    """The experiment's newest 100 active runs carrying `digest`, oldest
    first (the newest decides skip or resume). In a SQLite store the lookup
    is one query of the tags' index, and MLflow reads only the runs found
    (usually none)."""
    path = sqlite_path(str(client.tracking_uri))
    found = None if path is None else runs_with_digest_in_sqlite(path, experiment_id, digest)
    if found is not None:
        return [retry_busy(functools.partial(client.get_run, run_id)) for run_id in found]
    newest = retry_busy(
        lambda: client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{DIGEST_TAG}` = '{digest}'",
            max_results=100,
            order_by=["attributes.start_time DESC", "attributes.run_id DESC"],
        )
    )
    return list(reversed(newest))
