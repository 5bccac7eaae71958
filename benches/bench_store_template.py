"""A new SQLite store's tables from the cached template, against MLflow's own
creation (alembic's migrations): hydraflow's `open_new_experiment` on a new
file, and the tutorial's `job_sequential` in a fresh copy of examples/.

Run: python benches/bench_store_template.py   (about 2 minutes on a quiet 2-core machine)

Three ways, taking turns in every round so a change of the machine's load
falls on all: `mlflow` (the user's cache folder unusable: MLflow creates the
tables, as before the template), `cold` (an empty cache folder: the template
is made, then copied) and `warm` (the template is there). The load average
is printed beside the figures.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import apps_environment

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TUTORIAL_FILES = ("example.py", "hydraflow.yaml", "submit.py")
WAYS = ("mlflow", "cold", "warm")
OPENINGS = int(os.environ.get("BENCH_OPENINGS", "5"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
COUNT_RUNS = """
import sys, mlflow
runs = mlflow.search_runs(experiment_names=[sys.argv[1]], filter_string="status = 'FINISHED'")
print(len(runs))
"""
# One new store opened in a fresh process, MLflow and hydraflow imported
# first (a new folder's first run pays this after its imports); then more
# new stores in the same process, as later stores of one process are.
OPEN = """
import sys, time
from pathlib import Path
import mlflow
from hydraflow.store import open_new_experiment

for index in range(int(sys.argv[2])):
    folder = Path(sys.argv[1]) / str(index)
    folder.mkdir()
    start, cpu = time.perf_counter(), time.process_time()
    open_new_experiment(f"sqlite:///{folder / 'mlflow.db'}", "e", folder)
    print(time.perf_counter() - start, time.process_time() - cpu)
"""


def environment(way: str, root: Path) -> dict[str, str]:
    """The user's cache folder for `way`: a file in its place (nothing can
    be made there), empty, or holding the template."""
    env = apps_environment()
    env.pop("HYDRAFLOW_COLD", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # a user's Python writes its caches
    cache = root / f"cache-{way}"
    if way == "mlflow":
        cache.write_text("not a folder")
    elif way == "cold":
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir()
    env["XDG_CACHE_HOME"] = str(cache)
    return env


def open_stores(way: str, root: Path) -> list[tuple[float, float]]:
    """Wall and CPU seconds of each opening, the first in a fresh process."""
    folder = Path(tempfile.mkdtemp(dir=root))
    done = subprocess.run(
        [sys.executable, "-c", OPEN, str(folder), str(OPENINGS)],
        env=environment(way, root),
        capture_output=True,
        text=True,
        check=True,
    )
    return [(float(wall), float(cpu)) for wall, cpu in map(str.split, done.stdout.splitlines())]


def job_sequential(way: str, root: Path) -> tuple[float, float]:
    """Wall seconds of `hydraflow run job_sequential`, and CPU seconds of it
    and all it started (reaped children count to their waiting parent)."""
    folder = Path(tempfile.mkdtemp(dir=root))
    for name in TUTORIAL_FILES:
        shutil.copy(EXAMPLES / name, folder)
    env = environment(way, root)
    hydraflow = str(Path(sys.executable).parent / "hydraflow")
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run(
        [hydraflow, "run", "job_sequential"],
        cwd=folder,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    count = subprocess.run(
        [sys.executable, "-c", COUNT_RUNS, "job_sequential"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    runs = int(count.stdout.split()[-1])
    assert runs == 6, f"job_sequential recorded {runs} finished runs, not 6"
    return seconds, cpu


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def best_median(figures: list[float]) -> str:
    return f"{min(figures):.3f} s / {statistics.median(figures):.3f} s"


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-store-template-"))
    firsts: dict[str, list[tuple[float, float]]] = {way: [] for way in WAYS}
    laters: dict[str, list[tuple[float, float]]] = {way: [] for way in WAYS}
    jobs: dict[str, list[tuple[float, float]]] = {way: [] for way in WAYS}
    try:
        open_stores("warm", root)  # makes the warm way's template
        loads = [load()]
        for _ in range(ROUNDS):
            for way in WAYS:
                first, *later = open_stores(way, root)
                firsts[way].append(first)
                laters[way].extend(later)
            for way in WAYS:
                jobs[way].append(job_sequential(way, root))
            loads.append(load())
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"load average (1, 5, 15 min) at start and after each round: {' | '.join(loads)}")
    print("open_new_experiment on a new file, wall (CPU), best / median:")
    print(f"  the first in a fresh process ({ROUNDS}); {OPENINGS - 1} more in each")
    for way in WAYS:
        print(
            f"  {way:6}  first {best_median([w for w, _ in firsts[way]])}"
            f" ({best_median([c for _, c in firsts[way]])})"
            f"  later {best_median([w for w, _ in laters[way]])}"
            f" ({best_median([c for _, c in laters[way]])})"
        )
    print(f"hydraflow run job_sequential in a fresh copy of examples/, {ROUNDS} runs:")
    for way in WAYS:
        walls = ", ".join(f"{wall:.2f}" for wall, _ in jobs[way])
        cpus = ", ".join(f"{cpu:.2f}" for _, cpu in jobs[way])
        print(f"  {way:6}  best {min(w for w, _ in jobs[way]):.2f} s  wall {walls}; CPU {cpus}")


if __name__ == "__main__":
    main()
