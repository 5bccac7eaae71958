"""What every run records: the config as params, Hydra's `.hydra/` files and
the job's log as artifacts."""

from __future__ import annotations

import functools
import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydraflow.errors import HydraflowError
from hydraflow.mlflow_schema import (
    CONFIG_TAG,
    MAX_KEY_LENGTH,
    MAX_PARAM_LENGTH,
    PARAMS_PER_BATCH,
    flatten,
)
from hydraflow.store import retry_busy

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from hydraflow.tracking.artifacts import Artifacts
    from hydraflow.tracking.secrets import Secrets

log = logging.getLogger("hydraflow")


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

    params, named, refused = [], set(logged), []
    for key, value in flatten(config, empty_is_value=True):
        name = key[:MAX_KEY_LENGTH]
        if not param_name_allowed(name):
            refused.append(key)
        elif name not in named:
            named.add(name)
            params.append(Param(name, param_text(value)[:MAX_PARAM_LENGTH]))
    warn_refused(refused)
    for start in range(0, len(params), PARAMS_PER_BATCH):
        log_batch(client, run_id, params[start : start + PARAMS_PER_BATCH])


def param_name_allowed(name: str) -> bool:
    """Whether MLflow takes `name` as a param's (`lr(init)`, `x@y`, `it's` it
    refuses, and the whole batch with them); its own check decides."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_param_name

    try:
        _validate_param_name(name)  # type: ignore[no-untyped-call]
    except MlflowException:
        return False
    return True


# The keys already said to be left out of params: said once per process.
REFUSED_KEYS_TOLD: set[str] = set()


def warn_refused(keys: list[str]) -> None:
    new = [key for key in keys if key not in REFUSED_KEYS_TOLD]
    if not new:
        return
    REFUSED_KEYS_TOLD.update(new)
    log.warning(
        "config keys left out of the run's params, MLflow refuses them as names "
        "(the tag %s holds them where the config fits in it): %s",
        CONFIG_TAG,
        ", ".join(new),
    )


def param_text(value: Any) -> str:
    return "None" if value is None else str(value)


def log_batch(client: MlflowClient, run_id: str, params: list[Any]) -> None:
    retry_busy(lambda: client.log_batch(run_id, params=params))


def log_hydra_files(artifacts: Artifacts, hydra_dir: Path, secrets: Secrets | None = None) -> None:
    """Hydra's `.hydra/` files as artifacts; with secrets, redacted copies.
    An artifact directory that cannot be written is one line, not a traceback."""
    from hydraflow.tracking.secrets import redact_hydra_files

    if not hydra_dir.is_dir():
        return
    try:
        if not secrets:
            artifacts.log_dir(hydra_dir, ".hydra")
            return
        with tempfile.TemporaryDirectory() as folder:
            redacted = Path(folder) / ".hydra"
            redact_hydra_files(hydra_dir, redacted, secrets)
            artifacts.log_dir(redacted, ".hydra")
    except OSError as error:
        where = getattr(artifacts, "root", None) or error.filename
        reason = error.strerror or str(error)
        raise HydraflowError(
            f"the run's artifacts cannot be written to {where}: {reason}"
        ) from None


# The experiments already warned of, once a process.
_moved_warned: set[str] = set()


def warn_if_moved(store: str, experiment: str, run: Run) -> None:
    """Says once an experiment's file artifact location is outside the
    store's folder while the store's own `mlruns/<id>` is there: the project
    moved, and new runs' artifacts go to the old place (as MLflow's do)."""
    from hydraflow.store import sqlite_path
    from hydraflow.tracking.artifacts import local_artifact_dir

    database = sqlite_path(store)
    root = local_artifact_dir(run)
    experiment_id = str(run.info.experiment_id)
    if database is None or root is None or experiment_id in _moved_warned:
        return
    folder = database.absolute().parent
    own = folder / "mlruns" / experiment_id
    if root.is_relative_to(folder) or not own.is_dir():
        return
    _moved_warned.add(experiment_id)
    log.warning(
        "experiment %r keeps its artifacts in %s, outside the store's folder %s, whose "
        "%s holds its earlier ones: the project was moved? New runs' artifacts go to the "
        "old place, as MLflow's own runs' do",
        experiment,
        root.parent.parent,
        folder,
        own.relative_to(folder),
    )


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
