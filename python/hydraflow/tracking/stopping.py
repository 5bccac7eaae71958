"""Early stopping: `hydraflow.report` logs a metric and says whether the run
should stop now, by the rule given to `@hydraflow.main(stopping=...)` or, for
a job run by `hydraflow run`, by the jobs file's `stopping:` (which wins).

The rule compares with the experiment's completed runs: FINISHED and not
stopped themselves, the runs whose histories are whole (`histories.py`
reads them).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hydraflow import protocol
from hydraflow.errors import HydraflowError
from hydraflow.mlflow_schema import STOPPED_TAG, VALUE_TAG
from hydraflow.remote import chain, masked, why
from hydraflow.store import retry_busy
from hydraflow.tracking.values import encode

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from hydraflow.tracking.histories import Histories

DIRECTIONS = ("min", "max")
# Optuna's and Hydra's sweeper's words for them, named in the error.
OPTUNA_WORDS = {"minimize": "min", "maximize": "max"}


@dataclass(frozen=True)
class MedianStopping:
    """Stop a run when its value at a step is worse than the median of the
    experiment's completed runs at that step (higher for `direction="min"`,
    lower for `"max"`; NaN is always worse). No run stops before step
    `warmup_steps`, nor while fewer than `min_runs` completed runs have a
    value at the step."""

    direction: str = "min"
    warmup_steps: int = 0
    min_runs: int = 3

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            meant = OPTUNA_WORDS.get(str(self.direction))
            hint = f" (Optuna's word for '{meant}')" if meant else ""
            raise ValueError(
                f"MedianStopping: direction must be 'min' or 'max', not {self.direction!r}{hint}"
            )
        for name, least in (("warmup_steps", 0), ("min_runs", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(
                    f"MedianStopping: {name} must be a whole number >= {least}, not {value!r}"
                )

    def should_stop(self, value: float, step: int, others: Sequence[float]) -> bool:
        known = [v for v in others if not math.isnan(v)]
        if step < self.warmup_steps or len(known) < self.min_runs:
            return False
        if math.isnan(value):
            return True
        median = statistics.median(known)
        return value > median if self.direction == "min" else value < median


def rule_for_job(default: MedianStopping | None) -> MedianStopping | None:
    """The jobs file's rule when `hydraflow run` gives one, else `default`
    (the decorator's): the file says how this job is run, as Hydra's command
    line overrides what the code sets."""
    try:
        settings = protocol.stopping_settings()
        if settings is None:
            return default
        if settings["rule"] == "none":
            return None
        return MedianStopping(settings["direction"], settings["warmup_steps"], settings["min_runs"])
    except (ValueError, KeyError, TypeError) as error:
        text = os.environ.get(protocol.STOPPING_ENV, "")
        raise HydraflowError(
            f"{protocol.STOPPING_ENV}={text!r} is not a stopping rule ({error}); "
            "set the rule in the jobs file's stopping: key"
        ) from None


@dataclass
class Trial:
    """The run being tracked in this process, and how `report` judges it."""

    run_id: str
    rule: MedianStopping | None
    histories: Histories | None
    stopped_at: int | None = None
    last_value: float | None = None

    def report(self, name: str, value: float, step: int) -> bool:
        self.last_value = value
        if self.rule is None or self.histories is None or step < self.rule.warmup_steps:
            return False  # warming up: nothing to read
        if self.rule.should_stop(value, step, self.histories.at_step(name, step)):
            if self.stopped_at is None:
                self.stopped_at = step
            return True
        return False

    def finish(self, client: MlflowClient, value: Any, old_tags: dict[str, str]) -> Any:
        """Records what the app returned (a stopped run that returns None:
        its last reported value) and where it stopped; returns that value.
        Tags an earlier attempt left and this one does not set are removed."""
        from mlflow.entities import RunTag

        if value is None and self.stopped_at is not None:
            value = self.last_value
        tags = {VALUE_TAG: encode(value) if value is not None else None}
        tags[STOPPED_TAG] = None if self.stopped_at is None else str(self.stopped_at)
        kept = [RunTag(key, text) for key, text in tags.items() if text is not None]
        if kept:
            retry_busy(lambda: client.log_batch(self.run_id, tags=kept))
        for stale in [key for key, text in tags.items() if text is None and key in old_tags]:
            retry_busy(functools.partial(client.delete_tag, self.run_id, stale))
        return value


_current: Trial | None = None


@contextlib.contextmanager
def watching(run: Run, client: MlflowClient, rule: MedianStopping | None) -> Iterator[Trial]:
    """Makes `run` the one `report` judges while the app runs."""
    global _current
    histories = None
    if rule is not None:
        from hydraflow.tracking.histories import open_histories

        histories = open_histories(run, client)
    trial = Trial(run.info.run_id, rule, histories)
    _current = trial
    try:
        yield trial
    finally:
        _current = None
        if histories is not None:
            histories.close()


def report(name: str, value: float, step: int) -> bool:
    """Logs `value` of metric `name` at `step` (as `mlflow.log_metric`
    would) and returns True when the run should stop now, by the rule of
    `@hydraflow.main(stopping=...)`; always False without one."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        mlflow.log_metric(name, value, step=step)
    except MlflowException as error:
        if not any(isinstance(cause, OSError) for cause in chain(error)):
            raise  # the server answered: MLflow's own error says what
        # A server gone mid-sweep: one line, where a traceback would say no more.
        uri = masked(mlflow.get_tracking_uri())
        raise HydraflowError(
            f"report could not log {name!r} to the tracking server {uri}: {why(error)}"
        ) from None
    trial = _current
    return trial is not None and trial.report(name, float(value), step)


def was_stopped(run_id: str) -> bool:
    """Whether `report` stopped the run being tracked in this process."""
    trial = _current
    return trial is not None and trial.run_id == run_id and trial.stopped_at is not None
