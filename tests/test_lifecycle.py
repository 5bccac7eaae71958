"""The run lifecycle in-process, on a real temporary SQLite store: claims,
owners, ending a run whatever happens. Fast: no Hydra process per case."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from hydraflow import store
from hydraflow.mlflow_schema import OWNER_TAG
from hydraflow.tracking import lifecycle
from hydraflow.tracking.lifecycle import JobContext, TrackingOptions, claim, tracked_run
from hydraflow.tracking.owner import Owner, process_start

CONFIG = {"lr": 0.1, "model": {"depth": 3}}


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A launch directory with its own store; MLflow's global state reset after."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    store._opened.clear()
    try:
        yield tmp_path
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(None)
        store._opened.clear()


def context(folder: Path, *overrides: str) -> JobContext:
    return JobContext(experiment="lifecycle", launch_dir=folder, overrides=list(overrides))


def take(
    folder: Path, options: TrackingOptions | None = None, config: dict[str, object] = CONFIG
) -> lifecycle.Claim:
    from hydraflow.tracking.configs import to_record

    config_yaml, container = to_record(config)
    return claim(context(folder, "lr=0.1"), config_yaml, container, options or TrackingOptions())


def status(folder: Path, run_id: str) -> str:
    client = mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    return str(client.get_run(run_id).info.status)


def finish(claimed: lifecycle.Claim, folder: Path) -> None:
    with tracked_run(claimed, context(folder, "lr=0.1"), CONFIG):
        pass


def test_a_new_config_is_created_then_skipped_once_finished(folder: Path) -> None:
    first = take(folder)
    assert first.action == "new"
    finish(first, folder)
    again = take(folder)
    assert (again.action, again.run_id) == ("skip", first.run_id)


def test_a_failed_run_is_resumed_under_its_id_and_counts_attempts(folder: Path) -> None:
    import hydraflow

    first = take(folder)
    with pytest.raises(RuntimeError), tracked_run(first, context(folder), CONFIG):
        raise RuntimeError("boom")
    assert status(folder, str(first.run_id)) == "FAILED"
    second = take(folder)
    assert (second.action, second.run_id) == ("resume", first.run_id)
    with tracked_run(second, context(folder), CONFIG) as run:
        assert hydraflow.is_resumed(run)
    assert status(folder, str(first.run_id)) == "FINISHED"


def test_a_running_run_of_a_live_process_is_not_taken_over(folder: Path) -> None:
    first = take(folder)
    with sleeper() as other:
        pretend_owner(folder, str(first.run_id), other)
        assert take(folder).action == "busy"
    # The owner is gone now: its run is resumed under the same id.
    resumed = take(folder)
    assert (resumed.action, resumed.run_id) == ("resume", first.run_id)
    finish(resumed, folder)


def test_a_running_run_without_an_owner_record_is_resumed(folder: Path) -> None:
    first = take(folder)
    client = mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    client.delete_tag(str(first.run_id), OWNER_TAG)
    assert take(folder).action == "resume"


def test_a_reused_pid_is_not_mistaken_for_the_owner() -> None:
    me = Owner.me()
    assert me.is_alive(None, time.time())
    with sleeper() as other:  # alive, and started seconds after this process
        impostor = Owner(me.host, other.pid, me.started)
        assert process_start(other.pid) != me.started
        assert not impostor.is_alive(None, time.time())


def test_an_owner_is_alive_while_its_process_lives_and_dead_once_it_ends() -> None:
    with sleeper() as other:
        owner = Owner(Owner.me().host, other.pid, process_start(other.pid))
        assert owner.started != ""
        assert owner.is_alive(None, time.time())
        other.kill()
        deadline = time.monotonic() + 10
        while process_start(other.pid) and time.monotonic() < deadline:
            time.sleep(0.05)  # killed but not yet reaped: a zombie, already dead
        assert not owner.is_alive(None, time.time())
        other.wait()
        assert not owner.is_alive(None, time.time())


def test_a_recorded_creation_time_that_differs_means_another_process() -> None:
    with sleeper() as other:
        started = float(process_start(other.pid))
        for recorded in (started - 1, started + 1):
            reused = Owner(Owner.me().host, other.pid, f"{recorded:.2f}")
            assert not reused.is_alive(None, time.time())


def test_an_owner_recorded_in_clock_ticks_by_an_earlier_version_is_judged_by_its_pid() -> None:
    with sleeper() as other:
        legacy = Owner(Owner.me().host, other.pid, "123456")
        assert legacy.is_alive(None, time.time())
        other.kill()
        other.wait()
        assert not legacy.is_alive(None, time.time())


def test_the_status_is_written_although_the_store_is_busy_at_the_end(folder: Path) -> None:
    claimed = take(folder)
    with tracked_run(claimed, context(folder), CONFIG):
        release = hold_write_lock(folder / "mlflow.db", seconds=1.5)
    release.join()
    assert status(folder, str(claimed.run_id)) == "FINISHED"
    assert mlflow.active_run() is None


def test_a_log_that_cannot_be_uploaded_neither_loses_the_status_nor_the_error(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    claimed = take(folder)
    log_file = folder / "job.log"
    log_file.write_text("the job's log\n")
    job = JobContext(experiment="lifecycle", launch_dir=folder, log_file=log_file)
    with pytest.raises(ValueError, match="the app's own error"), tracked_run(claimed, job, CONFIG):
        break_artifacts(folder)
        raise ValueError("the app's own error")
    assert status(folder, str(claimed.run_id)) == "FAILED"
    assert "was not uploaded" in caplog.text


def test_concurrent_claims_of_one_config_create_one_run(folder: Path) -> None:
    take(folder)  # the store and the experiment exist; the race is on the run
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        actions = pool.map(claim_in_process, [str(folder)] * 8)
    assert sorted(actions).count("new") == 1
    assert set(actions) == {"new", "busy"}


def claim_in_process(folder: str) -> str:
    os.chdir(folder)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    from hydraflow.tracking.configs import to_record

    config_yaml, container = to_record({"lr": 0.2})
    # The pool's processes outlive their tasks, so a winner stays a live owner.
    return claim(context(Path(folder), "lr=0.2"), config_yaml, container, TrackingOptions()).action


# Helpers


@contextlib.contextmanager
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):  # a test may have ended it
            os.killpg(process.pid, 9)
        process.wait()


def pretend_owner(folder: Path, run_id: str, process: subprocess.Popen[bytes]) -> None:
    owner = Owner(Owner.me().host, process.pid, process_start(process.pid))
    client = mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    client.set_tag(run_id, OWNER_TAG, owner.to_tag())


def hold_write_lock(path: Path, seconds: float) -> threading.Thread:
    """Another writer holds the database for a while, as a busy sweep does."""
    connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")

    def release() -> None:
        time.sleep(seconds)
        connection.execute("COMMIT")
        connection.close()

    thread = threading.Thread(target=release)
    thread.start()
    return thread


def break_artifacts(folder: Path) -> None:
    """Replaces the artifact root with a file, so every upload fails."""
    import shutil

    shutil.rmtree(folder / "mlruns", ignore_errors=True)
    (folder / "mlruns").write_text("not a directory")
