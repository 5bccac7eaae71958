"""What `@hydraflow.main` costs per job beyond Hydra's own, run by run.

Run: python benches/bench_tracking.py [--jobs N] [--rounds R]

One process runs a multirun of N jobs of a trivial app (default store:
SQLite `mlflow.db` and `mlruns/` in the launch directory). A Hydra callback
stamps the start of every job; the median gap between consecutive starts is
one job's wall time, free of the process's start and imports. The same is
measured for a plain `@hydra.main` app with the same config (Hydra's own
job), and for hydraflow:

- new: every job creates its run;
- skip: the same command again, every job finds its FINISHED run;
- resume: the runs are marked FAILED (through MLflow's client) and the same
  command again takes each of them over.

Each pass is repeated R times (fresh configs for `new`); the figures are the
medians over the rounds of each pass's median gap. A second measure, wall
time of the N-job process minus that of a 1-job process, divided by N - 1,
is printed beside it as a cross-check.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

APP = """
from dataclasses import dataclass
import hydraflow

@dataclass
class Config:
    i: int = 0
    batch: int = 0

@hydraflow.main(Config)
def app(cfg):
    pass

if __name__ == "__main__":
    app()
"""
PLAIN = """
from dataclasses import dataclass
import hydra
from hydra.core.config_store import ConfigStore

@dataclass
class Config:
    i: int = 0
    batch: int = 0

ConfigStore.instance().store(name="config", node=Config)

@hydra.main(config_name="config", version_base=None)
def app(cfg):
    pass

if __name__ == "__main__":
    app()
"""
STAMP = """
import time
from hydra.experimental.callback import Callback

class Stamp(Callback):
    def on_job_start(self, config, **kwargs):
        with open("stamps.txt", "a") as out:
            out.write(f"{time.perf_counter()} {time.process_time()}\\n")
"""
STAMP_OVERRIDE = "+hydra.callbacks.stamp._target_=stamp.Stamp"


def env() -> dict[str, str]:
    drop = ("MLFLOW_TRACKING_URI", "HYDRAFLOW_EVENTS", "HYDRAFLOW_INPUTS")
    environment = {k: v for k, v in os.environ.items() if k not in drop}
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment['PATH']}"
    return environment


def multirun(folder: Path, script: str, jobs: int, batch: int) -> tuple[float, float, float]:
    """Medians of the gaps between job starts in wall and CPU time, and the
    process's wall time, in ms."""
    stamps = folder / "stamps.txt"
    stamps.unlink(missing_ok=True)
    sweep = f"i=range(0,{jobs})"
    args = [sys.executable, script, "-m", sweep, f"batch={batch}", STAMP_OVERRIDE]
    start = time.perf_counter()
    subprocess.run(args, cwd=folder, check=True, env=env(), capture_output=True)
    wall = (time.perf_counter() - start) * 1e3
    stamped = [line.split() for line in stamps.read_text().splitlines()]
    return (
        median_gap([float(s[0]) for s in stamped]),
        median_gap([float(s[1]) for s in stamped]),
        wall,
    )


def median_gap(times: list[float]) -> float:
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    return statistics.median(gaps) * 1e3 if gaps else float("nan")


def fail_runs(folder: Path, batch: int) -> None:
    """Marks the runs of `batch` FAILED, as a crashed job leaves them."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("app")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], f"params.batch = '{batch}'")
    for run in runs:
        client.set_terminated(run.info.run_id, "FAILED")


PASSES = ("hydra", "new", "skip", "resume")


class Figures:
    """Per pass, one figure per round: the wall and CPU gaps, and the
    wall-based per-job time."""

    def __init__(self) -> None:
        self.rounds: dict[str, list[tuple[float, float, float]]] = {}

    def add(self, name: str, measured: tuple[float, float, float], base: float, jobs: int) -> None:
        gap, cpu, wall = measured
        self.rounds.setdefault(name, []).append((gap, cpu, (wall - base) / (jobs - 1)))

    def median(self, name: str, column: int) -> float:
        return statistics.median(row[column] for row in self.rounds[name])


def measure(jobs: int, rounds: int) -> Figures:
    figures = Figures()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        (folder / "app.py").write_text(APP)
        (folder / "plain.py").write_text(PLAIN)
        (folder / "stamp.py").write_text(STAMP)
        multirun(folder, "app.py", 1, -1)  # creates the store and the experiment
        for round_ in range(rounds):
            plain_one = multirun(folder, "plain.py", 1, 0)[2]
            figures.add("hydra", multirun(folder, "plain.py", jobs, 0), plain_one, jobs)
            batch = 2 * round_
            one = multirun(folder, "app.py", 1, batch + 1)[2]  # a new run: the wall base
            for name in ("new", "skip"):
                figures.add(name, multirun(folder, "app.py", jobs, batch), one, jobs)
            fail_runs(folder, batch)
            figures.add("resume", multirun(folder, "app.py", jobs, batch), one, jobs)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    load = os.getloadavg()[0]
    figures = measure(arguments.jobs, arguments.rounds)
    print(
        f"{arguments.jobs} jobs per process, {arguments.rounds} rounds, "
        f"load average {load:.2f} -> {os.getloadavg()[0]:.2f}"
    )
    print(
        f"{'pass':>8}  {'wall/job':>9}  {'beyond Hydra':>12}  {'CPU/job':>9}  {'beyond':>9}  "
        f"{'wall-based':>10}"
    )
    hydra, hydra_cpu = figures.median("hydra", 0), figures.median("hydra", 1)
    ok = True
    for name in PASSES:
        gap, cpu, wall = (figures.median(name, column) for column in range(3))
        met = name == "hydra" or gap - hydra <= 20
        ok &= met
        verdict = "" if name == "hydra" else ("ok" if met else "MISSED")
        print(
            f"{name:>8}  {gap:>6.1f} ms  {gap - hydra:>9.1f} ms  {cpu:>6.1f} ms  "
            f"{cpu - hydra_cpu:>6.1f} ms  {wall:>7.1f} ms  {verdict}"
        )
    print("target: every pass within 20 ms (wall) of Hydra's own job")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
