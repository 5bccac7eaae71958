"""Adopting runs made by other tools: what a store of 10,000 such runs costs
the first time an app reaches it, and every time after.

The store is made as the published HydraFlow leaves one: MLflow creates the
database and the experiment through its client; 10,000 FINISHED runs are
inserted in bulk into MLflow's tables (with the tags MLflow itself sets, no
hydraflow tag), each with Hydra's `.hydra/config.yaml` (in Hydra's own
YAML), `overrides.yaml`, `hydra.yaml` and a log. Three stores: configs of
plain values (13 keys, nested); the same with a reference to other keys
(`${model.name}_${seed}`); and the same with a resolver
(`${oc.env:...}`, recorded as its text); all three read with libyaml.

The stores are cached in the temp directory (HYDRAFLOW_BENCH_CACHE), so
reruns skip building them. Figures, each from fresh processes:
1. the examination alone (`adopt_in_sqlite`, imports apart): once, on the
   untouched store (median of 3; the tags are removed between rounds);
2. the check every later process makes (nothing left to examine), median of 5;
3. an app's run of a new config against the store: the first (which adopts
   the 10,000) and the next (which has nothing to adopt).

Target: the one-time cost of 10,000 runs no more than a few seconds.

Run: .venv/bin/python benches/bench_adoption.py [plain|interpolated|resolver ...]
(the stores named, every one by default)
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import textwrap
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
    hydraflow_app,
    synthetic_run_id,
    training_config,
)
from hydraflow.mlflow_schema import ADOPTED_TAG, CONFIG_TAG, DIGEST_TAG, OVERRIDES_TAG

RUNS = 10_000
KINDS = ("plain", "interpolated", "resolver")
FORMAT = 1  # bump when the stores' contents change, so caches are rebuilt
EXPERIMENT = "train"
TARGET_SECONDS = 5.0

EXAMINE = """
import sys, time
from pathlib import Path
from hydraflow.tracking.adoption import Adoption, adopt_in_sqlite
folder = Path(sys.argv[1])
start = time.perf_counter()
count = adopt_in_sqlite(f"sqlite:///{folder / 'mlflow.db'}", "train", folder, Adoption())
print(count, time.perf_counter() - start)
"""

APP = hydraflow_app("seed")


def config(index: int, kind: str) -> dict[str, Any]:
    cfg = training_config(index)
    if kind == "interpolated":
        cfg["run_name"] = "${model.name}_${seed}"
    if kind == "resolver":
        cfg["token"] = "${oc.env:BENCH_TOKEN,none}"
    return cfg


def build(folder: Path, kind: str) -> None:
    import mlflow
    from omegaconf import OmegaConf

    folder.mkdir(parents=True)
    with contextlib.chdir(folder):
        experiment = mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").create_experiment(
            EXPERIMENT
        )
    root = folder / "mlruns" / experiment
    root.mkdir(parents=True)
    (root / "hydra.yaml").write_text(HYDRA_YAML)
    runs, tags, writes = [], [], []
    with ThreadPoolExecutor(8) as pool:
        for index in range(RUNS):
            run_id = synthetic_run_id(index)
            artifacts = root / run_id / "artifacts"
            text = OmegaConf.to_yaml(OmegaConf.create(config(index, kind)))
            writes.append(pool.submit(write_artifacts, artifacts, text, index))
            row, run_tags = finished_run(run_id, index, str(artifacts), experiment)
            runs.append(row)
            tags.extend(run_tags)
        for write in writes:
            write.result()
    with contextlib.closing(sqlite3.connect(folder / "mlflow.db")) as db, db:
        db.executemany(INSERT_RUNS, runs)
        db.executemany(INSERT_TAGS, tags)
    with contextlib.closing(sqlite3.connect(folder / "mlflow.db")) as db:
        db.execute("PRAGMA journal_mode = WAL")


def write_artifacts(folder: Path, config_yaml: str, index: int) -> None:
    hydra = folder / ".hydra"
    hydra.mkdir(parents=True)
    (hydra / "config.yaml").write_text(config_yaml)
    (hydra / "overrides.yaml").write_text(f"- seed={index}\n")
    os.link(folder.parents[1] / "hydra.yaml", hydra / "hydra.yaml")
    (folder / "train.log").write_text(LOG)


def store(name: str) -> Path:
    """The store, built once and cached in the temp directory (an app's runs
    added by a measurement stay; the tags adoption writes are removed)."""
    folder = cache_dir("adoption") / f"v{FORMAT}-{name}"
    ready = folder / "ready"
    if not ready.exists():
        if folder.exists():
            subprocess.run(["rm", "-rf", str(folder)], check=True)
        started = time.perf_counter()
        build(folder, name)
        print(f"built {name}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
        ready.touch()
    return folder


def forget_adoption(folder: Path) -> None:
    """Removes what adoption wrote, from the adopted runs only (an app's own
    runs keep their digests)."""
    keys = (DIGEST_TAG, ADOPTED_TAG, OVERRIDES_TAG, CONFIG_TAG)
    with contextlib.closing(sqlite3.connect(folder / "mlflow.db")) as db, db:
        adopted = db.execute("SELECT run_uuid FROM tags WHERE key = ?", (ADOPTED_TAG,)).fetchall()
        db.executemany(
            "DELETE FROM tags WHERE run_uuid = ? AND key IN (?, ?, ?, ?)",
            [(run_id, *keys) for (run_id,) in adopted],
        )


def environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}


def examine(folder: Path) -> tuple[int, float]:
    result = subprocess.run(
        [sys.executable, "-c", EXAMINE, str(folder)],
        capture_output=True,
        text=True,
        env=environment(),
        check=True,
    )
    count, seconds = result.stdout.split()
    return int(count), float(seconds)


def app_seconds(folder: Path, seed: int) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "app.py", f"seed={seed}", f"hydra.job.name={EXPERIMENT}"],
        cwd=folder,
        env=environment(),
        capture_output=True,
        check=True,
    )
    return time.perf_counter() - start


def untagged(folder: Path) -> int:
    """The runs without a digest."""
    with contextlib.closing(sqlite3.connect(folder / "mlflow.db")) as db:
        (count,) = db.execute(
            "SELECT COUNT(*) FROM runs WHERE run_uuid NOT IN "
            "(SELECT run_uuid FROM tags WHERE key = ?)",
            (DIGEST_TAG,),
        ).fetchone()
    return int(count)


def measure(folder: Path) -> dict[str, float]:
    once = []
    for _ in range(3):
        forget_adoption(folder)
        count, seconds = examine(folder)
        assert count == RUNS, count
        once.append(seconds)
    assert untagged(folder) == 0
    later = []
    for _ in range(5):
        count, seconds = examine(folder)
        assert count == 0, count
        later.append(seconds)
    forget_adoption(folder)
    (folder / "app.py").write_text(textwrap.dedent(APP))
    seed = -int(time.time())  # a new config each time
    first = app_seconds(folder, seed)
    assert untagged(folder) == 0
    after = app_seconds(folder, seed - 1)
    return {
        "once": statistics.median(once),
        "later": statistics.median(later),
        "app_first": first,
        "app_after": after,
    }


def main() -> int:
    print(f"load average {os.getloadavg()[0]:.2f} at the start", file=sys.stderr)
    results = {}
    for name in sys.argv[1:] or KINDS:
        results[name] = measure(store(name))
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    print(f"{RUNS:,} runs | examined once | each later process | app, first | app, next")
    met = True
    for name, figures in results.items():
        print(
            f"{name:12} | {figures['once']:.2f} s | {figures['later'] * 1000:.1f} ms"
            f" | {figures['app_first']:.2f} s | {figures['app_after']:.2f} s"
        )
        met = met and figures["once"] <= TARGET_SECONDS
    print(
        f"target: examined once <= {TARGET_SECONDS} s, every store: {'met' if met else 'NOT met'}"
    )
    print(json.dumps(results), file=sys.stderr)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
