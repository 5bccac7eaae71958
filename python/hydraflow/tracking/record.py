"""What every run records: the config as params, Hydra's `.hydra/` files and
the job's log as artifacts."""

from __future__ import annotations

import functools
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

    from hydraflow.tracking.artifacts import Artifacts
    from hydraflow.tracking.secrets import Secrets


@functools.cache
def standard_tags() -> dict[str, str]:
    """The tags `mlflow.start_run` gives a run it creates (`mlflow.user`, the
    source's name and type, git's commit and branch, …), from MLflow's own
    run-context registry. Resolved once a process: they do not change within
    it, and the git lookup costs tens of milliseconds."""
    from mlflow.tracking.context.registry import resolve_tags

    return {str(key): str(value) for key, value in resolve_tags().items()}


def log_params(
    client: MlflowClient, run_id: str, config: Mapping[str, Any], logged: Mapping[str, str]
) -> None:
    """Logs the flattened config, cut to MLflow's limits, in as few calls as
    MLflow allows; a resumed run keeps the params it has (`logged`): MLflow
    refuses to change a logged value. One param per name: where two keys
    make one (a literal `a.b` beside `a: {b: ...}`, long keys cut alike) the
    first is logged (MLflow refuses the batch otherwise); the config tag
    holds both."""
    from mlflow.entities import Param

    params, named = [], set(logged)
    for key, value in flatten(config, empty_is_value=True):
        name = key[:MAX_KEY_LENGTH]
        if name not in named:
            named.add(name)
            params.append(Param(name, param_text(value)[:MAX_PARAM_LENGTH]))
    for start in range(0, len(params), PARAMS_PER_BATCH):
        log_batch(client, run_id, params[start : start + PARAMS_PER_BATCH])


def param_text(value: Any) -> str:
    return "None" if value is None else str(value)


def log_batch(client: MlflowClient, run_id: str, params: list[Any]) -> None:
    retry_busy(lambda: client.log_batch(run_id, params=params))


def log_hydra_files(artifacts: Artifacts, hydra_dir: Path, secrets: Secrets | None = None) -> None:
    """Hydra's `.hydra/` files as artifacts; with secrets, redacted copies."""
    from hydraflow.tracking.secrets import redact_hydra_files

    if not hydra_dir.is_dir():
        return
    if not secrets:
        artifacts.log_dir(hydra_dir, ".hydra")
        return
    with tempfile.TemporaryDirectory() as folder:
        redacted = Path(folder) / ".hydra"
        redact_hydra_files(hydra_dir, redacted, secrets)
        artifacts.log_dir(redacted, ".hydra")


def append_log(
    artifacts: Artifacts, log_file: Path, *, resumed: bool, secrets: Secrets | None = None
) -> None:
    """Appends this job's log, secrets scrubbed, to the run's log artifact of
    the same name, so a resumed run keeps the logs of every attempt."""
    if not log_file.is_file():
        return
    if not resumed and not secrets:
        artifacts.log_file(log_file)
        return
    text = log_file.read_text(encoding="utf-8", errors="replace")
    if secrets:
        text = secrets.scrub(text)
    earlier = artifacts.read(log_file.name) if resumed else ""
    with tempfile.TemporaryDirectory() as folder:
        combined = Path(folder) / log_file.name
        combined.write_text(earlier + text, encoding="utf-8")
        artifacts.log_file(combined)
