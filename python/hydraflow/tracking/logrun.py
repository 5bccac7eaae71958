"""`log_run`: the published HydraFlow's way to record a run the app started.

An app under plain `@hydra.main` writes

    with mlflow.start_run() as run, hydraflow.log_run(run):
        ...

and its run gets what a run of `@hydraflow.main` gets: the config as params,
the tags `hydraflow.load` and a later job's identity read (digest, overrides,
group choices, config, code), Hydra's `.hydra/` files and the job's log as
artifacts, secrets recorded as `***` or their interpolation text. The run
stays the app's: MLflow's `start_run` ends it (FAILED on an exception, as
MLflow does), except on Ctrl-C, which ends it KILLED as our own runs end.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydraflow import protocol
from hydraflow.errors import HydraflowError, StoreError
from hydraflow.mlflow_schema import ATTEMPT_TAG, HEARTBEAT_TAG, OWNER_TAG
from hydraflow.signals import deferred
from hydraflow.store import retry_busy

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from hydraflow.tracking.lifecycle import JobContext
    from hydraflow.tracking.secrets import Secrets


@contextlib.contextmanager
def log_run(run: Run, *, config: Any = None, secrets: Sequence[str] = ()) -> Iterator[None]:
    """Records `run`, an MLflow run the app started itself, as
    `@hydraflow.main` records its runs; the block runs as its job.

    Inside a Hydra job the config is the job's (Hydra's `.hydra/config.yaml`)
    unless `config` is given; outside one, `config` is needed and no files
    are recorded. Keys matching `secrets`, and values read from the
    environment, are recorded as their interpolation text or `***`. An
    exception in the block goes to the job's log, with its traceback, and on.
    """
    from mlflow import MlflowClient

    from hydraflow.tracking.artifacts import artifacts_of
    from hydraflow.tracking.inputs import config_search_dirs, write_manifest
    from hydraflow.tracking.lifecycle import (
        CURRENT_RUNS,
        end_run,
        heartbeat,
        outcome,
        the_current,
        upload_log,
    )

    run_id = checked_run_id(run)
    if any(job.info.run_id == run_id for job in CURRENT_RUNS):
        yield  # a run of `@hydraflow.main` or `start_run`: recorded already
        return
    context, recorded, found = job_record(config, secrets)
    client = MlflowClient()
    try:
        record(client, run_id, context, recorded, found)
    except Exception as error:
        raise StoreError(str(client.tracking_uri), error) from error
    # Under `hydraflow run`, the inputs let the CLI prove the command finished
    # next time: the app itself never skips a config (MLflow's `start_run`
    # made the run), so without them every run of the job made its runs again.
    write_manifest(store_of(client), config_search_dirs())
    artifacts = artifacts_of(client, run)
    protocol.started(context.overrides, run_id, resumed=False)
    status = "FAILED"
    try:
        with heartbeat(client, run_id), the_current(run):
            yield
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except BaseException as error:
        failed(run_id, error)
        raise
    finally:
        with deferred():  # a stopping signal waits until the log and status are written
            upload_log(artifacts, run_id, context.log_file, resumed=False, secrets=found)
            if status == "KILLED":
                end_run(client, run_id, status)  # MLflow's own `start_run` would say FAILED
            protocol.ended(context.overrides, outcome(status, run_id, resumed=False), run_id)


def store_of(client: MlflowClient) -> str:
    """The client's store as the CLI will read it: a SQLite path made
    absolute, a password masked."""
    from hydraflow.remote import masked
    from hydraflow.store import sqlite_path, sqlite_uri

    uri = str(client.tracking_uri)
    path = sqlite_path(uri)
    if path is not None and not path.is_absolute():
        uri = sqlite_uri(path.absolute())
    return masked(uri)


def checked_run_id(run: Any) -> str:
    from mlflow.entities import Run

    if not isinstance(run, Run):
        raise TypeError(
            "log_run: expected the MLflow run of `with mlflow.start_run() as run`, "
            f"got {type(run).__name__}"
        )
    return str(run.info.run_id)


def job_record(
    config: Any, marked: Sequence[str]
) -> tuple[JobContext, tuple[str, dict[str, Any]], Secrets]:
    """The job's context (overrides without secrets), its config as recorded
    (the YAML digested, the plain dict), and its secrets."""
    from hydraflow.tracking.configs import as_omegaconf, to_record
    from hydraflow.tracking.lifecycle import JobContext
    from hydraflow.tracking.secrets import resolve_watched

    context = JobContext.current()
    if config is None:
        config = saved_config(context.hydra_dir)
    found, resolution = resolve_watched(as_omegaconf(config), marked)
    return context.redacted(found), to_record(config, found, resolution), found


def saved_config(hydra_dir: Path | None) -> Any:
    """The job's config as Hydra saved it (unresolved: interpolations, and so
    the values read from the environment, are still visible as such)."""
    from omegaconf import OmegaConf

    if hydra_dir is None:
        raise HydraflowError(
            "log_run: called outside a Hydra job; pass the config: log_run(run, config=cfg)"
        )
    saved = hydra_dir / "config.yaml"
    if not saved.is_file():
        raise HydraflowError(
            f"log_run: Hydra saved no config at {saved} (hydra.output_subdir is null?); "
            "pass the config: log_run(run, config=cfg)"
        )
    return OmegaConf.load(saved)


def record(
    client: MlflowClient,
    run_id: str,
    context: JobContext,
    recorded: tuple[str, dict[str, Any]],
    secrets: Secrets,
) -> None:
    """The params, tags and Hydra files of a run of `@hydraflow.main`."""
    from mlflow.entities import RunTag

    from hydraflow.tracking.artifacts import artifacts_of
    from hydraflow.tracking.code import current_code
    from hydraflow.tracking.identity import config_digest
    from hydraflow.tracking.lifecycle import run_tags
    from hydraflow.tracking.owner import Owner
    from hydraflow.tracking.record import log_hydra_files, log_params

    config_yaml, container = recorded
    tags = run_tags(config_digest(config_yaml), context, container)
    tags |= current_code(context.launch_dir).tags()
    tags |= {OWNER_TAG: Owner.me().to_tag(), HEARTBEAT_TAG: str(time.time()), ATTEMPT_TAG: "1"}
    run = retry_busy(lambda: client.get_run(run_id))
    batch = [RunTag(key, value) for key, value in tags.items()]
    retry_busy(lambda: client.log_batch(run_id, tags=batch))
    log_params(client, run_id, container, run.data.params)
    if context.hydra_dir:
        log_hydra_files(artifacts_of(client, run), context.hydra_dir, secrets)


def failed(run_id: str, error: BaseException) -> None:
    from hydraflow.remote import mask_error
    from hydraflow.tracking.lifecycle import log_to_files

    mask_error(error)  # MLflow's errors name the URL, password and all
    log_to_files("run %s failed", run_id)
