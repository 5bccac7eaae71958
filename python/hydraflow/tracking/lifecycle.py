"""The bookkeeping that turns a job into an MLflow run: claim the run this
config has (skip it, wait for nobody, resume it or create it), record config,
overrides, Hydra's files and the log, and end it with the right status."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydraflow import protocol
from hydraflow.errors import RunBusyError, StoreError
from hydraflow.mlflow_schema import (
    ATTEMPT_TAG,
    CHOICE_TAG_PREFIX,
    CONFIG_TAG,
    DIGEST_TAG,
    HEARTBEAT_TAG,
    MAX_RUN_NAME,
    MAX_TAG_LENGTH,
    OVERRIDES_TAG,
    OWNER_TAG,
    is_finished,
)
from hydraflow.remote import mask_error, masked, masked_stdout
from hydraflow.signals import deferred
from hydraflow.store import (
    is_busy,
    lock_for,
    open_experiment,
    retry_busy,
    sqlite_path,
    tracking_uri,
)
from hydraflow.tracking.adoption import Adoption, adopt_in_sqlite, adopt_with_client
from hydraflow.tracking.identity import config_digest, config_json, find_runs, overrides_digest
from hydraflow.tracking.owner import Heartbeat, Owner, owner_alive, owner_of
from hydraflow.tracking.record import (
    append_log,
    log_hydra_files,
    log_params,
    standard_tags,
    warn_if_moved,
)

if TYPE_CHECKING:
    from mlflow import ActiveRun, MlflowClient
    from mlflow.entities import Run

    from hydraflow.tracking.artifacts import Artifacts
    from hydraflow.tracking.secrets import Secrets

log = logging.getLogger("hydraflow")


@dataclass(frozen=True)
class JobContext:
    """Where a job comes from: its name, directories, overrides and choices."""

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

    def redacted(self, secrets: Secrets) -> JobContext:
        """The context whose overrides show no secret (run name, tags, events, logs)."""
        return dataclasses.replace(self, overrides=secrets.overrides(self.overrides))

    @property
    def described(self) -> str:
        return " ".join(self.overrides) or "(no overrides)"

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
class TrackingOptions:
    tracking_uri: str | None = None
    force_new_run: bool = False
    match_overrides: bool = False
    rerun_finished: bool = False
    # The keys recorded as `***`: a foreign run's config is digested with them hidden.
    secrets: tuple[str, ...] = ()

    def uri(self, launch_dir: Path) -> str:
        return tracking_uri(self.tracking_uri, launch_dir)

    def adoption(self) -> Adoption:
        return Adoption(self.match_overrides, self.secrets)

    def digest(self, context: JobContext, config_yaml: str) -> str:
        if self.match_overrides:
            return overrides_digest(context.overrides)
        return config_digest(config_yaml)


@dataclass(frozen=True)
class Claim:
    """What this process may do with the config's run, decided atomically.

    `action` is "skip" (a FINISHED run exists), "busy" (a live process runs
    it), "resume" (take over an unfinished run) or "new" (created for us).
    """

    client: MlflowClient
    action: str
    run: Run | None
    digest: str

    @property
    def run_id(self) -> str | None:
        return None if self.run is None else str(self.run.info.run_id)


def claim(
    context: JobContext,
    config_yaml: str,
    config: Mapping[str, Any],
    options: TrackingOptions,
    code_tags: Mapping[str, str] | None = None,
) -> Claim:
    """Looks up the config's runs and takes the one to work on, so that two
    processes reaching the same config never both run it.

    On a SQLite store the lookup and the creation happen under the store's
    file lock. A tracking server offers no lock: a new run is created, then
    the oldest run of the config wins and a later duplicate is deleted. A run
    created or taken over gets `code_tags`: the code that makes it now.
    """
    uri = options.uri(context.launch_dir)
    client, experiment_id = open_experiment(uri, context.experiment, context.launch_dir)
    with store_errors(uri):
        return claim_in(
            client, experiment_id, uri, context, config_yaml, config, options, code_tags or {}
        )


@contextlib.contextmanager
def store_errors(uri: str) -> Iterator[None]:
    """An error of the store's (MLflow's, SQLAlchemy's) as a `StoreError`."""
    try:
        yield
    except StoreError:
        raise
    except Exception as error:
        if not from_store(error):
            raise  # hydraflow's own failure: its traceback says where, not "the store"
        raise StoreError(uri, error) from error


def from_store(error: Exception) -> bool:
    """Whether the store failed: MLflow refused, its database or the network
    (requests' errors are OSErrors) or a file (a lock) failed."""
    import sqlite3

    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    return isinstance(error, MlflowException | OSError | sqlite3.Error | SQLAlchemyError)


class Claimed:
    """`claim` as a block, which `tracked_run` is entered in: the claimed run
    is RUNNING from the store's write on, but only `tracked_run` ends it. An
    interrupt landing between the two (as MLflow's call that writes the run
    returns, as the claim returns, as the block reaches `tracked_run`) left
    it RUNNING after the process was gone, maybe with no id known to name it.
    So an exception leaving the block (or the claim) ends the config's run
    that this process claimed and left RUNNING: KILLED on an interrupt,
    FAILED otherwise. A class, not a generator: an interrupt as a
    generator's `__enter__` returns would escape it (and its `finally`)."""

    def __init__(
        self,
        context: JobContext,
        config_yaml: str,
        config: Mapping[str, Any],
        options: TrackingOptions,
        code_tags: Mapping[str, str] | None = None,
    ) -> None:
        self.context = context
        self.config_yaml = config_yaml
        self.config = config
        self.options = options
        self.code_tags = dict(code_tags or {})
        self.uri = options.uri(context.launch_dir)
        self.claimed: Claim | None = None
        self.opened: tuple[MlflowClient, str] | None = None
        # The runs an interrupt left KILLED: the one claimed, or found so.
        self.killed: list[str] = []

    def __enter__(self) -> Claim:
        context = self.context
        self.opened = open_experiment(self.uri, context.experiment, context.launch_dir)
        try:
            digest = self.options.digest(context, self.config_yaml)
            protocol.claiming(context.overrides, context.experiment, digest)
            with store_errors(self.uri):
                client, experiment_id = self.opened
                self.claimed = claim_in(
                    client,
                    experiment_id,
                    self.uri,
                    context,
                    self.config_yaml,
                    self.config,
                    self.options,
                    self.code_tags,
                )
            return self.claimed
        except BaseException as error:
            if isinstance(error, KeyboardInterrupt):
                self.killed = self.end_left_running("KILLED")
            protocol.claim_over(context.overrides)
            raise

    def __exit__(self, kind: type[BaseException] | None, error: object, trace: object) -> None:
        if kind is None:
            return
        claimed = self.claimed
        if claimed is not None and claimed.action in ("new", "resume"):
            interrupted = issubclass(kind, KeyboardInterrupt)
            self.killed = self.end_left_running("KILLED" if interrupted else "FAILED")
        protocol.claim_over(self.context.overrides)

    def end_left_running(self, status: str) -> list[str]:
        """Ends `status` the config's runs this process claimed and left
        RUNNING (the claimed one, or, when the claim did not return, those
        of its digest); the ids of those KILLED now. Held against a second
        Ctrl-C meanwhile."""
        if self.opened is None:
            return []
        client, experiment_id = self.opened
        with deferred():
            try:
                if self.claimed is not None and self.claimed.run_id is not None:
                    runs = [retry_busy(functools.partial(client.get_run, self.claimed.run_id))]
                else:
                    digest = self.options.digest(self.context, self.config_yaml)
                    runs = find_runs(client, experiment_id, digest)
                return [run.info.run_id for run in runs if self.left_ended(client, run, status)]
            except Exception as error:
                log.warning(
                    "a run of %s may be left RUNNING: %s",
                    self.context.described,
                    masked(str(error)),
                )
                return []

    def left_ended(self, client: MlflowClient, run: Run, status: str) -> bool:
        """Ends the run `status` if this process left it RUNNING; whether it is KILLED."""
        run_id = run.info.run_id
        mine = Owner.from_tag(run.data.tags.get(OWNER_TAG)) == Owner.me()
        if run.info.status == "RUNNING" and mine:
            retry_busy(lambda: client.set_terminated(run_id, status))
            protocol.ended(self.context.overrides, status.lower(), run_id)
            return status == "KILLED"
        return mine and run.info.status == "KILLED"


def claim_in(
    client: MlflowClient,
    experiment_id: str,
    uri: str,
    context: JobContext,
    config_yaml: str,
    config: Mapping[str, Any],
    options: TrackingOptions,
    code_tags: Mapping[str, str],
) -> Claim:
    digest = options.digest(context, config_yaml)
    local = sqlite_path(uri) is not None
    if options.force_new_run:
        pass  # no run is looked for, so no run made by another tool either
    elif local:
        adopt_in_sqlite(uri, context.experiment, context.launch_dir, options.adoption())
    else:
        adopt_with_client(client, experiment_id, uri, context.experiment, options.adoption())
    lock = lock_for(uri, context.launch_dir) if local else contextlib.nullcontext()
    with lock:
        # A forced new run needs no lookup, but on a server (no lock) `confirm`
        # still tells its rivals from the runs this lookup saw.
        needs_lookup = not (options.force_new_run and local)
        runs = find_runs(client, experiment_id, digest) if needs_lookup else []
        action, run = decide(runs, options)
        if action == "new":
            run = create_run(client, experiment_id, digest, context, config, code_tags)
        elif action == "resume" and run is not None:
            run = take_over(client, run, code_tags)
    if not local and run is not None and action in ("new", "resume"):
        seen = {known.info.run_id for known in runs}
        action, run = confirm(client, experiment_id, digest, action, run, seen)
    return Claim(client, action, run, digest)


def decide(runs: list[Run], options: TrackingOptions) -> tuple[str, Run | None]:
    """The action for a config whose active runs are `runs` (oldest first).

    The newest run is the config's current attempt, what the user last asked
    for: an interrupted `--rerun` leaves a KILLED run beside an older
    FINISHED one, and the next plain run resumes the KILLED one rather than
    skipping the config for the older run's sake."""
    if options.force_new_run or not runs:
        return "new", None
    newest = runs[-1]
    if is_finished(newest.info.status) and not options.rerun_finished:
        return "skip", newest
    now = time.time()
    for run in runs:
        if run.info.status == "RUNNING" and owner_alive(run.data.tags, now):
            return "busy", run
    return "resume", newest


def create_run(
    client: MlflowClient,
    experiment_id: str,
    digest: str,
    context: JobContext,
    config: Mapping[str, Any],
    code_tags: Mapping[str, str],
) -> Run:
    # MLflow's user, source and git tags, as `mlflow.start_run` would give them.
    tags = standard_tags() | run_tags(digest, context, config) | dict(code_tags)
    tags.update({OWNER_TAG: Owner.me().to_tag(), HEARTBEAT_TAG: str(time.time()), ATTEMPT_TAG: "1"})
    name = run_name(context)
    return retry_busy(lambda: client.create_run(experiment_id, tags=tags, run_name=name))


def run_name(context: JobContext) -> str:
    """The name a person reads in MLflow's UI, swept values first: the
    overrides in their order (the sweep's `each` and `all` before its `add`),
    each key cut to its last part where that stays unambiguous
    (`optimizer.lr=0.01 model=mlp`  ->  `lr=0.01 model=mlp`); without
    overrides the config groups' options, else `defaults` (never MLflow's
    random name)."""
    pairs = [o.lstrip("+~").partition("=") for o in context.overrides]
    assigned = [(key, value) for key, sign, value in pairs if sign]
    if not assigned:
        assigned = sorted(context.choices.items())
    leaves = [key.rpartition(".")[2] for key, _ in assigned]
    shown = [
        f"{leaf if leaves.count(leaf) == 1 else key}={value}"
        for (key, value), leaf in zip(assigned, leaves, strict=True)
    ]
    return " ".join(shown)[:MAX_RUN_NAME] or "defaults"


def take_over(client: MlflowClient, run: Run, code_tags: Mapping[str, str]) -> Run:
    """Makes this process the owner of an unfinished run and counts the
    attempt; the run's code is now this process's."""
    from mlflow.entities import RunTag

    run_id = run.info.run_id
    attempt = int(run.data.tags.get(ATTEMPT_TAG, "1")) + 1
    tags = [
        RunTag(OWNER_TAG, Owner.me().to_tag()),
        RunTag(HEARTBEAT_TAG, str(time.time())),
        RunTag(ATTEMPT_TAG, str(attempt)),
        *(RunTag(key, value) for key, value in code_tags.items()),
    ]
    retry_busy(lambda: client.log_batch(run_id, tags=tags))
    retry_busy(lambda: client.update_run(run_id, status="RUNNING"))
    return retry_busy(lambda: client.get_run(run_id))


def confirm(
    client: MlflowClient,
    experiment_id: str,
    digest: str,
    action: str,
    mine: Run,
    seen: set[str],
) -> tuple[str, Run | None]:
    """On a store without a lock: keep the claim only if nobody got there
    first. A new run's rivals are the runs made since the lookup (`seen`
    holds the ones it found): the oldest of them wins."""
    runs = find_runs(client, experiment_id, digest)
    if action == "resume":
        current = next((run for run in runs if run.info.run_id == mine.info.run_id), None)
        owner = Owner.from_tag(current.data.tags.get(OWNER_TAG)) if current else None
        return ("resume", mine) if owner == Owner.me() else ("busy", current)
    rivals = [run for run in runs if run.info.run_id not in seen]
    first = rivals[0] if rivals else mine
    if first.info.run_id == mine.info.run_id:
        return "new", mine
    retry_busy(lambda: client.delete_run(mine.info.run_id))
    return ("skip" if is_finished(first.info.status) else "busy"), first


def run_tags(digest: str, context: JobContext, config: Mapping[str, Any]) -> dict[str, str]:
    """The digest, the overrides, the group choices and, when it fits, the
    resolved config as JSON: what identity and `hydraflow.load` read."""
    tags = {DIGEST_TAG: digest, OVERRIDES_TAG: " ".join(context.overrides)[:MAX_TAG_LENGTH]}
    tags.update(
        {f"{CHOICE_TAG_PREFIX}{group}": option for group, option in context.choices.items()}
    )
    recorded = config_json(config)
    if len(recorded) <= MAX_TAG_LENGTH:
        tags[CONFIG_TAG] = recorded
    return tags


@contextlib.contextmanager
def tracked_run(
    claimed: Claim,
    context: JobContext,
    config: Mapping[str, Any],
    secrets: Secrets | None = None,
) -> Iterator[Run]:
    """Activates the claimed run, records it, and ends it with its status:
    FINISHED, FAILED on an exception (its traceback in the log), KILLED on
    Ctrl-C or a termination signal. The status is written even when the log
    cannot be uploaded, and no bookkeeping error replaces the app's own."""
    from hydraflow.tracking.artifacts import artifacts_of
    from hydraflow.tracking.inner_calls import handed_to_app

    client = claimed.client
    run_id = claimed.run_id
    assert claimed.run is not None and run_id is not None, "only a claimed run is tracked"
    resumed = claimed.action == "resume"
    status = "FAILED"
    artifacts = None
    # From here the run is ended whatever happens: a Ctrl-C as it is
    # activated would leave it RUNNING, and no start event would name it.
    try:
        run = activate(claimed)
        artifacts = artifacts_of(client, claimed.run)
        warn_if_moved(str(client.tracking_uri), context.experiment, claimed.run)
        if resumed:
            log.info("resuming run %s", run_id)
        protocol.started(context.overrides, run_id, resumed=resumed)
        # The app's own `mlflow.start_run()` and the like reach this run (inner_calls).
        with heartbeat(client, run_id), the_current(run), handed_to_app(run, client.tracking_uri):
            # The claim read the run under the lock: the params it has are these.
            log_params(client, run_id, config, claimed.run.data.params if resumed else {})
            if context.hydra_dir:
                log_hydra_files(artifacts, context.hydra_dir, secrets)
            yield run
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        log.warning("run %s interrupted", run_id)
        raise
    except SystemExit as ended:
        # `sys.exit()` or `sys.exit(0)`: the app ended well, as Hydra's exit 0 says.
        status = "FINISHED" if clean_exit(ended) else "FAILED"
        if status == "FAILED":
            log_to_files("run %s failed", run_id)
        raise
    except BaseException as error:
        mask_error(error)  # MLflow's errors name the URL, password and all
        log_to_files("run %s failed", run_id)
        raise
    finally:
        with deferred():
            if artifacts is not None:
                upload_log(artifacts, run_id, context.log_file, resumed=resumed, secrets=secrets)
            end_run(client, run_id, status)
            protocol.ended(context.overrides, outcome(status, run_id, resumed=resumed), run_id)


def clean_exit(ended: SystemExit) -> bool:
    """`sys.exit()`, `sys.exit(0)`: the exit status 0 the shell sees."""
    return ended.code is None or ended.code == 0


def outcome(status: str, run_id: str, *, resumed: bool) -> str:
    """The word the runner counts: a run `hydraflow.report` stopped is `stopped`."""
    from hydraflow.tracking.stopping import was_stopped

    if status != "FINISHED":
        return status.lower()
    if was_stopped(run_id):
        return protocol.STOPPED
    return protocol.RESUMED if resumed else protocol.FINISHED


# The runs of the jobs in progress, innermost last: the process's, not a
# thread's (MLflow's active run is per thread), so that threads the app starts
# see the job's run too.
CURRENT_RUNS: list[Run] = []


@contextlib.contextmanager
def the_current(run: Run) -> Iterator[None]:
    CURRENT_RUNS.append(run)
    try:
        yield
    finally:
        CURRENT_RUNS.remove(run)


def current_run() -> Run:
    """The run of the job in progress: what an app written `app(run, cfg)`
    receives, for one written `app(cfg)` as under Hydra. Unlike
    `mlflow.active_run()`, it stays the job's run inside a nested run the app
    starts, and in the app's other threads."""
    if not CURRENT_RUNS:
        raise RuntimeError(
            "hydraflow.current_run() is called outside a job: call it in an app "
            "decorated with @hydraflow.main, or inside hydraflow.start_run()"
        )
    return CURRENT_RUNS[-1]


def log_to_files(message: str, *args: object) -> None:
    """Logs the exception being handled, with its traceback, to the job's log
    file (which the run keeps) but not to the console, where Hydra reports it
    as it would under `@hydra.main`."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, message, args, sys.exc_info())
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and record.levelno >= handler.level:
            handler.handle(record)


def heartbeat(client: MlflowClient, run_id: str) -> contextlib.AbstractContextManager[object]:
    """Only a tracking server needs one: a SQLite store is judged by the process table."""
    if sqlite_path(str(client.tracking_uri)) is not None:
        return contextlib.nullcontext()
    return Heartbeat(lambda now: client.set_tag(run_id, HEARTBEAT_TAG, now))


def upload_log(
    artifacts: Artifacts,
    run_id: str,
    log_file: Path | None,
    *,
    resumed: bool,
    secrets: Secrets | None = None,
) -> None:
    if log_file is None:
        return
    flush_log_handlers()
    try:
        append_log(artifacts, log_file, resumed=resumed, secrets=secrets)
    except Exception as error:
        log.warning("run %s: the log %s was not uploaded: %s", run_id, log_file, error)


def activate(claimed: Claim) -> ActiveRun:
    """Makes the claimed run MLflow's active run, as `mlflow.start_run(run_id=...)`
    does, without its three store calls (a read, a write of the RUNNING status
    the claim has just given the run, a read again). MLflow's own call where it
    does more (system metrics, an active run to refuse) or keeps its active
    runs otherwise than this MLflow does."""
    import mlflow
    from mlflow.environment_variables import MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING
    from mlflow.tracking import fluent

    run = claimed.run
    assert run is not None
    stack = getattr(fluent, "_active_run_stack", None)
    if (
        stack is None
        or not hasattr(stack, "get")
        or MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING.get()  # type: ignore[no-untyped-call]
        or mlflow.active_run() is not None
        or mlflow.get_tracking_uri() != str(claimed.client.tracking_uri)
    ):
        return retry_busy(lambda: mlflow.start_run(run_id=run.info.run_id))
    active = mlflow.ActiveRun(run)  # type: ignore[no-untyped-call]
    stack.get().append(active)
    return active


def end_run(client: MlflowClient, run_id: str, status: str) -> None:
    """Leaves MLflow's fluent run with its status, written once: by MLflow's
    `end_run` (which pops the run, then writes), and when that write fails by
    the client's idempotent, retried call."""
    import mlflow

    # MLflow prints the run's URL (a tracking server's, password and all) as it ends it.
    with masked_stdout():
        active = mlflow.active_run()
        same_store = mlflow.get_tracking_uri() == str(client.tracking_uri)
        if active is not None and active.info.run_id == run_id and same_store:
            try:
                mlflow.end_run(status)
                return
            except Exception as error:
                log.debug(
                    "run %s: MLflow's end_run failed (%s); writing the status again", run_id, error
                )
        retry_busy(lambda: client.set_terminated(run_id, status))
        active = mlflow.active_run()
        if active is not None and active.info.run_id == run_id:
            try:
                mlflow.end_run(status)  # pops the run first, then writes the same status again
            except Exception as error:
                if not is_busy(error):
                    raise


def flush_log_handlers() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()


NO_CONFIG: Any = object()


@contextlib.contextmanager
def start_run(
    config: Any = NO_CONFIG,
    *,
    chdir: bool = False,
    experiment_name: str | None = None,
    tracking_uri: str | None = None,
    force_new_run: bool = False,
    match_overrides: bool = False,
    secrets: Sequence[str] = (),
    **mlflow_options: Any,
) -> Iterator[Run]:
    """The decorator's bookkeeping as a context manager, for code without it.

    Inside a Hydra job the experiment, directories and overrides come from
    Hydra; elsewhere the experiment is `experiment_name` or the script's name.
    A run with the same config is resumed (whatever its status) unless
    `force_new_run`; one that a live process is running is an error. Keys
    matching `secrets`, and values read from the environment, are recorded
    as their interpolation text or `***` (see `hydraflow.tracking.secrets`).
    `chdir` runs the block in the run's artifact directory.

    Without `config`, the published HydraFlow's form: MLflow's `start_run`
    with `mlflow_options` (`run_id`, `experiment_id`, `run_name`, `nested`,
    `parent_run_id`, `tags`, `description`, `log_system_metrics`), recorded
    by `log_run` (a new run each time, as MLflow makes).
    """
    from hydraflow.tracking.artifacts import chdir_artifact

    unknown = sorted(set(mlflow_options) - PUBLISHED_OPTIONS)
    if unknown:
        raise TypeError(f"start_run() got an unexpected keyword argument {unknown[0]!r}")
    options = TrackingOptions(
        tracking_uri, force_new_run, match_overrides, rerun_finished=True, secrets=tuple(secrets)
    )
    if config is NO_CONFIG:
        if experiment_name is not None or options != TrackingOptions(
            rerun_finished=True, secrets=options.secrets
        ):
            raise TypeError(
                "start_run(): experiment_name, tracking_uri, force_new_run and "
                "match_overrides come with a config: start_run(config, ...)"
            )
        started = started_as_published(mlflow_options, secrets)
    elif mlflow_options:
        raise TypeError(
            f"start_run(config, {sorted(mlflow_options)[0]}=...): MLflow's options come without "
            "a config (the published HydraFlow's form, a new run each time)"
        )
    else:
        started = started_with_config(config, experiment_name, options)
    with started as run:
        if chdir:
            with chdir_artifact(run):
                yield run
        else:
            yield run


# MLflow's `start_run` keywords that the published HydraFlow's `start_run` passes on.
PUBLISHED_OPTIONS = frozenset(
    {
        "run_id",
        "experiment_id",
        "run_name",
        "nested",
        "parent_run_id",
        "tags",
        "description",
        "log_system_metrics",
    }
)


@contextlib.contextmanager
def started_as_published(mlflow_options: dict[str, Any], secrets: Sequence[str]) -> Iterator[Run]:
    import mlflow

    from hydraflow.tracking.logrun import log_run

    with mlflow.start_run(**mlflow_options) as run, log_run(run, secrets=secrets):
        yield run


@contextlib.contextmanager
def started_with_config(
    config: Any, experiment_name: str | None, options: TrackingOptions
) -> Iterator[Run]:
    from hydraflow.tracking.code import current_code
    from hydraflow.tracking.configs import as_omegaconf, to_record
    from hydraflow.tracking.secrets import resolve_watched

    found, resolution = resolve_watched(as_omegaconf(config), options.secrets)
    context = JobContext.current(experiment_name).redacted(found)
    config_yaml, container = to_record(config, found, resolution)
    code = current_code(context.launch_dir)
    with Claimed(context, config_yaml, container, options, code.tags()) as claimed:
        if claimed.action == "busy":
            raise RunBusyError(
                claimed.run_id,
                owner_of(claimed.run.data.tags) if claimed.run else "another process",
            )
        with tracked_run(claimed, context, container, found) as run:
            yield run
