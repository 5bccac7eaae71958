"""`hydraflow.load` on stores of 10,000 and 100,000 runs, beside `mlflow.search_runs`.

Run: make bench   (or: python benches/bench_load.py [--quick] [--peer-100k])

Each store holds finished runs as `@hydraflow.main` records them, in WAL mode: 13 config
keys of mixed types (as params and as the `hydraflow.config` tag, with the
digest and overrides tags), 3 metrics of 10 steps each, and the artifacts
(`.hydra/config.yaml`, `overrides.yaml`, `hydra.yaml` and the job's log).
MLflow creates the database and the experiments through its own client; the
runs are inserted in bulk into MLflow's tables, row for row as MLflow writes
them (making 100,000 runs one MLflow call at a time would take hours here).
`mlflow.search_runs` reading every run back is the check that the store is
what MLflow expects. Stores are cached in $HYDRAFLOW_BENCH_CACHE (default: a
folder in the temp directory).

Timings run in fresh processes: `load` cold (imports timed apart), then
`filter` and `group_by(...).agg(...)` on the loaded runs, `hydraflow runs`
as a whole command, and the peer `mlflow.search_runs` (pandas).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _common import (
    HYDRA_YAML,
    INSERT_RUNS,
    INSERT_TAGS,
    LOG,
    cache_dir,
    finished_run,
    start_ms,
    synthetic_run_id,
    training_config,
)
from hydraflow.mlflow_schema import CONFIG_TAG, DIGEST_TAG, OVERRIDES_TAG, flatten

FORMAT = 1  # bump when the stores' contents change, so caches are rebuilt
EXPERIMENTS = ["train_a", "train_b", "train_c", "train_d"]
METRICS = ["loss", "accuracy", "lr_now"]
STEPS = 10

LOAD = """
import json, resource, sys, time
start = time.perf_counter()
import hydraflow, polars as pl
imported = time.perf_counter()
rss_imported = int(open("/proc/self/statm").read().split()[1]) * 4096
cpu = time.process_time()
runs = hydraflow.load(tracking_uri=sys.argv[1])
frame = runs.frame
loaded = time.perf_counter()
cpu = time.process_time() - cpu
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

def median(call, times):
    spans = []
    for _ in range(times):
        begin = time.perf_counter()
        call()
        spans.append(time.perf_counter() - begin)
    return sorted(spans)[times // 2]

filtered = runs.filter(lr=(1e-3, 1e-2), optimizer="adam", augment=True)
filter_s = median(lambda: runs.filter(lr=(1e-3, 1e-2), optimizer="adam", augment=True), 21)
agg = lambda: runs.group_by("optimizer", "model.depth").agg(pl.len(), pl.col("metrics.loss").mean())
group_s = median(agg, 11)
print(json.dumps({
    "runs": len(runs), "columns": frame.width, "import_s": imported - start,
    "load_s": loaded - imported, "load_cpu_s": cpu, "rss_imported": rss_imported, "peak": peak,
    "filter_s": filter_s, "filtered": len(filtered), "group_s": group_s,
}))
"""
PEER = """
import json, sys, time
import mlflow
mlflow.set_tracking_uri(sys.argv[1])
ids = [e.experiment_id for e in mlflow.search_experiments() if e.name != "Default"]
start = time.perf_counter()
frame = mlflow.search_runs(experiment_ids=ids, max_results=1_000_000)
print(json.dumps({"runs": len(frame), "search_s": time.perf_counter() - start}))
"""


def build(path: Path, count: int) -> None:
    """The store: MLflow makes the schema and the experiments; bulk inserts
    add the runs, row for row as MLflow writes them."""
    import mlflow

    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.chdir(folder):
        client = mlflow.MlflowClient(f"sqlite:///{path}")
        ids = [client.create_experiment(name) for name in EXPERIMENTS]
    artifact_root = folder / "mlruns"
    for experiment in ids:  # one per experiment: a file takes at most 65,000 links
        (artifact_root / experiment).mkdir(parents=True, exist_ok=True)
        (artifact_root / experiment / "hydra.yaml").write_text(HYDRA_YAML)
    with contextlib.closing(sqlite3.connect(path)) as db:
        for start in range(0, count, 10_000):
            insert_runs(db, ids, artifact_root, range(start, min(count, start + 10_000)))
            db.commit()
            print(f"  {min(count, start + 10_000):,} of {count:,} runs", file=sys.stderr)


def insert_runs(db: sqlite3.Connection, ids: list[str], root: Path, indexes: range) -> None:
    runs, tags, params, metrics, latest = [], [], [], [], []
    # Files are written by a few threads: the disk, not Python, is the limit.
    pool = ThreadPoolExecutor(8)
    writes = []
    for index in indexes:
        run_id = synthetic_run_id(index)
        experiment = ids[index % len(ids)]
        job = EXPERIMENTS[index % len(ids)]
        cfg = training_config(index)
        start = start_ms(index)
        artifacts = root / experiment / run_id / "artifacts"
        writes.append(pool.submit(write_artifacts, artifacts, cfg, job))
        row, run_tags = finished_run(run_id, index, artifacts.as_uri(), experiment)
        runs.append(row)
        tags.extend(run_tags)
        overrides = f"seed={index} lr={cfg['lr']}"
        config_json = json.dumps(cfg, sort_keys=True, separators=(",", ":"))
        for key, value in {
            DIGEST_TAG: hashlib.sha256(config_json.encode()).hexdigest(),
            OVERRIDES_TAG: overrides,
            CONFIG_TAG: config_json,
        }.items():
            tags.append((key, value, run_id))
        params.extend((key, str(value), run_id) for key, value in flatten(cfg))
        for number, name in enumerate(METRICS):
            for step in range(STEPS):
                value = (index % 97 + number) / (step + 1)
                metrics.append((name, value, start + step * 10, run_id, step, 0))
            latest.append((name, value, start + (STEPS - 1) * 10, STEPS - 1, 0, run_id))
    db.executemany(INSERT_RUNS, runs)
    db.executemany(INSERT_TAGS, tags)
    db.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?,?,?)", params)
    db.executemany(
        "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?,?,?,?,?,?)",
        metrics,
    )
    pool.shutdown()
    for write in writes:
        write.result()
    db.executemany(
        "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid)"
        " VALUES (?,?,?,?,?,?)",
        latest,
    )


def write_artifacts(folder: Path, cfg: dict[str, Any], job: str) -> None:
    """What the decorator leaves: Hydra's three files and the job's log.
    `hydra.yaml` (the same in every run of a sweep) is a hard link, and
    `config.yaml` is written in YAML's JSON-compatible flow style."""
    hydra = folder / ".hydra"
    hydra.mkdir(parents=True)
    (hydra / "config.yaml").write_text(json.dumps(cfg) + "\n")
    (hydra / "overrides.yaml").write_text(f"- seed={cfg['seed']}\n- lr={cfg['lr']}\n")
    os.link(folder.parents[1] / "hydra.yaml", hydra / "hydra.yaml")
    (folder / f"{job}.log").write_text(LOG)


def store(count: int) -> Path:
    path = cache_dir("load") / f"v{FORMAT}-{count}" / "mlflow.db"
    ready = path.with_suffix(".ready")
    if not ready.exists():
        if path.parent.exists():
            subprocess.run(["rm", "-rf", str(path.parent)], check=True)
        print(f"building a store of {count:,} runs in {path.parent} (cached)", file=sys.stderr)
        build(path, count)
        ready.touch()
    # In WAL mode, as `@hydraflow.main` leaves every store it writes to.
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA journal_mode = WAL")
    return path


# As on a user's machine: no tracking URI from the caller, bytecode cached.
ENVIRONMENT = {
    k: v
    for k, v in os.environ.items()
    if k not in ("MLFLOW_TRACKING_URI", "PYTHONDONTWRITEBYTECODE")
}


def python(script: str, *args: str) -> dict[str, Any]:
    environment = ENVIRONMENT
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        check=True,
        env=environment,
    )
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def command_s(*args: str) -> float:
    hydraflow = str(Path(sys.executable).parent / "hydraflow")
    start = time.perf_counter()
    subprocess.run([hydraflow, *args], check=True, stdout=subprocess.DEVNULL, env=ENVIRONMENT)
    return time.perf_counter() - start


def measure(count: int, peer: bool) -> dict[str, Any]:
    uri = f"sqlite:///{store(count)}"
    # The median of three fresh processes: other work on the machine disturbs single runs.
    trials = sorted((python(LOAD, uri) for _ in range(3)), key=lambda f: f["load_s"])
    figures = trials[1]
    assert figures["runs"] == count, figures
    figures["per_run_kb"] = (figures["peak"] - figures["rss_imported"]) / count / 1024
    figures["cli_csv_s"] = command_s("runs", "--tracking-uri", uri, "--format", "csv")
    figures["cli_table_s"] = command_s("runs", "--tracking-uri", uri)
    if peer:
        search = python(PEER, uri)
        assert search["runs"] == count, search
        figures["search_s"] = search["search_s"]
    return figures


def report(results: dict[int, dict[str, Any]]) -> bool:
    ok = True
    small, large = min(results), max(results)
    headers = ["load", "load CPU", "imports", "peak RSS", "per run", "filter", "group_by"]
    headers.append("runs csv")
    print(f"{'runs':>9}  " + "  ".join(f"{h:>9}" for h in headers) + "  runs table  search_runs")
    for count, f in sorted(results.items()):
        search = f"{f['search_s']:.2f} s" if "search_s" in f else "-"
        print(
            f"{count:>9,}  {f['load_s']:>7.2f} s  {f['load_cpu_s']:>7.2f} s  "
            f"{f['import_s']:>7.2f} s  "
            f"{f['peak'] / 2**20:>6.0f} MB  {f['per_run_kb']:>6.2f} KB  "
            f"{f['filter_s'] * 1e3:>6.2f} ms  {f['group_s'] * 1e3:>6.2f} ms  "
            f"{f['cli_csv_s']:>7.2f} s  {f['cli_table_s']:>8.2f} s  {search}"
        )
    big = results[large]
    checks = [
        (f"load {large:,} runs", f"{big['load_s']:.2f} s", "<= 1.5 s", big["load_s"] <= 1.5),
        (f"peak memory at {large:,}", f"{big['peak'] / 2**20:.0f} MB", "< 1024 MB",
         big["peak"] < 2**30),
        (f"filter on {large:,}", f"{big['filter_s'] * 1e3:.2f} ms", "< 20 ms",
         big["filter_s"] < 0.02),
    ]  # fmt: skip
    if "search_s" in results[small]:
        ratio = results[small]["search_s"] / results[small]["load_s"]
        checks.append(
            (f"vs mlflow.search_runs at {small:,}", f"{ratio:.0f}x faster", ">= 30x", ratio >= 30)
        )
    if small != large:
        growth = big["per_run_kb"] / results[small]["per_run_kb"]
        checks.append(
            (f"memory per run {small:,} -> {large:,}", f"{growth:.2f}x", "flat (<= 1.25x)",
             growth <= 1.25)
        )  # fmt: skip
    for name, measured, target, met in checks:
        ok &= met
        print(f"  {name:<34} {measured:>14}   target {target:<16} {'ok' if met else 'MISSED'}")
    return ok


def main() -> int:
    sizes = [10_000] if "--quick" in sys.argv else [10_000, 100_000]
    results = {}
    for count in sizes:
        peer = count <= 10_000 or "--peer-100k" in sys.argv
        results[count] = measure(count, peer)
    print("hydraflow.load: load = hydraflow.load(...).frame in a fresh process after its imports")
    return 0 if report(results) else 1


if __name__ == "__main__":
    sys.exit(main())
