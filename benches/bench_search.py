"""Adaptive sweeps: replaying a finished study, and one `hydraflow.report` call.

Replay: a seeded Optuna study of 50 trials (tests/apps/search/search_app.py,
Hydra's basic launcher, SQLite store) is run once, then again: every trial
is replayed from the store. The same study cut to 1 trial, also replayed,
is the app's start; the difference is what replaying costs. Target: <= 5 s.
The same study under plain `@hydra.main` is the floor (Hydra's and Optuna's
own cost per job). Wall clock and CPU time.

report: a store of 10,000 FINISHED runs in one experiment, each with a
metric of 100 steps (a million points; MLflow makes the schema, the rows are
inserted in bulk as MLflow writes them; a tenth of the runs tagged stopped),
and a run of that experiment calling `hydraflow.report` under
`MedianStopping`: each call logs the point and reads the completed runs'
values at its step; then a second run, as a later process would (it finds
the files the first wrote beside the store). Target: milliseconds.

`python benches/bench_search.py report` (or `replay`) runs one half.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "tests" / "apps" / "search" / "search_app.py"
TRIALS = 50
RUNS = 10_000
STEPS = 100
STUDY = [
    "hydra/sweeper=optuna",
    "hydra.sweeper.sampler.seed=3",
    "hydra.sweeper.n_jobs=1",
    "x=interval(-5.0,5.0)",
    "y=choice(1,2,3)",
]


def study_seconds(folder: Path, trials: int, oracle: bool = False) -> tuple[float, float]:
    """Wall-clock and CPU seconds (user + system, less sensitive to the
    machine's load) of one run of the study."""
    command = [sys.executable, "search_app.py", "-m", *STUDY, f"hydra.sweeper.n_trials={trials}"]
    env = {**os.environ, "ORACLE": "1"} if oracle else None
    if oracle:
        command.append("hydra.sweep.dir=oracle")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert done.returncode == 0, done.stderr
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu


def best(folder: Path, trials: int, oracle: bool = False) -> tuple[float, float]:
    """The best of 3 runs, wall-clock and CPU each."""
    runs = [study_seconds(folder, trials, oracle) for _ in range(3)]
    return min(wall for wall, _ in runs), min(cpu for _, cpu in runs)


def bench_replay() -> float:
    """Also the floor: the same study under plain `@hydra.main` (its trials
    are run, the objective costs nothing), 50 trials against 1."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        shutil.copy(APP, folder)
        first, _ = study_seconds(folder, TRIALS)
        study_seconds(folder, 1)  # the 1-trial study's trial is the first of the 50
        start, replay = best(folder, 1), best(folder, TRIALS)
        hydra_start, hydra_all = best(folder, 1, oracle=True), best(folder, TRIALS, oracle=True)
    cost = replay[0] - start[0]
    print(f"study of {TRIALS} trials, first run: {first:.1f} s")
    for name, (one, all_) in (
        ("replayed", (start, replay)),
        ("@hydra.main", (hydra_start, hydra_all)),
    ):
        print(
            f"{name}: {TRIALS} trials {all_[0]:.2f} s (CPU {all_[1]:.2f} s), 1 trial "
            f"{one[0]:.2f} s (CPU {one[1]:.2f} s): {TRIALS - 1} more trials "
            f"{all_[0] - one[0]:.2f} s (CPU {all_[1] - one[1]:.2f} s)"
        )
    print(f"replaying {TRIALS - 1} trials beyond the app's start: {cost:.2f} s (target <= 5 s)")
    return cost


def build_store(path: Path) -> str:
    """10,000 finished runs of one experiment; returns its id."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{path}")
    experiment = client.create_experiment("study", artifact_location=str(path.parent / "mlruns"))
    runs, points, tags = [], [], []
    for index in range(RUNS):
        run_id = uuid.UUID(int=index + 1).hex
        start = 1_790_000_000_000 + index * 1000
        runs.append((run_id, "FINISHED", start, start + 900, "active", int(experiment)))
        rate = 1 + index % 97
        points.extend(("loss", rate / (s + 1), start + s, run_id, s, 0) for s in range(STEPS))
        if index % 10 == 0:
            tags.append(("hydraflow.stopped", "5", run_id))
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.executemany(
            "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name,"
            " user_id, status, start_time, end_time, source_version, lifecycle_stage,"
            " artifact_uri, experiment_id) VALUES (?,'','LOCAL','','','bench',?,?,?,'',?,'',?)",
            runs,
        )
        db.executemany(
            "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan)"
            " VALUES (?,?,?,?,?,?)",
            points,
        )
        db.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?,?,?)", tags)
    return str(experiment)


def bench_report() -> float:
    """The first call of a process that finds the store never read (it reads
    the metric's million points and writes them beside the store), the
    first call of a later process (it reads those files), and later calls."""
    import hydraflow
    import mlflow
    from hydraflow.tracking.stopping import watching

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mlflow.db"
        made = time.perf_counter()
        experiment = build_store(path)
        print(f"store of {RUNS:,} runs x {STEPS} steps built in {time.perf_counter() - made:.0f} s")
        client = mlflow.MlflowClient(f"sqlite:///{path}")
        mlflow.set_tracking_uri(f"sqlite:///{path}")
        rule = hydraflow.MedianStopping("min", warmup_steps=0, min_runs=3)
        firsts = []
        for _ in range(2):  # each `watching` is what a new process does
            with mlflow.start_run(experiment_id=experiment) as run:
                calls, reads, logs = [], [], []
                with watching(run, client, rule) as trial:
                    assert trial.histories is not None
                    start = time.perf_counter()
                    hydraflow.report("loss", 0.5, 0)
                    firsts.append(time.perf_counter() - start)
                    for step in range(1, 51):
                        start = time.perf_counter()
                        hydraflow.report("loss", 0.5 / (step + 1), step)
                        calls.append(time.perf_counter() - start)
                        start = time.perf_counter()
                        others = trial.histories.at_step("loss", step)
                        reads.append(time.perf_counter() - start)
                        start = time.perf_counter()
                        mlflow.log_metric("other", 1.0, step=step)
                        logs.append(time.perf_counter() - start)
                    assert len(others) == RUNS - RUNS // 10
                    start = time.perf_counter()
                closed = time.perf_counter() - start  # writing the files, the first time
                if len(firsts) == 1:
                    print(f"the first process's files written when its job ends: {closed:.2f} s")
            client.delete_run(run.info.run_id)  # not one of the 9,000 the next reads
        from hydraflow.tracking.histories import SqliteHistories

        fresh = SqliteHistories(path, experiment, uuid.uuid4().hex)  # as a new process
        start = time.perf_counter()
        fresh.at_step("loss", 1)
        first_read = time.perf_counter() - start
        fresh.close()
    ms = {name: 1000 * statistics.median(t) for name, t in (("call", calls), ("read", reads))}
    print(f"report at {RUNS:,} runs, the first call on a store never read: {firsts[0]:.2f} s")
    print(
        f"report at {RUNS:,} runs, the first call of a later process: {1000 * firsts[1]:.1f} ms, "
        f"of which the rule's first read {1000 * first_read:.1f} ms"
    )
    print(
        f"report at {RUNS:,} runs: {ms['call']:.1f} ms a later call (median of 50), of which "
        f"reading the {len(others):,} completed runs' values at the step {ms['read']:.2f} ms; "
        f"mlflow.log_metric alone {1000 * statistics.median(logs):.1f} ms"
    )
    return ms["call"]


def main() -> int:
    print(f"load average: {os.getloadavg()[0]:.1f}")
    call_ms = bench_report() if "replay" not in sys.argv[1:] else 0.0
    cost = bench_replay() if "report" not in sys.argv[1:] else 0.0
    print(f"load average: {os.getloadavg()[0]:.1f}")
    return 0 if cost <= 5 and call_ms < 100 else 1


if __name__ == "__main__":
    sys.exit(main())
