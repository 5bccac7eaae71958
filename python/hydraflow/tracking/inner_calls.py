"""The app's own MLflow calls inside a job, as an app written for
`@hydra.main` makes them, kept working after its decorator is swapped.

The job's run is MLflow's active run while the app runs, so MLflow would
refuse the app's `mlflow.start_run()` ("already active"). Instead:

- `start_run()` (not nested, no other run's id) is handed the job's run: its
  tags, description and run name are applied to it, and leaving its `with`
  block does not end it (hydraflow ends it with the app's outcome);
- `end_run()` of the job's run leaves it to hydraflow too;
- `start_run(nested=True)` is MLflow's own child run, in the job's
  experiment unless the app chose another;
- `set_experiment` naming another experiment is a warning: the job's run
  stays in the experiment named after the job;
- `set_tracking_uri` naming another store is a one-line error naming the
  decorator's `tracking_uri=`.

`from mlflow import start_run` binds MLflow's function before any job
runs, so the calls are redirected at the function objects themselves (see
`redirect`), not at the names they are imported under. Outside a job, and in
threads where the job's run is not MLflow's active run, every call is
MLflow's own.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hydraflow.errors import HydraflowError
from hydraflow.remote import masked
from hydraflow.store import retry_busy, sqlite_path

if TYPE_CHECKING:
    from mlflow import ActiveRun
    from mlflow.entities import Experiment, Run

log = logging.getLogger("hydraflow")


@dataclass(frozen=True)
class JobRun:
    """A job's run while its app runs, and the store it is in."""

    run_id: str
    experiment_id: str
    store: str


# The runs of the jobs whose apps are running, innermost last.
JOB_RUNS: list[JobRun] = []


@contextlib.contextmanager
def handed_to_app(run: Run, store: str) -> Iterator[None]:
    """While the app runs, its MLflow calls reach the job's run `run`."""
    redirect_once()
    job = JobRun(str(run.info.run_id), str(run.info.experiment_id), store)
    JOB_RUNS.append(job)
    try:
        yield
    finally:
        JOB_RUNS.remove(job)


def active_job() -> JobRun | None:
    """The job whose run is this thread's active MLflow run."""
    import mlflow

    if not JOB_RUNS:
        return None
    active = mlflow.active_run()
    if active is None:
        return None
    return next((job for job in reversed(JOB_RUNS) if job.run_id == active.info.run_id), None)


def start_run(original: Callable[..., ActiveRun], *args: Any, **kwargs: Any) -> ActiveRun:
    """`mlflow.start_run` in a job: a child run is MLflow's; the job's own
    run (no id, or its id) is handed over; another run's id MLflow refuses."""
    job = active_job()
    if job is None:
        return original(*args, **kwargs)
    call = inspect.signature(original).bind(*args, **kwargs)
    given = call.arguments
    if given.get("nested") or given.get("parent_run_id"):
        if given.get("experiment_id") is None and chosen_experiment() is None:
            call.arguments["experiment_id"] = job.experiment_id  # beside its parent
        return original(*call.args, **call.kwargs)
    if given.get("run_id") not in (None, job.run_id):
        return original(*args, **kwargs)  # MLflow refuses a second active run, as ever
    if given.get("experiment_id") not in (None, job.experiment_id):
        warn_other_experiment(f"mlflow.start_run(experiment_id={given['experiment_id']!r})", job)
    elif chosen_experiment() not in (None, job.experiment_id):
        warn_other_experiment("mlflow.set_experiment", job)
    return hand_over(job, given)


def hand_over(job: JobRun, given: Mapping[str, Any]) -> ActiveRun:
    """The job's run, with the tags, description and name the app gives it."""
    import mlflow
    from mlflow.entities import RunTag
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

    tags = {str(key): str(value) for key, value in (given.get("tags") or {}).items()}
    if given.get("description"):
        tags[MLFLOW_RUN_NOTE] = str(given["description"])
    name = given.get("run_name")
    if not tags and not name:
        active = mlflow.active_run()
        assert active is not None, "the job's run is active"
        return handed_run(active)
    client = mlflow.MlflowClient(job.store)
    if name:
        retry_busy(lambda: client.update_run(job.run_id, name=str(name)))
    if tags:
        batch = [RunTag(key, value) for key, value in tags.items()]
        retry_busy(lambda: client.log_batch(job.run_id, tags=batch))
    return handed_run(retry_busy(lambda: client.get_run(job.run_id)))


def end_run(original: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    """`mlflow.end_run`: a child run the app started is ended; the job's is not."""
    if active_job() is None:
        original(*args, **kwargs)
    # The job's run: hydraflow ends it as the app ends, with its outcome.


def set_experiment(original: Callable[..., Experiment], *args: Any, **kwargs: Any) -> Experiment:
    """`mlflow.set_experiment` in a job: the job's experiment is taken, another
    one is a warning and the job's is returned (nothing is created)."""
    import mlflow

    job = next(iter(JOB_RUNS[-1:]), None)
    if job is None:
        return original(*args, **kwargs)
    given = inspect.signature(original).bind(*args, **kwargs).arguments
    client = mlflow.MlflowClient(job.store)
    experiment = client.get_experiment(job.experiment_id)
    name, experiment_id = given.get("experiment_name"), given.get("experiment_id")
    if name in (None, experiment.name) and experiment_id in (None, job.experiment_id):
        return original(*args, **kwargs)
    shown = repr(name) if name is not None else f"experiment_id={experiment_id!r}"
    warn_other_experiment(f"mlflow.set_experiment({shown})", job, experiment.name)
    return experiment


def set_tracking_uri(original: Callable[..., None], uri: Any) -> None:
    """Another store than the job's is refused: the job's run cannot move there."""
    import os

    job = next(iter(JOB_RUNS[-1:]), None)
    if job is None or uri is None or same_store(str(os.fspath(uri)), job.store):
        original(uri)
        return
    raise HydraflowError(
        f"mlflow.set_tracking_uri({masked(str(uri))!r}) in a job whose run is in "
        f"{masked(job.store)}: choose the store with "
        f"@hydraflow.main(..., tracking_uri={masked(str(uri))!r}) or MLFLOW_TRACKING_URI"
    )


def same_store(uri: str, store: str) -> bool:
    mine, theirs = sqlite_path(uri), sqlite_path(store)
    if mine is not None and theirs is not None:
        return mine.resolve() == theirs.resolve()
    return uri.rstrip("/") == store.rstrip("/")


def chosen_experiment() -> str | None:
    """The experiment the app set with `mlflow.set_experiment`, if any."""
    from mlflow.tracking import fluent

    chosen = getattr(fluent, "_active_experiment_id", None)
    return None if chosen is None else str(chosen)


_warned: set[str] = set()


def warn_other_experiment(call: str, job: JobRun, experiment: str | None = None) -> None:
    """Once per call: the job's run stays where it is, and how to name it."""
    if call in _warned:
        return
    _warned.add(call)
    if experiment is None:
        import mlflow

        experiment = mlflow.MlflowClient(job.store).get_experiment(job.experiment_id).name
    log.warning(
        "%s in a job: its run stays in experiment %r, named after the job "
        "(hydra.job.name=NAME on the command line names it)",
        call,
        experiment,
    )


def handed_run(run: Run) -> ActiveRun:
    """`mlflow.ActiveRun` of the job's run, as the app's `start_run` returns it."""
    return handed_run_class()(run)


@functools.cache
def handed_run_class() -> type[ActiveRun]:
    import mlflow

    class HandedRun(mlflow.ActiveRun):
        """Leaving its `with` block leaves the run to hydraflow, which ends
        it with the app's outcome."""

        def __exit__(self, exc_type: object, exc: object, traceback: object) -> bool:
            return exc_type is None

    return HandedRun


REDIRECTS: dict[str, Callable[..., Any]] = {
    "mlflow.tracking.fluent.start_run": start_run,
    "mlflow.tracking.fluent.end_run": end_run,
    "mlflow.tracking.fluent.set_experiment": set_experiment,
    "mlflow.tracking._tracking_service.utils.set_tracking_uri": set_tracking_uri,
}


@functools.cache
def redirect_once() -> None:
    import importlib

    for path, replacement in REDIRECTS.items():
        module, _, name = path.rpartition(".")
        redirect(getattr(importlib.import_module(module), name), replacement)


def redirect(function: Any, replacement: Callable[..., Any]) -> None:
    """Makes every call of `function`, under whatever name it was imported,
    a call of `replacement(original, *args, **kwargs)`, where `original` is
    a copy of `function` as it was. Its signature stays the original's."""
    if not isinstance(function, types.FunctionType) or function.__code__.co_freevars:
        log.debug("%r left as it is: not a plain function", function)
        return
    if FORWARD_TO in (function.__kwdefaults__ or {}):
        return  # redirected already (by a second import of this module, say)
    original = types.FunctionType(
        function.__code__, function.__globals__, function.__name__, function.__defaults__
    )
    original.__kwdefaults__ = function.__kwdefaults__
    original.__qualname__ = function.__qualname__
    function.__signature__ = inspect.signature(original)  # type: ignore[attr-defined]
    function.__code__ = _forward.__code__.replace(co_name=function.__name__)
    function.__defaults__ = None
    function.__kwdefaults__ = {FORWARD_TO: functools.partial(replacement, original)}


FORWARD_TO = "_hydraflow_to"


def _forward(*args: Any, _hydraflow_to: Callable[..., Any], **kwargs: Any) -> Any:
    """The body every redirected function gets: the call goes on to its
    replacement, kept in the function's own keyword default."""
    return _hydraflow_to(*args, **kwargs)
