"""Early stopping against a real MLflow tracking server: the completed runs'
values at a step, as the rule reads them (`ClientHistories`: bulk requests,
the cache kept between processes, the searches for runs completed since),
with MLflow's own per-run reading (`MlflowClient.get_metric_history`) as
the oracle; and a server that goes away."""

from __future__ import annotations

import contextlib
import math
import shutil
import uuid
from pathlib import Path

import hydraflow
import mlflow
import pytest
from hydraflow.errors import HydraflowError
from hydraflow.tracking import histories
from mlflow.entities import Metric

from tests.services import (
    Daemons,
    TrackingServer,
    private_dir,
    start_mlflow_server,
    tracking_server,
)

pytestmark = pytest.mark.slow  # real services

__all__ = ["tracking_server"]  # the fixture this module uses


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's cache folder, where the server's histories are kept."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def expected(client: mlflow.MlflowClient, experiment: str, current: str, step: int) -> list[str]:
    """MLflow's reading: each completed run's last value logged at the step."""
    values = []
    for run in client.search_runs([experiment], "attributes.status = 'FINISHED'", max_results=1000):
        if run.info.run_id == current or "hydraflow.stopped" in run.data.tags:
            continue
        points = client.get_metric_history(run.info.run_id, "loss")
        values += [p.value for p in points if p.step == step][-1:]
    return sorted(map(repr, values))


class Counted(histories.ClientHistories):
    """Small pages, so that a few runs take several bulk requests, halved
    ones and single runs'; counts the runs fetched."""

    BULK_RUNS = 7
    BULK_POINTS = 40

    def __init__(self, *args: str | mlflow.MlflowClient) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.fetched: list[str] = []

    def fetch(self, metric: str, runs: list[str]):  # type: ignore[no-untyped-def]
        self.fetched += runs
        return super().fetch(metric, runs)


def test_the_rule_reads_a_servers_runs_as_mlflow_does(tracking_server: TrackingServer) -> None:
    client = mlflow.MlflowClient(tracking_server.uri)
    experiment = client.create_experiment(f"histories-{uuid.uuid4().hex[:8]}")
    current = client.create_run(experiment).info.run_id

    def new_run(values: dict[int, float], status: str = "FINISHED", **tags: str) -> str:
        run_id = client.create_run(experiment, tags=tags).info.run_id
        if values:
            metrics = [Metric("loss", v, 1_000 + s, s) for s, v in values.items()]
            client.log_batch(run_id, metrics=metrics)
        client.set_terminated(run_id, status)
        return run_id

    twice = new_run({0: 2.0, 1: 1.0})
    client.log_metric(twice, "loss", 0.75, step=1)  # the later value counts
    new_run({0: float("nan"), 1: 3.0})
    new_run({})  # completed, without the metric
    new_run({0: 0.1, 1: 0.1}, **{"hydraflow.stopped": "1"})
    new_run({0: 9.0}, status="RUNNING")
    new_run({s: 100.0 + s for s in range(60)})  # more points than a bulk response holds
    for index in range(30):
        new_run({s: (index + 1) / (s + 1) for s in range(5)})

    first = Counted(client, experiment, current)
    for step in (0, 1, 4, 59, 60):
        assert sorted(map(repr, first.at_step("loss", step))) == expected(
            client, experiment, current, step
        )
    assert len(first.fetched) == 34  # each completed run once
    first.close()

    later = Counted(client, experiment, current)  # a later process: from the cache
    assert sorted(map(repr, later.at_step("loss", 1))) == expected(client, experiment, current, 1)
    assert later.fetched == []
    assert later.full_search is not None  # every page, in a thread of its own
    later.full_search[0].join()

    added = new_run({0: 0.5, 1: 0.5})
    later.checked_at = -math.inf  # a second later: a search for the runs ended since
    assert sorted(map(repr, later.at_step("loss", 1))) == expected(client, experiment, current, 1)
    assert later.fetched == [added]
    client.delete_run(added)
    later.checked_at = later.searched_at = -math.inf  # a minute later: every page again
    later.at_step("loss", 1)
    assert later.full_search is not None
    later.full_search[0].join()
    assert sorted(map(repr, later.at_step("loss", 1))) == expected(client, experiment, current, 1)


def test_a_server_gone_mid_sweep_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    daemons = Daemons()
    root = private_dir("hydraflow-mlflow-")
    try:
        server = start_mlflow_server(daemons, f"sqlite:///{root / 'mlflow.db'}", root)
        client = mlflow.MlflowClient(server.uri)
        experiment = client.create_experiment("gone")
        current = client.create_run(experiment).info.run_id
        done = client.create_run(experiment).info.run_id
        client.log_metric(done, "loss", 1.0, step=0)
        client.set_terminated(done)
        read = histories.ClientHistories(client, experiment, current)
        assert read.at_step("loss", 0) == [1.0]
        mlflow.set_tracking_uri(server.uri)
        mlflow.start_run(run_id=current)
        daemons.stop()
        read.checked_at = -math.inf
        with pytest.raises(HydraflowError) as reading:
            read.at_step("loss", 0)
        with pytest.raises(HydraflowError) as logging:
            hydraflow.report("loss", 2.0, 1)
    finally:
        daemons.stop()
        with contextlib.suppress(Exception):
            mlflow.end_run()
        mlflow.set_tracking_uri(None)
        shutil.rmtree(root, ignore_errors=True)
    for raised, start in (
        (reading, "early stopping could not read the completed runs from the tracking server"),
        (logging, "report could not log 'loss' to the tracking server"),
    ):
        message = str(raised.value)
        assert "\n" not in message and server.uri in message, message
        assert message.startswith(start) and message.endswith("connection refused"), message
