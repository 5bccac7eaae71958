"""`@hydraflow.main`: every Hydra job of the decorated app becomes an MLflow run."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hydraflow import protocol
from hydraflow.errors import HydraflowError
from hydraflow.mlflow_schema import VALUE_TAG, FinishedRun
from hydraflow.remote import masked
from hydraflow.signals import (
    describe,
    exit_status,
    handle_termination,
    heard,
    signal_name,
    signal_of,
)
from hydraflow.store import as_uri
from hydraflow.tracking.batches import first_job_composed_once
from hydraflow.tracking.compose import SCHEMA_CONFIG_NAME, prepare
from hydraflow.tracking.lifecycle import Claim, JobContext, TrackingOptions, clean_exit
from hydraflow.tracking.values import decode
from hydraflow.tracking.workers import own_events_file, workers_end_first

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from hydraflow.tracking.secrets import Secrets
    from hydraflow.tracking.stopping import MedianStopping

# `app(cfg)` as under Hydra, or `app(run, cfg)`; what it returns reaches
# Hydra's sweeper, as under `@hydra.main`.
App = Callable[..., Any]
DRY_RUN_FLAG = "--dry-run"
RERUN_FLAG = "--rerun"
# "Not given", told apart from an explicit None, as `hydra.main` does: Hydra
# gives these parameters defaults that depend on `version_base`.
UNSPECIFIED: Any = object()

log = logging.getLogger("hydraflow")


def main(
    schema_or_config_path: Any = UNSPECIFIED,
    /,
    config_name: str | None = UNSPECIFIED,
    version_base: str | None = UNSPECIFIED,
    *,
    config_path: str | os.PathLike[str] | None = UNSPECIFIED,
    tracking_uri: str | os.PathLike[str] | None = None,
    chdir: bool = False,
    force_new_run: bool = False,
    match_overrides: bool = False,
    rerun_finished: bool = False,
    dry_run: bool = False,
    update: Callable[[Any], Any] | None = None,
    secrets: Sequence[str] = (),
    stopping: MedianStopping | None = None,
) -> Callable[[App], Callable[..., Any]]:
    """Runs the decorated app through Hydra, one MLflow run per job.

    A drop-in for `@hydra.main(config_path, config_name, version_base)`: the
    same arguments, positions and defaults, and Hydra composes the config
    exactly as it would. An app `app(cfg)` gets the config alone, as under
    Hydra (its run is `hydraflow.current_run()`); `app(run, cfg)` gets the
    run too.

    The first positional argument may instead be the app's schema (a
    dataclass, an instance or a dict): it is the primary config when no YAML
    file `config_name` exists, otherwise it validates the composed YAML, and
    the app gets an instance of the dataclass. With a schema, `config_name`
    defaults to "config" and `version_base` to None (this Hydra's defaults).

    The experiment is Hydra's job name. A job whose config already has a
    FINISHED run is skipped and returns the value recorded on that run (the
    app's return value reaches Hydra's sweeper, as under `@hydra.main`); an
    unfinished run is resumed. `stopping` is the rule `hydraflow.report`
    applies (a jobs file's `stopping:` wins for its job). Values read from
    the environment (`${oc.env:KEY}`) and keys matching a `secrets` pattern
    (`db.password`, `*.token`, `password`) are recorded as their
    interpolation text or `***`, never as their values; the app receives the
    real values.
    """
    node, config_path = schema_and_path(schema_or_config_path, config_path)
    if node is not None:
        config_name = SCHEMA_CONFIG_NAME if config_name in (None, UNSPECIFIED) else config_name
        version_base = None if version_base is UNSPECIFIED else version_base
    hydra_main, path = hydra_decorator(config_path, config_name, version_base)
    name = None if config_name is UNSPECIFIED else config_name
    options = TrackingOptions(
        store_uri(tracking_uri), force_new_run, match_overrides, rerun_finished, tuple(secrets)
    )

    def decorator(app: App) -> Callable[..., Any]:
        @functools.wraps(app)
        def run_with_hydra(cfg_passthrough: DictConfig | None = None) -> Any:
            """As `@hydra.main`'s: a config given (`app(cfg)`) runs the app
            with it, without Hydra's command line; tracked all the same."""
            # Set first: a signal at any moment of the app is one line.
            handle_termination()
            killed: list[str] = []
            with own_events_file():
                try:
                    return run_jobs(app, cfg_passthrough, killed)
                except KeyboardInterrupt as interrupt:
                    killed += pool_runs_killed(options)
                    stopped = interrupted_by(interrupt)
                    sys.stderr.write(f"hydraflow: {stopped}; {what_killed(killed)}\n")
                    sys.exit(exit_status(signal_of(interrupt)))

        return run_with_hydra

    def run_jobs(app: App, cfg_passthrough: DictConfig | None, killed: list[str]) -> Any:
        """Hydra runs each job of the command line (or the config given);
        `killed` gets the run an interrupt ended."""
        show_only = dry_run or take_flag(DRY_RUN_FLAG)
        # Asked on the app's command line or by `hydraflow run --rerun`.
        rerun = take_flag(RERUN_FLAG) or protocol.rerun_requested()
        job_options = dataclasses.replace(options, force_new_run=True) if rerun else options
        to_app_config = prepare(app, node, path, name)

        # functools.wraps makes Hydra name the job and find `config_path`
        # from the user's script rather than from this module.
        @functools.wraps(app)
        def task(cfg: DictConfig) -> Any:
            job = TrackedJob(
                app,
                node,
                job_options,
                chdir=chdir,
                update=update,
                secrets=secrets,
                stopping=stopping,
                killed=killed,
            )
            try:
                return job.run(to_app_config(cfg), show_only=show_only)
            except HydraflowError as error:
                # A user's mistake: one line, not Hydra's report with a traceback.
                sys.stderr.write(f"hydraflow: error: {masked(str(error))}\n")
                raise SystemExit(error.exit_code) from None

        with first_job_composed_once(), workers_end_first(), environment_kept():
            return hydra_main(task)(cfg_passthrough)

    return decorator


def schema_and_path(first: Any, config_path: Any) -> tuple[Any, Any]:
    """Tells the first positional argument apart: a str, a path or None is
    `config_path`, as in `hydra.main`; a dataclass or attrs class, an
    instance of one, or a mapping is the schema."""
    if first is UNSPECIFIED:
        return None, config_path
    if first is None or isinstance(first, (str, os.PathLike)):
        if config_path is not UNSPECIFIED:
            raise TypeError("hydraflow.main() got config_path both by position and by name")
        return None, first
    from hydraflow.tracking.configs import is_structured

    if is_structured(first) or isinstance(first, Mapping):
        return first, config_path
    if isinstance(first, type):
        raise TypeError(
            f"hydraflow.main({first.__qualname__}): {first.__qualname__} is a class, not a "
            "dataclass: decorate it with @dataclasses.dataclass (or attrs), or pass a dict"
        )
    if callable(first):
        raise TypeError("hydraflow.main decorates with its arguments: write @hydraflow.main(...)")
    raise TypeError(
        "hydraflow.main() takes a schema (a dataclass, an instance or a dict) or "
        f"config_path (a str) first, not {type(first).__name__}"
    )


def hydra_decorator(
    config_path: Any, config_name: Any, version_base: Any
) -> tuple[Callable[[Callable[[DictConfig], Any]], Callable[..., Any]], str | None]:
    """`hydra.main` with the arguments given (Hydra fills in the others, its
    way), and the `config_path` it settled on.

    Called when the app is decorated, as `hydra.main` is: its warnings (no
    `version_base`, no `config_path`) are raised again at the user's
    decorator line, where Hydra would point."""
    import warnings

    import hydra
    from hydra import version

    given = {"config_path": config_path, "config_name": config_name, "version_base": version_base}
    arguments = {key: value for key, value in given.items() if value is not UNSPECIFIED}
    if isinstance(arguments.get("config_path"), os.PathLike):
        arguments["config_path"] = os.fspath(arguments["config_path"])
    with warnings.catch_warnings(record=True) as caught:
        decorate = hydra.main(**arguments)
    for warning in caught:
        # 1: this function, 2: hydraflow.main, 3: the user's decorator line.
        warnings.warn(warning.message, warning.category, stacklevel=3)
    path = arguments.get("config_path", None if version.base_at_least("1.2") else ".")
    return decorate, path


def pool_runs_killed(options: TrackingOptions) -> list[str]:
    """The runs this command's pool workers had in progress, all KILLED now
    (see `hydraflow.tracking.workers`); [] for a command that runs its jobs
    itself."""
    from hydraflow.tracking.workers import end_cut_off_runs, pool_events

    if pool_events() == ([], []):
        return []
    launch_dir = JobContext.current().launch_dir
    return end_cut_off_runs(options.uri(launch_dir), launch_dir)


def what_killed(killed: Sequence[str]) -> str:
    """`run 3f2a… is KILLED`, `runs 3f2a…, 9c1b… are KILLED`, or that none was."""
    if not killed:
        return "no run was in progress"
    if len(killed) == 1:
        return f"run {killed[0]} is KILLED"
    return f"runs {', '.join(killed)} are KILLED"


def interrupted_by(interrupt: KeyboardInterrupt) -> str:
    """`interrupted by SIGTERM`: under `hydraflow run`, the signal the user
    sent the runner, which stops the app with SIGINT whatever it got."""
    sent = protocol.runner_signal()
    return f"interrupted by {signal_name(sent)}" if sent is not None else describe(interrupt)


# Set by polars as MLflow imports it (its allocator's setting, read as polars
# loads): Hydra alone leaves it unset, and so does the call.
POLARS_SETTING = "_RJEM_MALLOC_CONF"


@contextlib.contextmanager
def environment_kept() -> Iterator[None]:
    """The environment after the call as before it, where imports changed it."""
    before = os.environ.get(POLARS_SETTING)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(POLARS_SETTING, None)


def store_uri(tracking_uri: str | os.PathLike[str] | None) -> str | None:
    """A path (a `Path`, or a string without a scheme) names a SQLite file."""
    return None if tracking_uri is None else as_uri(tracking_uri)


def take_flag(flag: str) -> bool:
    """Removes `flag` from the command line (Hydra would reject it)."""
    if flag in sys.argv[1:]:
        sys.argv.remove(flag)
        return True
    return False


class TrackedJob:
    """One Hydra job of the app: decide from the store, then run it tracked."""

    def __init__(
        self,
        app: App,
        node: Any,
        options: TrackingOptions,
        *,
        chdir: bool,
        update: Callable[[Any], Any] | None,
        secrets: Sequence[str] = (),
        killed: list[str] | None = None,
        stopping: MedianStopping | None = None,
    ) -> None:
        self.app = app
        self.killed = [] if killed is None else killed
        self.node = node
        self.options = options
        self.chdir = chdir
        self.update = update
        self.secret_keys = tuple(secrets)
        self.stopping = stopping

    def run(self, cfg: DictConfig, *, show_only: bool) -> Any:
        """The app's return value; for a run that finished before, the value
        recorded on it (None when dry-running); for one another process runs,
        its value once that run has ended (see `waited_for`)."""
        from hydraflow.tracking.configs import save_yaml, to_record, typed
        from hydraflow.tracking.inputs import config_search_dirs, write_manifest
        from hydraflow.tracking.secrets import resolve_watched

        handle_termination()
        # Resolved once, on the app's own config: what is recorded is what it gets.
        secrets, resolution = resolve_watched(cfg, self.secret_keys)
        config = typed(cfg, self.node, resolution)
        if self.update is not None:
            updated = self.update(config)
            config = config if updated is None else updated
            resolution = None  # the record is of the config `update` made
        config_yaml, container = to_record(
            cfg if self.update is None else config, secrets, resolution
        )
        context = JobContext.current().redacted(secrets)
        if show_only:
            print(f"# {context.experiment}: {context.described}\n{config_yaml}", end="")
            return None
        if self.update is not None and context.hydra_dir:
            save_yaml(container, context.hydra_dir / "config.yaml")
        write_manifest(masked(self.options.uri(context.launch_dir)), config_search_dirs())
        finished = self.finished_already(context, config_yaml)
        if finished is not None:
            return decode(finished.value)
        return self.track(context, config_yaml, container, config, secrets)

    def finished_already(self, context: JobContext, config_yaml: str) -> FinishedRun | None:
        """The skip decided from a SQLite store without importing MLflow."""
        from hydraflow.mlflow_schema import find_finished_in_sqlite
        from hydraflow.store import sqlite_path
        from hydraflow.tracking.adoption import adopt_in_sqlite

        if self.options.force_new_run or self.options.rerun_finished:
            return None
        uri = self.options.uri(context.launch_dir)
        path = sqlite_path(uri)
        if path is None or not path.exists():
            return None
        adopt_in_sqlite(uri, context.experiment, context.launch_dir, self.options.adoption())
        digest = self.options.digest(context, config_yaml)
        found = find_finished_in_sqlite(path, context.experiment, digest)
        if found is not None:
            report_skip(context, found.run_id, found.overrides, found.code, found.code_files)
        return found

    def track(
        self,
        context: JobContext,
        config_yaml: str,
        container: dict[str, Any],
        config: Any,
        secrets: Secrets,
    ) -> Any:
        from hydraflow.tracking.artifacts import chdir_artifact
        from hydraflow.tracking.code import current_code
        from hydraflow.tracking.lifecycle import Claimed, tracked_run
        from hydraflow.tracking.stopping import rule_for_job, watching

        code_tags = current_code(context.launch_dir).tags()
        claiming = Claimed(context, config_yaml, container, self.options, code_tags)
        try:
            with claiming as claimed:
                assert claimed.run is not None
                old_tags = dict(claimed.run.data.tags)
                if claimed.action == "busy" and waited_for(context, claimed):
                    waited = True  # claimed again below: its value if it finished, else run here
                else:
                    waited = False
                    if claimed.action in ("skip", "busy"):
                        report_unclaimed(context, claimed)
                        return decode(old_tags.get(VALUE_TAG)) if claimed.action == "skip" else None
                    with (
                        watching(claimed.run, claimed.client, rule_for_job(self.stopping)) as trial,
                        tracked_run(claimed, context, container, secrets) as run,
                    ):
                        arguments = (run, config) if takes_run(self.app) else (config,)
                        try:
                            with (
                                chdir_artifact(run) if self.chdir else contextlib.nullcontext(),
                                heard(),
                            ):
                                value = self.app(*arguments)
                        except SystemExit as ended:
                            if clean_exit(ended):  # FINISHED, with no value
                                trial.finish(claimed.client, None, old_tags)
                            raise
                        return trial.finish(claimed.client, value, old_tags)
            assert waited
            return self.track(context, config_yaml, container, config, secrets)
        except KeyboardInterrupt:
            self.killed += claiming.killed
            raise


def takes_run(app: App) -> bool:
    """Whether the app is `app(run, cfg)`: two parameters without a default.
    `app(cfg)` (also `app(cfg, extra=None)`) gets the config alone, as Hydra
    calls it."""
    try:
        parameters = inspect.signature(app).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = [p for p in parameters if p.kind in positional and p.default is p.empty]
    return len(required) >= 2


def report_skip(
    context: JobContext,
    run_id: str,
    their_overrides: str,
    code: str | None = None,
    code_files: str | None = None,
) -> None:
    """Says why a job did not run; loudly when the matching run was made
    with other overrides (they compose to the same config), and once per
    process (or once per job, by the CLI) when it was made by other code."""
    mine = " ".join(context.overrides)
    if their_overrides != mine:
        log.warning(
            "skipped %s: run %s already finished with the same config, made with "
            "other overrides (%s)",
            context.described,
            run_id,
            their_overrides or "none",
        )
    else:
        log.info("skipped: run %s already finished with this config", run_id)
    changed = code_changed(context, code, code_files)
    if changed is not None and not protocol.enabled():
        from hydraflow.tracking.code import warn_once

        warn_once(changed)
    protocol.ended(context.overrides, protocol.SKIPPED, run_id, code_changed=changed)


def code_changed(context: JobContext, code: str | None, code_files: str | None) -> list[str] | None:
    """The files changed since the skipped run was made; None when its code is
    this code, or was not recorded ([] when changed but not named)."""
    from hydraflow.tracking.code import Code, current_code

    recorded = Code.from_tags(code, code_files)
    if recorded is None:
        return None
    changed = current_code(context.launch_dir).changed_since(recorded)
    return None if changed == [] else (changed or [])


def report_unclaimed(context: JobContext, claimed: Claim) -> None:
    from hydraflow.mlflow_schema import CODE_FILES_TAG, CODE_TAG, OVERRIDES_TAG
    from hydraflow.tracking.owner import owner_of

    assert claimed.run is not None
    tags = claimed.run.data.tags
    if claimed.action == "skip":
        their_overrides = tags.get(OVERRIDES_TAG, "")
        code, files = tags.get(CODE_TAG), tags.get(CODE_FILES_TAG)
        report_skip(context, str(claimed.run_id), their_overrides, code, files)
        return
    who = owner_of(tags)
    log.warning("skipped %s: run %s is running in %s", context.described, claimed.run_id, who)
    protocol.ended(context.overrides, protocol.BUSY, claimed.run_id)


# How often a config that another process runs looks whether that run ended:
# soon at first (a duplicate trial often starts with it), then every few seconds.
WAIT_FIRST_SECONDS = 0.2
WAIT_MOST_SECONDS = 2.0


def waited_for(context: JobContext, claimed: Claim) -> bool:
    """Waits, however long, for the run another live process has of this
    config to end (a sweeper's duplicate trial): then the config is claimed
    again. Signals stop the wait as they stop the app. False, without
    waiting, when this process runs it itself (an app that calls itself)."""
    from hydraflow.tracking.lifecycle import CURRENT_RUNS
    from hydraflow.tracking.owner import owner_of

    assert claimed.run is not None
    if any(run.info.run_id == claimed.run_id for run in CURRENT_RUNS):
        return False
    who = owner_of(claimed.run.data.tags)
    log.info("%s: waiting for run %s, running in %s", context.described, claimed.run_id, who)
    pause = WAIT_FIRST_SECONDS
    while True:
        time.sleep(pause)
        if not still_running(claimed):
            return True
        pause = min(pause * 2, WAIT_MOST_SECONDS)


def still_running(claimed: Claim) -> bool:
    """Whether the run is RUNNING in a live process; a deleted run is not.
    The store's errors are the claim's (a `StoreError`, one line)."""
    from hydraflow.errors import StoreError
    from hydraflow.store import retry_busy
    from hydraflow.tracking.owner import owner_alive

    run_id = str(claimed.run_id)
    try:
        run = retry_busy(lambda: claimed.client.get_run(run_id))
    except Exception as error:
        if getattr(error, "error_code", None) == "RESOURCE_DOES_NOT_EXIST":
            return False  # deleted for good meanwhile
        raise StoreError(str(claimed.client.tracking_uri), error) from error
    if run.info.lifecycle_stage != "active" or run.info.status != "RUNNING":
        return False
    return owner_alive(dict(run.data.tags)) is not None
