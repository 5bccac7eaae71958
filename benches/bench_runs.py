"""Bookkeeping cost per run of @hydraflow.main, and the tutorial's wall time.

Run: make bench   (or: python benches/bench_runs.py [--quick])

A Hydra callback stamps the start of every job of a 41-job multirun; the
median gap between consecutive starts is the cost of one job, free of Python
start-up and imports and robust to a disturbed job or two. Hydra itself
spends time on every job (composing the config, writing `.hydra/`, setting
up logging), so the same is measured for a plain `@hydra.main` app with the
same config, and hydraflow's bookkeeping is the difference. It is measured in
an empty experiment and again with 300 and 5,000 other runs present; the cost
of skipping a finished run is measured the same way on a second pass over
the same configs. The identity lookup alone is also timed in-process.
"""

from __future__ import annotations

import shutil
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

APP = hydraflow_app("i", "batch")
JOBS = 40
EXAMPLES = Path(__file__).parent.parent / "examples"


def job_ms(folder: Path, batch: int, script: str = "app.py") -> float:
    """The median gap between consecutive job starts of a 41-job multirun."""
    stamps = folder / "stamps.txt"
    stamps.unlink(missing_ok=True)
    sweep = f"i=range(0,{JOBS + 1})"
    args = [sys.executable, script, "-m", sweep, f"batch={batch}", STAMP_OVERRIDE]
    subprocess.run(args, cwd=folder, check=True, env=apps_environment(), capture_output=True)
    return median_gap(read_stamps(folder)[0])


def per_run_ms(folder: Path, size: int) -> tuple[float, float]:
    """(new, skipped) milliseconds per job: a first pass over fresh configs
    creates runs, a second pass over the same configs skips them."""
    batch = size * 10
    return job_ms(folder, batch), job_ms(folder, batch)


def hydra_ms(folder: Path) -> float:
    """The cost of a job of a plain Hydra app: Hydra's own share."""
    (folder / "plain.py").write_text(PLAIN_APP)
    return statistics.median(job_ms(folder, attempt, "plain.py") for attempt in range(3))


def add_runs(folder: Path, count: int) -> None:
    """Fills the experiment with finished runs carrying other digests."""
    from hydraflow.mlflow_schema import DIGEST_TAG

    client, experiment_id = app_experiment(folder)
    for index in range(count):
        run = client.create_run(experiment_id, tags={DIGEST_TAG: f"x{index}"})
        client.log_param(run.info.run_id, "i", str(index))
        client.set_terminated(run.info.run_id)


def lookup_ms(folder: Path) -> float:
    """In-process, exact: the median time of the identity lookup (one MLflow
    search on the digest tag) in the experiment as it is now."""
    from hydraflow.tracking.identity import find_runs

    client, experiment_id = app_experiment(folder)
    times = []
    for index in range(200):
        start = time.perf_counter()
        find_runs(client, experiment_id, f"absent{index}")
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


Row = tuple[int, float, float, float]


def bench_bookkeeping(sizes: list[int]) -> tuple[float, list[Row]]:
    """Hydra's own cost per job, and per store size hydraflow's (new, skip)
    cost and the lookup time."""
    results = []
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        (folder / "app.py").write_text(APP)
        (folder / "stamp.py").write_text(STAMP)
        hydra = hydra_ms(folder)
        job_ms(folder, -1)  # creates the store and the experiment
        present = 1
        for size in sizes:
            add_runs(folder, max(0, size - present))
            present = max(size, present)
            new, skipped = per_run_ms(folder, size)
            results.append((size, new - hydra, skipped - hydra, lookup_ms(folder)))
            present += JOBS + 1
    return hydra, results


def bench_tutorial() -> float:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        for file in ("example.py", "hydraflow.yaml", "submit.py"):
            shutil.copy(EXAMPLES / file, folder / file)
        start = time.perf_counter()
        for job in ("job_sequential", "job_parallel", "job_submit"):
            subprocess.run(
                ["hydraflow", "run", job],
                cwd=folder,
                check=True,
                env=apps_environment(),
                capture_output=True,
            )
        return time.perf_counter() - start


def main() -> int:
    sizes = [0, 300] if "--quick" in sys.argv else [0, 300, 5000]
    hydra, results = bench_bookkeeping(sizes)
    empty_new = results[0][1]
    ok = True
    print(f"Hydra's own cost per job (plain @hydra.main app): {hydra:.1f} ms")
    print("hydraflow's bookkeeping per job, on top of that:")
    print(f"{'runs present':>12}  {'new run':>10}  {'vs empty':>8}  {'skip':>8}  {'lookup':>8}")
    for size, new, skipped, lookup in results:
        ratio = new / empty_new
        met = new <= 40 and skipped <= 20 and (size < 5000 or ratio <= 1.2)
        ok &= met
        verdict = "ok" if met else "MISSED"
        row = f"{size:>12}  {new:>7.1f} ms  {ratio:>7.2f}x  {skipped:>5.1f} ms  {lookup:>5.2f} ms"
        print(f"{row}  {verdict}")
    print("targets: new run <= 40 ms, with 5000 runs <= 1.2x empty; skip <= 20 ms")
    print(f"tutorial (three jobs, 16 runs): {bench_tutorial():.1f} s wall")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
