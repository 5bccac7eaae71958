"""What `@hydraflow.main` costs per job beyond Hydra's own, run by run.

Run: python benches/bench_tracking.py [--jobs N] [--rounds R] [--baseline DIR]

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
medians over the rounds of each pass's median gap, in wall time and in the
process's CPU time (steadier on a loaded machine; the wall time adds what
the job waits for: the disk's syncs, the lock, the scheduler). `mean/job`,
the wall time of the N-job process minus that of a 1-job process divided by
N - 1, is a cross-check that outliers sway. `--baseline DIR` measures the
hydraflow whose source is `DIR` (a checkout's `python/` directory, with its
built `_core`) alongside, round by round, so both meet the same load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    PLAIN_APP,
    STAMP,
    STAMP_OVERRIDE,
    app_experiment,
    apps_environment,
    hydraflow_app,
    median_gap,
    read_stamps,
)

APP = hydraflow_app("i", "batch", parameters="cfg")


def multirun(
    folder: Path, script: str, jobs: int, batch: int, python_dir: str | None = None
) -> tuple[float, float, float]:
    """Medians of the gaps between job starts in wall and CPU time, and the
    process's wall time, in ms."""
    stamps = folder / "stamps.txt"
    stamps.unlink(missing_ok=True)
    sweep = f"i=range(0,{jobs})"
    args = [sys.executable, script, "-m", sweep, f"batch={batch}", STAMP_OVERRIDE]
    environment = apps_environment(python_dir)
    start = time.perf_counter()
    subprocess.run(args, cwd=folder, check=True, env=environment, capture_output=True)
    wall = (time.perf_counter() - start) * 1e3
    walls, cpus = read_stamps(folder)
    return median_gap(walls), median_gap(cpus), wall


def fail_runs(folder: Path, batch: int) -> None:
    """Marks the runs of `batch` FAILED, as a crashed job leaves them."""
    client, experiment_id = app_experiment(folder)
    runs = client.search_runs([experiment_id], f"params.batch = '{batch}'")
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


def measure(jobs: int, rounds: int, variants: dict[str, str | None]) -> dict[str, Figures]:
    """Each round: plain Hydra, then each variant of hydraflow (a name and the
    python/ directory of its source, None for the installed one) in its own
    store, interleaved so that all meet the same load."""
    figures = {name: Figures() for name in variants}
    with tempfile.TemporaryDirectory() as name:
        root = Path(name)
        for variant, python_dir in variants.items():
            folder = root / variant
            folder.mkdir()
            (folder / "app.py").write_text(APP)
            (folder / "plain.py").write_text(PLAIN_APP)
            (folder / "stamp.py").write_text(STAMP)
            multirun(folder, "app.py", 1, -1, python_dir)  # creates the store and experiment
        for round_ in range(rounds):
            for variant, python_dir in variants.items():
                measure_round(root / variant, jobs, 2 * round_, python_dir, figures[variant])
    return figures


def measure_round(
    folder: Path, jobs: int, batch: int, python_dir: str | None, figures: Figures
) -> None:
    plain_one = multirun(folder, "plain.py", 1, 0)[2]
    figures.add("hydra", multirun(folder, "plain.py", jobs, 0), plain_one, jobs)
    one = multirun(folder, "app.py", 1, batch + 1, python_dir)[2]  # a new run: the wall base
    for name in ("new", "skip"):
        figures.add(name, multirun(folder, "app.py", jobs, batch, python_dir), one, jobs)
    fail_runs(folder, batch)
    figures.add("resume", multirun(folder, "app.py", jobs, batch, python_dir), one, jobs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        help="the python/ directory of another hydraflow checkout, measured alongside",
    )
    arguments = parser.parse_args()
    variants: dict[str, str | None] = {"this": None}
    if arguments.baseline:
        variants["baseline"] = str(Path(arguments.baseline).resolve())
    load = os.getloadavg()[0]
    results = measure(arguments.jobs, arguments.rounds, variants)
    print(
        f"{arguments.jobs} jobs per process, {arguments.rounds} rounds, "
        f"load average {load:.2f} -> {os.getloadavg()[0]:.2f}"
    )
    ok = True
    for variant, figures in results.items():
        print(f"== {variant}")
        ok &= report(figures) or variant != "this"
    print("target: every pass within 20 ms (wall) of Hydra's own job")
    return 0 if ok else 1


def report(figures: Figures) -> bool:
    print(
        f"{'pass':>8}  {'wall/job':>9}  {'beyond Hydra':>12}  {'CPU/job':>9}  {'beyond':>9}  "
        f"{'mean/job':>12}"
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
            f"{cpu - hydra_cpu:>6.1f} ms  {wall:>12.1f} ms  {verdict}"
        )
    return ok


if __name__ == "__main__":
    sys.exit(main())
