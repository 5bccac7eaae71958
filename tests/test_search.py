"""Adaptive sweeps end to end through `hydraflow run`: real Hydra sweepers
(hydra-optuna-sweeper, seeded TPE; Hydra's basic sweeper), a real SQLite
store. The oracle for what a sweeper receives is the same app under plain
`@hydra.main`; a Hydra callback (tests/apps/search/returns.py) writes each
job's return value as the sweeper gets it."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import hydraflow
import pytest
import yaml
from hydraflow.errors import NoRunsWarning

from tests.conftest import HYDRAFLOW, run_cli
from tests.services import TrackingServer, tracking_server

__all__ = ["tracking_server"]  # the fixture a test uses

APPS = Path(__file__).parent / "apps" / "search"
PYTHON = sys.executable
SPACE = "x=interval(-5.0,5.0) y=choice(1,2,3)"
STUDY = (
    "hydra/sweeper=optuna hydra.sweeper.sampler.seed=7 hydra.sweeper.n_trials=4 "
    "hydra.sweeper.n_jobs=2 +hydra.callbacks.returns._target_=returns.Record"
)
JOBS = f"""
jobs:
  search:
    run: {PYTHON} search_app.py
    add: {STUDY}
    sets:
      - all: {SPACE}
  parallel:
    run: {PYTHON} search_app.py
    add: {STUDY} hydra/launcher=joblib hydra.launcher.n_jobs=2
    sets:
      - all: {SPACE}
  grid:
    run: {PYTHON} search_app.py
    add: +hydra.callbacks.returns._target_=returns.Record
    sets:
      - all: x=1.5,4.0 y=2
  pareto:
    run: {PYTHON} search_app.py
    add: {STUDY} objectives=2 hydra.sweeper.direction=[minimize,minimize]
    sets:
      - all: {SPACE}
  slow:
    run: {PYTHON} search_app.py
    add: {STUDY} sleep=1.5
    sets:
      - all: {SPACE}
  stopping:
    run: {PYTHON} stopping_app.py
    sets:
      - all: rate=2,3,1,4,5
  maximising:
    run: {PYTHON} stopping_app.py
    stopping: {{direction: max, warmup_steps: 1, min_runs: 2}}
    sets:
      - all: rate=2,3,1,4,5
  unstopped:
    run: {PYTHON} stopping_app.py
    stopping: false
    sets:
      - all: rate=2,3,1,4,5
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name in ("search_app.py", "returns.py", "stopping_app.py"):
        shutil.copy(APPS / name, tmp_path)
    (tmp_path / "hydraflow.yaml").write_text(textwrap.dedent(JOBS))
    return tmp_path


def returns(folder: Path) -> list[dict[str, object]]:
    """What the sweeper received, job by job, and starts the record anew."""
    path = folder / "returns.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    path.unlink()
    return lines


def oracle(folder: Path, *args: str) -> list[dict[str, object]]:
    """The same study under plain `@hydra.main`."""
    env = {**os.environ, "ORACLE": "1"}
    command = [sys.executable, "search_app.py", "-m", *args, "hydra.sweep.dir=oracle"]
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return returns(folder)


def summary(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return done.stderr.strip().splitlines()[-1]


def best_value(folder: Path) -> float:
    (results,) = folder.glob("multirun/*/optimization_results.yaml")
    value: float = yaml.safe_load(results.read_text())["best_value"]
    shutil.rmtree(folder / "multirun")
    return value


def load(folder: Path, job: str, status: str | None = "FINISHED") -> hydraflow.Runs[object]:
    return hydraflow.load(job, tracking_uri=folder / "mlflow.db", status=status)


def test_a_study_records_replays_and_extends_as_hydra_main_sees_it(project: Path) -> None:
    expected = oracle(project, *STUDY.split(), *SPACE.split())
    assert len(expected) == 4 and {line["type"] for line in expected} == {"float"}

    # What `show` says is what the real sweeper makes.
    assert run_cli("show", "search", cwd=project).stdout.endswith(
        "# 1 command, 4 runs (n_trials)\n"
    )
    assert "1 command: 1 finished; runs: 4 finished;" in summary(
        run_cli("run", "search", cwd=project)
    )
    assert returns(project) == expected
    frame = load(project, "search").frame
    assert frame["value"].to_list() == [float(str(line["repr"])) for line in expected]
    assert best_value(project) == frame["value"].min()

    # Again: every trial replays from the store, the sweeper sees the same.
    assert "4 skipped" in summary(run_cli("run", "search", cwd=project))
    assert returns(project) == expected
    assert best_value(project) == frame["value"].min()

    # Two more trials: the four finished replay, exactly two run.
    done = run_cli("run", "search", "hydra.sweeper.n_trials=6", cwd=project)
    assert "runs: 2 finished, 4 skipped;" in summary(done)
    assert returns(project)[:4] == expected
    extended = load(project, "search").frame
    assert len(extended) == 6
    assert best_value(project) == extended["value"].min()


def test_a_users_optuna_storage_still_works_with_replay(project: Path) -> None:
    """Optuna keeps its study in the user's storage; run again, the study
    loads it and asks for 4 more trials: its seeded sampler proposes the
    first 4 again, and they replay from the store. Trials and runs agree."""
    storage = stamped_optuna_storage(project / "optuna.db")
    overrides = (f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=kept")
    assert "runs: 4 finished;" in summary(run_cli("run", "search", *overrides, cwd=project))
    assert "runs: 4 skipped;" in summary(run_cli("run", "search", *overrides, cwd=project))
    import optuna

    study = optuna.load_study(study_name="kept", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 8
    frame = load(project, "search").frame
    assert len(frame) == 4
    trials = [(t.params["x"], t.params["y"], t.value) for t in study.trials]
    assert trials[:4] == trials[4:] == list(frame.select("x", "y", "value").iter_rows())
    assert study.best_value == frame["value"].min()


def stamped_optuna_storage(path: Path) -> str:
    """A SQLite storage for Optuna 2.10 (what hydra-optuna-sweeper 1.3
    takes). Under SQLAlchemy 2 (MLflow 3's), its RDB storage creates the
    tables but loses the schema's version stamp and fails (`assert version
    is not None`), under `@hydra.main` alike (Optuna issue 4375); the test
    writes the stamp as Optuna means to."""
    import optuna
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from optuna.storages import _rdb

    url = f"sqlite:///{path}"
    try:
        optuna.storages.RDBStorage(url)
    except AssertionError:
        pass
    else:
        return url  # a SQLAlchemy that keeps the stamp
    gc.collect()  # the failed storage's connection, still in its transaction
    config = Config()
    config.set_main_option("script_location", str(Path(_rdb.__file__).parent / "alembic"))
    head = ScriptDirectory.from_config(config).get_current_head()
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("INSERT INTO alembic_version VALUES (?)", (head,))
    return url


def test_parallel_trials_and_the_basic_sweeper_return_what_hydra_main_returns(
    project: Path,
) -> None:
    parallel = (*STUDY.split(), "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    expected = oracle(project, *parallel, *SPACE.split())
    assert "4 finished" in summary(run_cli("run", "parallel", cwd=project))
    # Workers end in any order.
    assert sorted(map(str, returns(project))) == sorted(map(str, expected))
    assert best_value(project) == load(project, "parallel").frame["value"].min()

    grid_expected = oracle(project, "x=1.5,4.0", "y=2", *STUDY.split()[-1:])
    assert "2 finished" in summary(run_cli("run", "grid", cwd=project))
    assert returns(project) == grid_expected
    assert [line["repr"] for line in grid_expected] == ["2.25", "6.0"]


def test_two_objectives_are_a_tuple_and_two_columns(project: Path) -> None:
    assert "4 finished" in summary(run_cli("run", "pareto", cwd=project))
    first = returns(project)
    assert {line["type"] for line in first} == {"tuple"}
    frame = load(project, "pareto").frame
    assert [f"({a!r}, {b!r})" for a, b in frame.select("value.0", "value.1").iter_rows()] == [
        line["repr"] for line in first
    ]
    assert "4 skipped" in summary(run_cli("run", "pareto", cwd=project))
    assert returns(project) == first


@pytest.fixture
def background() -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()


def test_an_interrupted_study_resumes_its_trial_under_its_run_id(
    project: Path, background: list[subprocess.Popen[str]]
) -> None:
    process = subprocess.Popen(
        [HYDRAFLOW, "run", "slow"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    background.append(process)
    deadline = time.monotonic() + 240
    while not (project / "returns.jsonl").exists() or not running(project):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    before = load(project, "slow", status=None).frame
    killed = before.filter(status="KILLED")["run_id"].to_list()
    assert len(killed) == 1

    done = run_cli("run", "slow", cwd=project)
    assert "1 resumed" in summary(done)
    after = load(project, "slow").frame
    assert len(after) == 4 and killed[0] in after["run_id"].to_list()
    assert best_value(project) == after["value"].min()


def running(folder: Path) -> bool:
    with warnings.catch_warnings():  # polled before the app has made its experiment
        warnings.simplefilter("ignore", NoRunsWarning)
        return bool(len(load(folder, "slow", status="RUNNING")))


def test_worse_runs_of_a_grid_stop_early_and_stay_stopped(project: Path) -> None:
    done = run_cli("run", "stopping", cwd=project)
    assert "5 runs: 3 finished, 2 stopped" in summary(done)
    frame = load(project, "stopping").frame.sort("rate")
    assert frame["stopped"].to_list() == [False, False, False, True, True]
    # A stopped run returns its last value: the loss where it stopped (step 1).
    assert frame["value"].to_list() == [0.25, 0.5, 0.75, 2.0, 2.5]
    history = load(project, "stopping").history("loss")
    steps = history.group_by("run_id").len().join(frame.select("run_id", "rate"), on="run_id")
    assert dict(steps.select("rate", "len").iter_rows()) == {1: 4, 2: 4, 3: 4, 4: 2, 5: 2}

    again = run_cli("run", "stopping", cwd=project)
    assert "5 runs: 5 skipped" in summary(again)


def test_the_jobs_file_rule_wins_over_the_decorators(project: Path) -> None:
    # Maximising, the lowest losses are the worse: rate 1 stops (at step 1,
    # 0.5 against the median 1.25 of rates 2 and 3), rates 4 and 5 do not.
    done = run_cli("run", "maximising", cwd=project)
    assert "5 runs: 4 finished, 1 stopped" in summary(done)
    frame = load(project, "maximising").frame.sort("rate")
    assert frame["stopped"].to_list() == [True, False, False, False, False]
    # `stopping: false`: the decorator's rule is off for this job.
    assert "5 runs: 5 finished" in summary(run_cli("run", "unstopped", cwd=project))
    shown = run_cli("show", "maximising", cwd=project).stdout
    assert "stopping:\n    rule: median\n    direction: max\n    warmup_steps: 1\n" in shown


@pytest.mark.parametrize(
    ("stopping", "message"),
    [
        ("{rule: asha}", "jobs.j.stopping.rule: must be median or none, not 'asha'"),
        ("{direction: up}", "jobs.j.stopping.direction: must be min or max, not 'up'"),
        ("{warmup_steps: -1}", "jobs.j.stopping.warmup_steps: must be a whole number >= 0"),
        ("{min_runs: 0}", "jobs.j.stopping.min_runs: must be a whole number >= 1, not 0"),
        ("{min_runs: 2.5}", "jobs.j.stopping.min_runs: must be a whole number >= 1, not 2.5"),
        ("{warmup: 2}", "jobs.j.stopping.warmup: unknown key 'warmup'; did you mean"),
        ("median", "jobs.j.stopping: must be a mapping (rule, direction, warmup_steps"),
        ("{rule: none, min_runs: 2}", "jobs.j.stopping: rule: none takes no other keys"),
    ],
)
def test_a_bad_stopping_key_is_named(tmp_path: Path, stopping: str, message: str) -> None:
    jobs = f"jobs:\n  j:\n    run: {PYTHON} stopping_app.py\n    stopping: {stopping}\n"
    (tmp_path / "hydraflow.yaml").write_text(jobs)
    done = run_cli("run", "j", cwd=tmp_path)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"Error: hydraflow.yaml: {message}")


def test_a_command_that_chooses_a_sweeper_says_the_sweeper_decides(project: Path) -> None:
    done = run_cli("run", "grid", "hydra/sweeper=optuna", "--dry-run", cwd=project)
    assert done.returncode == 0 and "1 command, runs decided by the sweeper (dry" in done.stderr
    basic = run_cli("run", "grid", "hydra/sweeper=basic", "--dry-run", cwd=project)
    assert basic.returncode == 0 and "1 command, 2 runs" in basic.stderr
    # Optuna runs exactly n_trials, given on the command line: the grid's two
    # values are a search space then, and the sweeper chosen in add wins.
    trials = ("hydra/sweeper=optuna", "hydra.sweeper.n_trials=3")
    done = run_cli("run", "grid", *trials, "--dry-run", cwd=project)
    assert done.returncode == 0 and "1 command, 3 runs (n_trials) (dry" in done.stderr
    listed = run_cli("show", cwd=project).stdout.splitlines()
    assert [line.split(None, 1)[0] for line in listed if "?" in line] == []
    assert any(
        line.startswith("search ") and "1 command  4 runs (n_trials)" in line for line in listed
    )


def test_the_median_rule() -> None:
    rule = hydraflow.MedianStopping("max", warmup_steps=2, min_runs=2)
    assert not rule.should_stop(0.1, 1, [0.5, 0.9])  # warming up
    assert not rule.should_stop(0.1, 2, [0.5, float("nan")])  # one run known
    assert rule.should_stop(0.6, 2, [0.5, 0.9, 0.8]) and not rule.should_stop(
        0.8, 2, [0.5, 0.9, 0.8]
    )
    assert rule.should_stop(float("nan"), 2, [0.5, 0.9])
    assert hydraflow.MedianStopping("min", min_runs=1).should_stop(0.6, 0, [0.5])
    for bad, says in (
        ({"direction": "down"}, "direction must be 'min' or 'max', not 'down'"),
        (
            {"direction": "minimize"},
            "direction must be 'min' or 'max', not 'minimize' (Optuna's word for 'min')",
        ),
        ({"warmup_steps": -1}, "warmup_steps must be a whole number >= 0, not -1"),
        ({"warmup_steps": "2"}, "warmup_steps must be a whole number >= 0, not '2'"),
        ({"min_runs": 0}, "min_runs must be a whole number >= 1, not 0"),
        ({"min_runs": 2.5}, "min_runs must be a whole number >= 1, not 2.5"),
    ):
        with pytest.raises(ValueError, match=re.escape(f"MedianStopping: {says}")):
            hydraflow.MedianStopping(**bad)  # type: ignore[arg-type]


def test_return_values_read_back_exactly() -> None:
    import numpy as np
    from hydraflow.tracking.values import decode, encode

    for value in (0.1, 1 / 3, -0.0, 1e-310, float("inf"), 7, True, "best", None, (0.1, 2.5)):
        assert repr(decode(encode(value))) == repr(value)
    assert repr(decode(encode([1.5, 2.0]))) == "(1.5, 2.0)"
    assert decode(encode(np.float32(0.1))) == float(np.float32(0.1))
    assert decode(encode(float("nan"))) != decode(encode(float("nan")))  # NaN
    assert encode(object()) is None and encode("x" * 9000) is None
    assert decode(encode("x" * 7998)) == "x" * 7998  # the tag's 8,000 characters, quotes and all
    assert decode(encode(list(range(1000)))) == tuple(range(1000))


def test_a_large_returned_array_is_left_out_without_writing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Told from its length: the JSON of 5 million numbers took 2 s and 300 MB."""
    import numpy as np
    from hydraflow.tracking import values

    def written(value: object, **_: object) -> str:
        raise AssertionError(f"wrote out a {type(value).__name__} that cannot fit")

    monkeypatch.setattr(values.json, "dumps", written)
    for large in (
        np.zeros(5_000_000),
        [0] * 4001,
        tuple(range(10_000)),
        dict.fromkeys(range(5000)),
    ):
        assert values.encode(large) is None


def test_the_rule_reads_the_completed_runs_values_as_mlflow_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The values at a step come from the store, then from the files kept
    beside it (in a later process), then from one merged file; each time as
    MLflow's own reading of the completed runs' histories gives them (and
    as the client's way, a tracking server's, gives them)."""
    import mlflow
    from hydraflow.tracking import histories

    path = tmp_path / "mlflow.db"
    client = mlflow.MlflowClient(f"sqlite:///{path}")
    experiment = client.create_experiment("e", artifact_location=str(tmp_path / "art"))
    current = client.create_run(experiment).info.run_id

    def new_run(values: dict[int, float], status: str = "FINISHED", **tags: str) -> str:
        run_id = client.create_run(experiment, tags=tags).info.run_id
        for step, value in values.items():
            client.log_metric(run_id, "loss", value, step=step)
        client.set_terminated(run_id, status)
        return run_id

    def expected(step: int) -> list[str]:
        """MLflow's reading: the completed runs' last value logged at the step."""
        values = []
        for run in client.search_runs([experiment], "attributes.status = 'FINISHED'"):
            if run.info.run_id == current or "hydraflow.stopped" in run.data.tags:
                continue
            points = [p for p in client.get_metric_history(run.info.run_id, "loss")]
            at_step = [p.value for p in points if p.step == step]
            values += at_step[-1:]
        return sorted(map(repr, values))

    def read(step: int) -> tuple[list[str], int]:
        """The values by a new process's histories, and how many files it found."""
        found = histories.SqliteHistories(path, experiment, current)
        values = sorted(map(repr, found.at_step("loss", step)))
        stored = len(found.segments["loss"].stored)
        found.close()
        return values, stored

    new_run({0: 1.0, 1: 0.5, 2: 0.25})
    twice = new_run({0: 2.0, 1: 1.0})
    client.log_metric(twice, "loss", 0.75, step=1)  # the later value counts
    new_run({0: float("nan"), 1: 3.0})
    new_run({})  # completed, without the metric
    new_run({0: 0.1, 1: 0.1}, **{"hydraflow.stopped": "1"})
    new_run({0: 9.0}, status="RUNNING")
    for step in (0, 1, 2, 3):
        assert read(step)[0] == expected(step)
        served = histories.ClientHistories(client, experiment, current)  # a server's way
        assert sorted(map(repr, served.at_step("loss", step))) == expected(step)
    assert read(1) == (expected(1), 1)  # from the file the first read wrote

    deleted = new_run({0: 4.0, 1: 4.0})
    read(0)
    client.delete_run(deleted)
    new_run({0: 5.0, 1: 0.2})
    monkeypatch.setattr(histories, "MAX_SEGMENTS", 2)
    assert read(1) == (expected(1), 2)  # the files of two processes, then merged
    assert read(1) == (expected(1), 1) and read(0)[0] == expected(0)


@pytest.mark.slow
def test_early_stopping_against_a_tracking_server(
    tracking_server: TrackingServer, tmp_path: Path
) -> None:
    """The rule reads the other runs' histories through MLflow's client."""
    import uuid

    shutil.copy(APPS / "stopping_app.py", tmp_path)
    name = f"stopping-{uuid.uuid4().hex[:8]}"  # the server lives for the session
    jobs = f"jobs:\n  grid:\n    run: {PYTHON} stopping_app.py\n    name: {name}\n"
    (tmp_path / "hydraflow.yaml").write_text(jobs + "    sets:\n      - all: rate=2,3,1,4,5\n")
    env = {k: v for k, v in tracking_server.env.items() if k != "NO_COLOR"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # where the histories are kept

    def run() -> str:
        command = [HYDRAFLOW, "run", "grid"]
        return summary(
            subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
        )

    assert "5 runs: 3 finished, 2 stopped" in run()
    frame = hydraflow.load(name, tracking_uri=tracking_server.uri).frame.sort("rate")
    assert frame["stopped"].to_list() == [False, False, False, True, True]
    assert frame["value"].to_list() == [0.25, 0.5, 0.75, 2.0, 2.5]
    assert "5 runs: 5 skipped" in run()


def test_the_replay_lookup_sees_each_commit_and_a_store_replaced_under_it(
    tmp_path: Path,
) -> None:
    """The skip lookup keeps its connection for the process: it must still
    read every new commit, and a new file put in the store's place."""
    from hydraflow.mlflow_schema import DIGEST_TAG, VALUE_TAG, find_finished_in_sqlite

    path = tmp_path / "mlflow.db"

    def write_store(value: str) -> None:
        """A store with one finished run (the tables this lookup reads), put in place."""
        new = tmp_path / "new.db"
        with contextlib.closing(sqlite3.connect(new)) as db, db:
            db.execute("CREATE TABLE experiments (experiment_id, name, lifecycle_stage)")
            db.execute(
                "CREATE TABLE runs (run_uuid, experiment_id, status, lifecycle_stage, start_time)"
            )
            db.execute("CREATE TABLE tags (key, value, run_uuid)")
            db.execute("INSERT INTO experiments VALUES (1, 'e', 'active')")
            db.execute("INSERT INTO runs VALUES ('r', 1, 'FINISHED', 'active', 0)")
            tags = [(DIGEST_TAG, "d", "r"), (VALUE_TAG, value, "r")]
            db.executemany("INSERT INTO tags VALUES (?, ?, ?)", tags)
        new.replace(path)

    def value() -> str | None:
        found = find_finished_in_sqlite(path, "e", "d")
        return None if found is None else found.value

    write_store("1.5")
    assert value() == "1.5"
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE tags SET value = '2.5' WHERE key = ?", (VALUE_TAG,))
    assert value() == "2.5"
    write_store("3.5")
    assert value() == "3.5"
    path.unlink()
    assert value() is None
