"""What an app needs to continue a resumed run instead of starting over."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hydraflow.mlflow_schema import ATTEMPT_TAG
from hydraflow.store import retry_busy

if TYPE_CHECKING:
    from mlflow.entities import Run


def is_resumed(run: Run) -> bool:
    """Whether an earlier attempt of this run (FAILED, KILLED, or lost) was
    taken up again: the app may then continue from its checkpoint."""
    return int(run.data.tags.get(ATTEMPT_TAG, "1")) > 1


def last_step(run: Run, metric: str) -> int | None:
    """The highest step logged for `metric` in this run, or None if none was."""
    import mlflow

    client = mlflow.MlflowClient()
    history = retry_busy(lambda: client.get_metric_history(run.info.run_id, metric))
    return max((point.step for point in history), default=None)
