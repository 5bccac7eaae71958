"""Cluster costs: bookkeeping per run through an MLflow tracking server on
PostgreSQL beside the local SQLite store, and a 100-task SLURM array beside
the same job run locally with `-j 2`.

Run: make bench   (or: python benches/bench_cluster.py [--quick]); as root
with the services of `.ci/services.sh` installed. The services are the
tests' own (tests/services.py): a single-node SLURM cluster and PostgreSQL
with `mlflow server`, on 127.0.0.1 in temporary directories.

Bookkeeping is measured as in bench_runs.py (which see): a Hydra callback
stamps every job's start in a 41-job multirun and the median gap is the cost
of a job; Hydra's own cost (a plain @hydra.main app) is subtracted. The same
app runs against each store, with 0 and then 5,000 other runs present in its
experiment; a second pass over the same configs measures skipping.

The array: 100 commands of one run each, as one `hydraflow slurm` array
(every task a fresh Python process on the node) and as `hydraflow run -j 2`
on the same 2-core machine, timed from `hydraflow run` until the last run
ends (each run stamps its end); `hydraflow run`'s own exit is shown too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benches")]

import bench_runs  # noqa: E402
from _common import STAMP, apps_environment  # noqa: E402
from hydraflow.mlflow_schema import DIGEST_TAG  # noqa: E402

from tests.services import (  # noqa: E402
    APP,
    SlurmCluster,
    TrackingServer,
    server_running,
    slurm_running,
)

# bench_runs' app, told its store by BENCH_TRACKING_URI (bench_runs drops
# MLFLOW_TRACKING_URI from its children's environment; None means SQLite).
DECORATOR = "@hydraflow.main(Config)"
STORE_APP = "import os\n" + bench_runs.APP.replace(
    DECORATOR, "@hydraflow.main(Config, tracking_uri=os.environ.get('BENCH_TRACKING_URI'))"
)
assert STORE_APP != "import os\n" + bench_runs.APP


def fill(uri: str, count: int, workers: int) -> None:
    """Adds `count` finished runs with other digests to experiment `app`."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("app")
    assert experiment is not None

    def add(index: int) -> None:
        run = client.create_run(experiment.experiment_id, tags={DIGEST_TAG: f"x{index}"})
        client.log_param(run.info.run_id, "i", str(index))
        client.set_terminated(run.info.run_id)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(add, range(count)))


Row = tuple[int, float, float]


def bookkeeping(fill_uri: str | None, sizes: list[int], workers: int) -> list[Row]:
    """(runs present, ms per new run, ms per skip) for the store the
    environment names; Hydra's own share taken off."""
    rows = []
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        (folder / "app.py").write_text(STORE_APP)
        (folder / "stamp.py").write_text(STAMP)
        hydra = bench_runs.hydra_ms(folder)
        bench_runs.job_ms(folder, -1)  # creates the store and the experiment
        uri = fill_uri or f"sqlite:///{folder / 'mlflow.db'}"
        present = 1
        for size in sizes:
            fill(uri, max(0, size - present), workers)
            present = max(size, present)
            new, skipped = bench_runs.per_run_ms(folder, size)
            rows.append((size, new - hydra, skipped - hydra))
            present += bench_runs.JOBS + 1
    return rows


def compare_stores(server: TrackingServer, sizes: list[int]) -> None:
    os.environ.pop("BENCH_TRACKING_URI", None)
    local = bookkeeping(None, sizes, workers=1)
    os.environ["BENCH_TRACKING_URI"] = server.uri
    try:
        # Filling goes straight to the server's database: the runs are the
        # same, and 5,000 of them through HTTP would take minutes.
        remote = bookkeeping(server.database_uri, sizes, workers=4)
    finally:
        os.environ.pop("BENCH_TRACKING_URI")
    print("bookkeeping per run, on top of Hydra's own cost (ms):")
    print(f"{'runs present':>12}  {'SQLite new':>10}  {'server new':>10}  {'ratio':>6}  ", end="")
    print(f"{'SQLite skip':>11}  {'server skip':>11}  {'ratio':>6}")
    for (size, new, skip), (_, remote_new, remote_skip) in zip(local, remote, strict=True):
        print(f"{size:>12}  {new:>10.1f}  {remote_new:>10.1f}  {remote_new / new:>5.2f}x  ", end="")
        print(f"{skip:>11.1f}  {remote_skip:>11.1f}  {remote_skip / skip:>5.2f}x")


def array_project(folder: Path, tasks: int) -> None:
    sets = [{"each": f"i=0:{tasks - 1}"}]
    jobs = {
        "local": {"run": "python app.py", "sets": sets},
        "array": {"submit": "hydraflow slurm -- python app.py", "sets": sets},
    }
    (folder / "hydraflow.yaml").write_text(yaml.safe_dump({"jobs": jobs}))
    (folder / "app.py").write_text(APP)


def timed_run(folder: Path, env: dict[str, str], *args: str) -> tuple[float, float, int]:
    """(seconds until the last run ended, seconds until hydraflow exited, runs)."""
    stamps = folder / "stamps.jsonl"
    stamps.unlink(missing_ok=True)
    start = time.time()
    subprocess.run(
        ["hydraflow", "run", *args], cwd=folder, env=env, check=True, capture_output=True
    )
    exited = time.time() - start
    ends = [json.loads(line)["end"] for line in stamps.read_text().splitlines()]
    return max(ends) - start, exited, len(ends)


def compare_array(cluster: SlurmCluster, tasks: int) -> None:
    env = apps_environment(base=cluster.env)
    results: dict[str, tuple[float, float, int]] = {}
    for job, args in (("local", ["-j", "2"]), ("array", [])):
        with tempfile.TemporaryDirectory() as name:
            folder = Path(name)
            array_project(folder, tasks)
            results[job] = timed_run(folder, env, job, *args)
    local, array = results["local"], results["array"]
    assert local[2] == array[2] == tasks, results
    print(f"{tasks} commands of one run each, on {cluster.cpus} CPUs:")
    print(f"  hydraflow run -j 2:       last run ended {local[0]:6.1f} s, exit {local[1]:6.1f} s")
    print(f"  hydraflow slurm array:    last run ended {array[0]:6.1f} s, exit {array[1]:6.1f} s")
    print(f"  array / local: {array[0] / local[0]:.2f}x")


def main() -> int:
    quick = "--quick" in sys.argv
    sizes = [0, 300] if quick else [0, 5000]
    tasks = 20 if quick else 100
    with server_running() as server:
        compare_stores(server, sizes)
    with slurm_running() as cluster:
        compare_array(cluster, tasks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
