"""The bookkeeping that turns a job into an MLflow run: find the run this
config already has, start or resume it, record config, overrides, Hydra's
files and the log, and end it with the right status."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydraflow.store import open_experiment, retry_busy, tracking_uri
from hydraflow.tracking.identity import (
    CHOICE_TAG_PREFIX,
    CONFIG_TAG,
    DIGEST_TAG,
    OVERRIDES_TAG,
    config_digest,
    find_run,
    overrides_digest,
)
from hydraflow.tracking.record import MAX_TAG_LENGTH, append_log, log_hydra_files, log_params

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

log = logging.getLogger("hydraflow")

UNFINISHED = ("RUNNING", "FAILED", "KILLED", "SCHEDULED")


@dataclass(frozen=True)
class JobContext:
    """Where a job comes from: its name, directories and overrides."""

    experiment: str
    launch_dir: Path
    output_dir: Path | None = None
    overrides: list[str] = field(default_factory=list)
    # Hydra names the job's log after the job, whatever the experiment is called.
    log_file: Path | None = None
    # The config groups' options Hydra chose (`model: vit_l`), Hydra's own groups left out.
    choices: dict[str, str] = field(default_factory=dict)

    @property
    def hydra_dir(self) -> Path | None:
        return self.output_dir / ".hydra" if self.output_dir else None

    @classmethod
    def current(cls, experiment: str | None = None) -> JobContext:
        """From Hydra's runtime config inside a Hydra job; else from the script."""
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            hydra = HydraConfig.get()
            output_dir = Path(hydra.runtime.output_dir)
            return cls(
                experiment=experiment or hydra.job.name,
                launch_dir=Path(hydra.runtime.cwd),
                output_dir=output_dir,
                overrides=list(hydra.overrides.task),
                log_file=output_dir / f"{hydra.job.name}.log",
                choices=user_choices(hydra.runtime.choices),
            )
        script = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "hydraflow"
        return cls(experiment=experiment or script, launch_dir=Path.cwd())


def user_choices(choices: Mapping[str, Any]) -> dict[str, str]:
    return {
        str(group): str(option)
        for group, option in choices.items()
        if option is not None and not str(group).startswith("hydra/")
    }


@dataclass(frozen=True)
class Options:
    tracking_uri: str | None = None
    force_new_run: bool = False
    match_overrides: bool = False
    rerun_finished: bool = False


@dataclass(frozen=True)
class Lookup:
    """The store, the experiment, this config's digest and its existing run."""

    client: MlflowClient
    experiment_id: str
    digest: str
    existing: Run | None

    def should_skip(self, options: Options) -> bool:
        if self.existing is None or options.force_new_run or options.rerun_finished:
            return False
        status: str = self.existing.info.status
        return status == "FINISHED"

    def run_to_resume(self, options: Options) -> str | None:
        if self.existing is None or options.force_new_run:
            return None
        run_id: str = self.existing.info.run_id
        if self.existing.info.status in UNFINISHED or options.rerun_finished:
            return run_id
        return None


def look_up(context: JobContext, config_yaml: str, options: Options) -> Lookup:
    uri = tracking_uri(options.tracking_uri, context.launch_dir)
    client, experiment_id = open_experiment(uri, context.experiment, context.launch_dir)
    if options.match_overrides:
        digest = overrides_digest(context.overrides)
    else:
        digest = config_digest(config_yaml)
    existing = None if options.force_new_run else find_run(client, experiment_id, digest)
    return Lookup(client, experiment_id, digest, existing)


@contextlib.contextmanager
def tracked_run(
    lookup: Lookup, context: JobContext, config: Mapping[str, Any], options: Options
) -> Iterator[Run]:
    """Starts (or resumes) the run, records it, and ends it with its status:
    FINISHED, FAILED on an exception, KILLED on Ctrl-C."""
    import mlflow

    resume = lookup.run_to_resume(options)
    tags = run_tags(lookup.digest, context, config)
    run = retry_busy(
        lambda: mlflow.start_run(run_id=resume, experiment_id=lookup.experiment_id, tags=tags)
    )
    run_id = run.info.run_id
    if resume:
        log.info("resuming run %s", run_id)
    status = "FAILED"
    try:
        log_params(lookup.client, run_id, config, resumed=resume is not None)
        if context.hydra_dir:
            log_hydra_files(lookup.client, run_id, context.hydra_dir)
        yield run
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if context.log_file:
            flush_log_handlers()
            append_log(lookup.client, run_id, context.log_file, resumed=resume is not None)
        retry_busy(lambda: mlflow.end_run(status))


def run_tags(digest: str, context: JobContext, config: Mapping[str, Any]) -> dict[str, str]:
    """The digest, the overrides, the group choices and, when it fits, the
    resolved config as JSON: what identity and `hydraflow.load` read."""
    tags = {DIGEST_TAG: digest, OVERRIDES_TAG: " ".join(context.overrides)[:MAX_TAG_LENGTH]}
    tags.update(
        {f"{CHOICE_TAG_PREFIX}{group}": option for group, option in context.choices.items()}
    )
    config_json = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    if len(config_json) <= MAX_TAG_LENGTH:
        tags[CONFIG_TAG] = config_json
    return tags


def flush_log_handlers() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()


@contextlib.contextmanager
def start_run(
    config: Any,
    *,
    experiment_name: str | None = None,
    tracking_uri: str | None = None,
    force_new_run: bool = False,
    match_overrides: bool = False,
) -> Iterator[Run]:
    """The decorator's bookkeeping as a context manager, for code without it.

    Inside a Hydra job the experiment, directories and overrides come from
    Hydra; elsewhere the experiment is `experiment_name` or the script's name.
    A run with the same config is resumed (whatever its status) unless
    `force_new_run`.
    """
    from hydraflow.tracking.configs import to_yaml_and_container

    context = JobContext.current(experiment_name)
    options = Options(tracking_uri, force_new_run, match_overrides, rerun_finished=True)
    config_yaml, container = to_yaml_and_container(config)
    lookup = look_up(context, config_yaml, options)
    with tracked_run(lookup, context, container, options) as run:
        yield run
