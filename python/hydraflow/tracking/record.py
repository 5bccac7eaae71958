"""What every run records: the config as params, Hydra's `.hydra/` files and
the job's log as artifacts."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydraflow.mlflow_schema import (
    MAX_KEY_LENGTH,
    MAX_PARAM_LENGTH,
    PARAMS_PER_BATCH,
    flatten,
)
from hydraflow.store import retry_busy

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from hydraflow.tracking.secrets import Secrets


def log_params(
    client: MlflowClient, run_id: str, config: Mapping[str, Any], *, resumed: bool
) -> None:
    """Logs the flattened config, cut to MLflow's limits, in as few calls as
    MLflow allows. A resumed run keeps the params it has: MLflow refuses to
    change a logged value."""
    from mlflow.entities import Param

    logged = retry_busy(lambda: client.get_run(run_id)).data.params if resumed else {}
    params = [
        Param(key[:MAX_KEY_LENGTH], param_text(value)[:MAX_PARAM_LENGTH])
        for key, value in flatten(config, empty_is_value=True)
        if key[:MAX_KEY_LENGTH] not in logged
    ]
    for start in range(0, len(params), PARAMS_PER_BATCH):
        log_batch(client, run_id, params[start : start + PARAMS_PER_BATCH])


def param_text(value: Any) -> str:
    return "None" if value is None else str(value)


def log_batch(client: MlflowClient, run_id: str, params: list[Any]) -> None:
    retry_busy(lambda: client.log_batch(run_id, params=params))


def log_hydra_files(
    client: MlflowClient, run_id: str, hydra_dir: Path, secrets: Secrets | None = None
) -> None:
    """Hydra's `.hydra/` files as artifacts; with secrets, redacted copies."""
    from hydraflow.tracking.secrets import redact_hydra_files

    if not hydra_dir.is_dir():
        return
    if not secrets:
        retry_busy(lambda: client.log_artifacts(run_id, str(hydra_dir), ".hydra"))
        return
    with tempfile.TemporaryDirectory() as folder:
        redacted = Path(folder) / ".hydra"
        redact_hydra_files(hydra_dir, redacted, secrets)
        retry_busy(lambda: client.log_artifacts(run_id, str(redacted), ".hydra"))


def append_log(
    client: MlflowClient,
    run_id: str,
    log_file: Path,
    *,
    resumed: bool,
    secrets: Secrets | None = None,
) -> None:
    """Appends this job's log, secrets scrubbed, to the run's log artifact of
    the same name, so a resumed run keeps the logs of every attempt."""
    if not log_file.is_file():
        return
    if not resumed and not secrets:
        retry_busy(lambda: client.log_artifact(run_id, str(log_file)))
        return
    text = log_file.read_text(encoding="utf-8", errors="replace")
    if secrets:
        text = secrets.scrub(text)
    with tempfile.TemporaryDirectory() as folder:
        earlier = previous_artifact(client, run_id, log_file.name, Path(folder)) if resumed else ""
        combined = Path(folder) / "combined" / log_file.name
        combined.parent.mkdir()
        combined.write_text(earlier + text, encoding="utf-8")
        retry_busy(lambda: client.log_artifact(run_id, str(combined)))


def previous_artifact(client: MlflowClient, run_id: str, name: str, folder: Path) -> str:
    names = {item.path for item in retry_busy(lambda: client.list_artifacts(run_id))}
    if name not in names:
        return ""
    local = client.download_artifacts(run_id, name, str(folder))
    return Path(local).read_text(encoding="utf-8", errors="replace")
