"""What `@hydraflow.main` stores, as MLflow's own client reads it back, is
pinned by a golden listing made by the bookkeeping before it was made
faster: new runs, a failed run resumed, skipped runs, and an app with
secrets. Only what differs between two identical sessions is normalised
(run ids, times, paths, the owner's pid).

To write the listing again (after a deliberate change of what is stored):
HYDRAFLOW_WRITE_GOLDEN=1 pytest tests/test_stored_record.py
"""

from __future__ import annotations

import json
import os
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

import hydraflow
import mlflow
import pytest

from tests.conftest import run_in_own_group

GOLDEN = Path(__file__).parent / "golden" / "stored_record.json"

APP = """
import logging, os
from dataclasses import dataclass, field

import mlflow
import hydraflow

log = logging.getLogger(__name__)


@dataclass
class Db:
    host: str = "localhost"
    password: str = "hunter2"


@dataclass
class Config:
    a: int = 1
    b: str = "x"
    ratio: float = 0.5
    items: list = field(default_factory=lambda: [1, 2])
    db: Db = field(default_factory=Db)


@hydraflow.main(Config, {options})
def app(cfg):
    log.info("job a=%s b=%s password=%s", cfg.a, cfg.b, cfg.db.password)
    for step in range(3):
        hydraflow.report("loss", cfg.a / (step + 1), step)
    mlflow.log_metric("other", 2.5)
    mlflow.log_text("made by the app", "notes/made.txt")
    if os.environ.get("APP_FAIL") == "1":
        raise RuntimeError("asked to fail")
    return cfg.a * 1.5


if __name__ == "__main__":
    app()
"""


def run_app(folder: Path, script: str, *args: str, fail: bool = False) -> None:
    drop = ("MLFLOW_TRACKING_URI", "HYDRAFLOW_EVENTS", "HYDRAFLOW_INPUTS")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    if fail:
        env["APP_FAIL"] = "1"
    result = run_in_own_group([sys.executable, script, *args], folder, env, 300)
    assert (result.returncode != 0) == fail, result.stderr


def make_runs(folder: Path) -> None:
    (folder / "app.py").write_text(textwrap.dedent(APP.format(options="")))
    secret = APP.format(options='secrets=["db.password"]')
    (folder / "secret_app.py").write_text(textwrap.dedent(secret))
    run_app(folder, "app.py", "-m", "a=1,2", "b=y")
    run_app(folder, "app.py", "a=3", fail=True)
    run_app(folder, "app.py", "a=3")  # resumed
    run_app(folder, "app.py", "-m", "a=1,2", "b=y")  # skipped
    run_app(folder, "secret_app.py", "-m", "a=4,5", "db.password=swordfish")
    run_app(folder, "secret_app.py", "a=6", fail=True)
    run_app(folder, "secret_app.py", "a=6")  # resumed


def listing(folder: Path) -> dict[str, Any]:
    """Every run of both experiments as MLflow's client reads it."""
    client = mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    found: dict[str, Any] = {}
    for name in ("app", "secret_app"):
        experiment = client.get_experiment_by_name(name)
        assert experiment is not None
        runs = client.search_runs([experiment.experiment_id], max_results=1000)
        ids = {run.info.run_id: f"<run {index}>" for index, run in enumerate(runs)}
        found[name] = sorted(
            (describe(client, run, folder, ids) for run in runs), key=lambda r: r["name"]
        )
    return found


def describe(client: mlflow.MlflowClient, run: Any, folder: Path, ids: dict[str, str]) -> Any:
    run_id = run.info.run_id
    artifact_dir = Path(run.info.artifact_uri.removeprefix("file://"))
    return {
        "name": run.info.run_name,
        "status": run.info.status,
        "lifecycle_stage": run.info.lifecycle_stage,
        "ended": run.info.end_time is not None,
        "params": run.data.params,
        "tags": {key: tag_value(key, value) for key, value in sorted(run.data.tags.items())},
        "metrics": {
            key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
            for key in sorted(run.data.metrics)
        },
        "artifacts": {
            path: normalised(read_artifact(artifact_dir / path), folder, ids)
            for path in artifact_paths(client, run_id)
        },
    }


VOLATILE_TAGS = ("hydraflow.owner", "hydraflow.heartbeat", "mlflow.user")


def tag_value(key: str, value: str) -> str:
    return f"<{key}>" if key in VOLATILE_TAGS else value


def artifact_paths(client: mlflow.MlflowClient, run_id: str, path: str | None = None) -> list[str]:
    paths = []
    for item in client.list_artifacts(run_id, path):
        paths += artifact_paths(client, run_id, item.path) if item.is_dir else [item.path]
    return sorted(paths)


def read_artifact(path: Path) -> str:
    if path.name == "hydra.yaml":  # paths, times and versions: its overrides alone
        text = path.read_text()
        return text[text.index("  overrides:") : text.index("  job:")]
    return path.read_text()


TIMESTAMP = re.compile(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\]")
LINE_NUMBER = re.compile(r"line \d+")


# A traceback's frames inside hydraflow: its own code, not what it records.
HYDRAFLOW_FRAME = re.compile(
    rf'  File "{re.escape(str(Path(hydraflow.__file__).parent))}/.*\n(    .*\n)*'
)


def normalised(text: str, folder: Path, ids: dict[str, str]) -> str:
    text = HYDRAFLOW_FRAME.sub("", TIMESTAMP.sub("[<time>]", text))
    text = text.replace(str(folder), "<folder>")
    for run_id, shown in ids.items():
        text = text.replace(run_id, shown)
    return LINE_NUMBER.sub("line <n>", text)


@pytest.mark.slow
def test_the_stored_record_is_what_it_was(tmp_path: Path) -> None:
    make_runs(tmp_path)
    found = json.loads(json.dumps(listing(tmp_path)))  # tuples as JSON reads them
    if os.environ.get("HYDRAFLOW_WRITE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
    assert found == json.loads(GOLDEN.read_text())


def test_two_keys_that_make_one_param_name_record_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A literal `a.b` beside `a: {b: 1}` is a legal config: MLflow refused
    the batch of params with both, and every run ended FAILED."""
    from hydraflow import store

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    store.forget_opened()
    config = {"a": {"b": 1}, "a.b": 2, "lr": 0.1}
    try:
        with hydraflow.start_run(config, experiment_name="dotted") as run:
            run_id = run.info.run_id
    finally:
        mlflow.set_tracking_uri(None)
        store.forget_opened()
    stored = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(run_id)
    assert stored.info.status == "FINISHED"
    assert stored.data.params == {"a.b": "1", "lr": "0.1"}
    assert json.loads(stored.data.tags["hydraflow.config"]) == config
