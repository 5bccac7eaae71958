"""The published HydraFlow's style of analysis beside `hydraflow.load`, on 10,000 runs.

Run: python benches/bench_published.py [--count N] [--no-published]

The store is bench_load.py's (cached; `mlflow.db` beside `mlruns/`, each run's
`.hydra/config.yaml` among its artifacts). Each figure is the median of three
fresh processes, imports excluded, for the same analysis three ways:

- `load`: `hydraflow.load()`, then a polars filter and group_by on its frame;
- `published style, ours`: `Run.load(iter_run_dirs("mlruns"))` with this
  package: `filter`, `to_frame` and `group_by(...).agg(...)` on config keys
  (read from the frame), then a function of each run's `cfg` (which reads
  each run's `config.yaml`, as the published tool does);
- `published style, published`: the same statements with the published
  hydraflow 0.23.2 (its `iter_run_dirs` takes no folder), when its
  environment is at /work/published/.venv (or $HYDRAFLOW_PUBLISHED_PYTHON).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from bench_load import ENVIRONMENT, store

PUBLISHED_PYTHON = os.environ.get("HYDRAFLOW_PUBLISHED_PYTHON", "/work/published/.venv/bin/python")

TIMER = """
import json, sys, time
start = time.perf_counter()
import hydraflow, polars as pl
begin = time.perf_counter()
figures = {"import_s": begin - start}
def lap(name):
    global begin
    now = time.perf_counter()
    figures[name] = now - begin
    begin = now
"""
LOAD_STYLE = (
    TIMER
    + """
runs = hydraflow.load(status=None)
lap("load_s")
adam = runs.filter(optimizer="adam", lr=(1e-3, 1e-2))
table = runs.frame.select("lr", "batch", "model.depth")
groups = runs.group_by("optimizer").agg(pl.len().alias("n"))
lap("analyse_s")
sizes = [run.cfg.batch * run.cfg.epochs for run in runs]
lap("cfg_s")
figures.update(runs=len(runs), adam=len(adam), groups=groups.height, sizes=sum(sizes))
print(json.dumps(figures))
"""
)
PUBLISHED_STYLE = (
    TIMER
    + """
from hydraflow import Run, iter_run_dirs
folder = sys.argv[1]
run_dirs = iter_run_dirs() if hasattr(hydraflow, "Collection") else iter_run_dirs(folder)
rc = Run.load(run_dirs)
lap("load_s")
adam = rc.filter(optimizer="adam", lr=(1e-3, 1e-2))
table = rc.to_frame("lr", "batch", "model.depth")
groups = rc.group_by("optimizer").agg(n=lambda runs: len(runs))
lap("analyse_s")
sizes = rc.to_list("size", lambda run: run.cfg.batch * run.cfg.epochs)
lap("cfg_s")
figures.update(runs=len(rc), adam=len(adam), groups=groups.height, sizes=sum(sizes))
print(json.dumps(figures))
"""
)


def timed(python: str, script: str, folder: Path) -> dict[str, Any]:
    """The median (by total time) of three fresh processes run in `folder`."""
    trials = []
    for _ in range(3):
        result = subprocess.run(
            [python, "-c", script, str(folder / "mlruns")],
            cwd=folder,
            env=ENVIRONMENT,
            capture_output=True,
            text=True,
            check=True,
        )
        trials.append(json.loads(result.stdout.strip().splitlines()[-1]))
    return sorted(trials, key=lambda f: f["load_s"] + f["analyse_s"] + f["cfg_s"])[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--no-published", action="store_true")
    args = parser.parse_args()
    folder = store(args.count).parent
    ways = {
        "load": (sys.executable, LOAD_STYLE),
        "published style, ours": (sys.executable, PUBLISHED_STYLE),
    }
    if not args.no_published and Path(PUBLISHED_PYTHON).exists():
        ways["published style, published"] = (PUBLISHED_PYTHON, PUBLISHED_STYLE)
    load_average = os.getloadavg()[0]
    print(f"{args.count:,} runs; load average {load_average:.2f} at the start")
    print(f"{'':28} {'load':>8} {'analyse':>8} {'cfg':>8} {'total':>8}")
    results = {}
    for name, (python, script) in ways.items():
        figures = timed(python, script, folder)
        results[name] = figures
        total = figures["load_s"] + figures["analyse_s"] + figures["cfg_s"]
        print(
            f"{name:28} {figures['load_s']:7.2f}s {figures['analyse_s']:7.2f}s"
            f" {figures['cfg_s']:7.2f}s {total:7.2f}s"
        )
    answers = {(f["runs"], f["adam"], f["groups"], f["sizes"]) for f in results.values()}
    print(f"load average {os.getloadavg()[0]:.2f} at the end; same answers: {len(answers) == 1}")
    return 0 if len(answers) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
