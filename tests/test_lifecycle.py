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
from hydraflow.mlflow_schema import (
    DIGEST_TAG,
    OWNER_TAG,
    all_finished_in_sqlite,
    find_finished_in_sqlite,
)
from hydraflow.tracking import lifecycle
from hydraflow.tracking.lifecycle import JobContext, TrackingOptions, claim, tracked_run
from hydraflow.tracking.owner import Owner, process_start

CONFIG = {"lr": 0.1, "model": {"depth": 3}}


def context(launch_folder: Path, *overrides: str) -> JobContext:
    return JobContext(experiment="lifecycle", launch_dir=launch_folder, overrides=list(overrides))


def take(
    launch_folder: Path, options: TrackingOptions | None = None, config: dict[str, object] = CONFIG
) -> lifecycle.Claim:
    from hydraflow.tracking.configs import to_record

    config_yaml, container = to_record(config)
    return claim(
        context(launch_folder, "lr=0.1"), config_yaml, container, options or TrackingOptions()
    )


def status(launch_folder: Path, run_id: str) -> str:
    client = mlflow.MlflowClient(f"sqlite:///{launch_folder / 'mlflow.db'}")
    return str(client.get_run(run_id).info.status)


def finish(claimed: lifecycle.Claim, launch_folder: Path) -> None:
    with tracked_run(claimed, context(launch_folder, "lr=0.1"), CONFIG):
        pass


def test_a_new_config_is_created_then_skipped_once_finished(launch_folder: Path) -> None:
    first = take(launch_folder)
    assert first.action == "new"
    finish(first, launch_folder)
    again = take(launch_folder)
    assert (again.action, again.run_id) == ("skip", first.run_id)


def test_a_failed_run_is_resumed_under_its_id_and_counts_attempts(launch_folder: Path) -> None:
    import hydraflow

    first = take(launch_folder)
    with pytest.raises(RuntimeError), tracked_run(first, context(launch_folder), CONFIG):
        raise RuntimeError("boom")
    assert status(launch_folder, str(first.run_id)) == "FAILED"
    second = take(launch_folder)
    assert (second.action, second.run_id) == ("resume", first.run_id)
    with tracked_run(second, context(launch_folder), CONFIG) as run:
        assert hydraflow.is_resumed(run)
    assert status(launch_folder, str(first.run_id)) == "FINISHED"


def test_the_newest_attempt_decides_whether_a_config_is_finished(launch_folder: Path) -> None:
    """A FINISHED run, then a forced new run of the same config (`--rerun`)
    interrupted: the config is unfinished, for the claim, the app's fast
    skip and the CLI's proof alike, and it is the KILLED run that resumes."""
    store = launch_folder / "mlflow.db"
    old = take(launch_folder)
    finish(old, launch_folder)
    forced = take(launch_folder, TrackingOptions(force_new_run=True))
    with pytest.raises(KeyboardInterrupt), tracked_run(forced, context(launch_folder), CONFIG):
        raise KeyboardInterrupt
    assert status(launch_folder, str(forced.run_id)) == "KILLED"
    assert find_finished_in_sqlite(store, "lifecycle", forced.digest) is None
    assert not all_finished_in_sqlite(store, [str(old.run_id)])

    resumed = take(launch_folder)
    assert (resumed.action, resumed.run_id) == ("resume", forced.run_id)
    finish(resumed, launch_folder)
    found = find_finished_in_sqlite(store, "lifecycle", forced.digest)
    assert found is not None and found.run_id == forced.run_id
    assert (take(launch_folder).action, take(launch_folder).run_id) == ("skip", forced.run_id)
    assert all_finished_in_sqlite(store, [str(forced.run_id)])
    assert not all_finished_in_sqlite(store, [str(old.run_id)])


def test_attempts_started_in_one_millisecond_are_ordered_by_id(launch_folder: Path) -> None:
    """MLflow's search order (start time, then id) is the SQL lookups' order too."""
    store = launch_folder / "mlflow.db"
    first = take(launch_folder)
    finish(first, launch_folder)
    second = take(launch_folder, TrackingOptions(force_new_run=True))
    finish(second, launch_folder)
    with contextlib.closing(sqlite3.connect(store)) as db, db:
        db.execute("UPDATE runs SET start_time = 1000")
    newest = max(str(first.run_id), str(second.run_id))
    older = min(str(first.run_id), str(second.run_id))
    client = mlflow.MlflowClient(f"sqlite:///{store}")
    client.set_terminated(older, "FAILED")
    assert take(launch_folder).run_id == newest
    found = find_finished_in_sqlite(store, "lifecycle", first.digest)
    assert found is not None and found.run_id == newest
    client.set_terminated(older, "FINISHED")
    client.set_terminated(newest, "KILLED")
    assert find_finished_in_sqlite(store, "lifecycle", first.digest) is None
    assert not all_finished_in_sqlite(store, [older])
    claimed = take(launch_folder)
    assert (claimed.action, claimed.run_id) == ("resume", newest)
    finish(claimed, launch_folder)


def test_the_newest_attempt_decides_past_a_hundred_older_ones(launch_folder: Path) -> None:
    """The lookup reads a config's newest 100 runs, not its oldest: after a
    hundred finished attempts, an interrupted newer one is resumed."""
    first = take(launch_folder)
    finish(first, launch_folder)
    client = mlflow.MlflowClient(f"sqlite:///{launch_folder / 'mlflow.db'}")
    experiment_id = client.get_run(str(first.run_id)).info.experiment_id
    for _ in range(100):
        older = client.create_run(experiment_id, tags={DIGEST_TAG: first.digest})
        client.set_terminated(older.info.run_id, "FINISHED")
    newest = take(launch_folder, TrackingOptions(force_new_run=True))
    with pytest.raises(KeyboardInterrupt), tracked_run(newest, context(launch_folder), CONFIG):
        raise KeyboardInterrupt
    claimed = take(launch_folder)
    assert (claimed.action, claimed.run_id) == ("resume", newest.run_id)


def test_a_running_run_of_a_live_process_is_not_taken_over(launch_folder: Path) -> None:
    first = take(launch_folder)
    with sleeper() as other:
        pretend_owner(launch_folder, str(first.run_id), other)
        assert take(launch_folder).action == "busy"
    # The owner is gone now: its run is resumed under the same id.
    resumed = take(launch_folder)
    assert (resumed.action, resumed.run_id) == ("resume", first.run_id)
    finish(resumed, launch_folder)


def test_a_running_run_without_an_owner_record_is_resumed(launch_folder: Path) -> None:
    first = take(launch_folder)
    client = mlflow.MlflowClient(f"sqlite:///{launch_folder / 'mlflow.db'}")
    client.delete_tag(str(first.run_id), OWNER_TAG)
    assert take(launch_folder).action == "resume"


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


def test_the_status_is_written_although_the_store_is_busy_at_the_end(launch_folder: Path) -> None:
    claimed = take(launch_folder)
    with tracked_run(claimed, context(launch_folder), CONFIG):
        release = hold_write_lock(launch_folder / "mlflow.db", seconds=1.5)
    release.join()
    assert status(launch_folder, str(claimed.run_id)) == "FINISHED"
    assert mlflow.active_run() is None


def test_a_log_that_cannot_be_uploaded_neither_loses_the_status_nor_the_error(
    launch_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    claimed = take(launch_folder)
    log_file = launch_folder / "job.log"
    log_file.write_text("the job's log\n")
    job = JobContext(experiment="lifecycle", launch_dir=launch_folder, log_file=log_file)
    with pytest.raises(ValueError, match="the app's own error"), tracked_run(claimed, job, CONFIG):
        break_artifacts(launch_folder)
        raise ValueError("the app's own error")
    assert status(launch_folder, str(claimed.run_id)) == "FAILED"
    assert "was not uploaded" in caplog.text


def test_concurrent_claims_of_one_config_create_one_run(launch_folder: Path) -> None:
    take(launch_folder)  # the store and the experiment exist; the race is on the run
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        actions = pool.map(claim_in_process, [str(launch_folder)] * 8)
    assert sorted(actions).count("new") == 1
    assert set(actions) == {"new", "busy"}


def claim_in_process(launch_folder: str) -> str:
    os.chdir(launch_folder)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    from hydraflow.tracking.configs import to_record

    config_yaml, container = to_record({"lr": 0.2})
    # The pool's processes outlive their tasks, so a winner stays a live owner.
    return claim(
        context(Path(launch_folder), "lr=0.2"), config_yaml, container, TrackingOptions()
    ).action


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


def pretend_owner(launch_folder: Path, run_id: str, process: subprocess.Popen[bytes]) -> None:
    owner = Owner(Owner.me().host, process.pid, process_start(process.pid))
    client = mlflow.MlflowClient(f"sqlite:///{launch_folder / 'mlflow.db'}")
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


def break_artifacts(launch_folder: Path) -> None:
    """Replaces the artifact root with a file, so every upload fails."""
    import shutil

    shutil.rmtree(launch_folder / "mlruns", ignore_errors=True)
    (launch_folder / "mlruns").write_text("not a directory")
