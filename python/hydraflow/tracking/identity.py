"""Run identity: the same configuration is the same MLflow run.

A digest of the resolved config (or of the sorted task overrides) is stored
as a run tag and looked up with an MLflow search on that tag, so finding a
run never means reading other runs' artifacts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from hydraflow.store import retry_busy

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

DIGEST_TAG = "hydraflow.digest"
OVERRIDES_TAG = "hydraflow.overrides"
# The resolved config as compact JSON with sorted keys, when it fits in a tag.
CONFIG_TAG = "hydraflow.config"
# One tag per config group: `hydraflow.choice.model` = `vit_l`.
CHOICE_TAG_PREFIX = "hydraflow.choice."


def config_digest(config_yaml: str) -> str:
    return hashlib.sha256(config_yaml.encode()).hexdigest()


def overrides_digest(overrides: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(overrides)).encode()).hexdigest()


def find_run(client: MlflowClient, experiment_id: str, digest: str) -> Run | None:
    """The newest run of the experiment carrying `digest`, if any."""
    runs = retry_busy(
        lambda: client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{DIGEST_TAG}` = '{digest}'",
            max_results=1,
            order_by=["attributes.start_time DESC"],
        )
    )
    return runs[0] if runs else None
