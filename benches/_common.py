"""What several benches share: the trivial apps they time, the callback that
stamps each Hydra job's start, the environment their children run in, and
the configs of the synthetic stores. Not a bench itself (`make bench` runs
`benches/bench_*.py`); a bench run as a script finds it beside itself."""

from __future__ import annotations

import itertools
import os
import random
import statistics
import sys
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

APP_TEMPLATE = """
from dataclasses import dataclass
{imports}import hydraflow


@dataclass
class Config:
{fields}


@hydraflow.main(Config)
def app({parameters}):
    {body}


if __name__ == "__main__":
    app()
"""


def hydraflow_app(
    *fields: str, parameters: str = "run, cfg", body: str = "pass", imports: str = ""
) -> str:
    """A trivial `@hydraflow.main` app with a dataclass config of int fields
    that default to 0 (`hydraflow_app("i", "batch")`); `body` is its one line."""
    return APP_TEMPLATE.format(
        imports=f"{imports}\n" if imports else "",
        fields="\n".join(f"    {name}: int = 0" for name in fields),
        parameters=parameters,
        body=body,
    )


# The same app under plain `@hydra.main`: Hydra's own cost of a job.
PLAIN_APP = """
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

# A Hydra callback (`stamp.py`) that appends the wall and CPU time at the
# start of every job to `stamps.txt`; STAMP_OVERRIDE turns it on.
STAMP = """
import time
from hydra.experimental.callback import Callback

class Stamp(Callback):
    def on_job_start(self, config, **kwargs):
        with open("stamps.txt", "a") as out:
            out.write(f"{time.perf_counter()} {time.process_time()}\\n")
"""
STAMP_OVERRIDE = "+hydra.callbacks.stamp._target_=stamp.Stamp"


def read_stamps(folder: Path) -> tuple[list[float], list[float]]:
    """The wall and CPU times STAMP wrote, job by job."""
    stamped = [line.split() for line in (folder / "stamps.txt").read_text().splitlines()]
    return [float(s[0]) for s in stamped], [float(s[1]) for s in stamped]


def median_gap(times: list[float]) -> float:
    """The median gap between consecutive times, in ms: one job's cost, free
    of the process's start and robust to a disturbed job or two."""
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    return statistics.median(gaps) * 1e3 if gaps else float("nan")


# hydraflow's variables for one command (`hydraflow.protocol`), never meant for a bench's apps.
COMMAND_VARIABLES = ("HYDRAFLOW_EVENTS", "HYDRAFLOW_INPUTS")


def apps_environment(
    python_dir: str | None = None, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A user's shell for the apps (of `base`, else this process's
    environment): the default store (no MLFLOW_TRACKING_URI), this
    interpreter's executables first on PATH and its hydraflow (no
    PYTHONPATH), unless `python_dir` puts another hydraflow's source first."""
    drop = ("MLFLOW_TRACKING_URI", "PYTHONPATH", *COMMAND_VARIABLES)
    environment = {k: v for k, v in (base or os.environ).items() if k not in drop}
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}"
    if python_dir:
        environment["PYTHONPATH"] = python_dir
    return environment


def app_experiment(folder: Path, name: str = "app") -> tuple[Any, str]:
    """MLflow's client of the SQLite store in `folder`, and the id of its
    experiment `name` (which a first multirun has made)."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None, f"no experiment {name} in {folder}"
    return client, experiment.experiment_id


# The synthetic stores: finished runs written straight into MLflow's tables,
# row for row as MLflow writes them, with what a Hydra job leaves as artifacts.
# A job's log, and Hydra's `hydra.yaml` (the same in every run of a sweep).
LOG = "[2026-11-25 10:00:00,000][__main__][INFO] - training\n" * 20
HYDRA_YAML = "hydra:\n  run:\n    dir: outputs/x\n" + "  # hydra's own settings\n" * 150
INSERT_RUNS = (
    "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id,"
    " status, start_time, end_time, source_version, lifecycle_stage, artifact_uri,"
    " experiment_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
INSERT_TAGS = "INSERT INTO tags (key, value, run_uuid) VALUES (?,?,?)"


def synthetic_run_id(index: int) -> str:
    """Run `index`'s id, the same in every build."""
    return uuid.UUID(int=random.Random(f"run{index}").getrandbits(128)).hex


def start_ms(index: int) -> int:
    """Run `index`'s start time: a second after the one before."""
    return 1_790_000_000_000 + index * 1000


def finished_run(
    run_id: str, index: int, artifact_uri: str, experiment: str
) -> tuple[tuple[object, ...], list[tuple[str, str, str]]]:
    """Run `index`'s row of `runs` (INSERT_RUNS), FINISHED 0.9 s after its
    start, and the tags MLflow gives every run (INSERT_TAGS)."""
    name = f"run-{index}"
    start = start_ms(index)
    row = (run_id, name, "LOCAL", "train.py", "", "bench", "FINISHED", start,
           start + 900, "", "active", artifact_uri, int(experiment))  # fmt: skip
    tags = {
        "mlflow.user": "bench",
        "mlflow.source.name": "train.py",
        "mlflow.source.type": "LOCAL",
        "mlflow.runName": name,
    }
    return row, [(key, value, run_id) for key, value in tags.items()]


def training_config(index: int) -> dict[str, Any]:
    """The config of the synthetic stores' run `index`: ten keys of mixed
    types, drawn from `index` alone (a cached store stays valid)."""
    pick = random.Random(index)
    return {
        "lr": pick.choice([1e-4, 3e-4, 1e-3, 3e-3, 1e-2]),
        "seed": index,
        "batch": pick.choice([32, 64, 128]),
        "epochs": pick.randrange(10, 14),
        "optimizer": pick.choice(["adam", "sgd", "adamw"]),
        "dropout": pick.choice([0.0, 0.1, 0.2, 0.3]),
        "augment": pick.random() < 0.5,
        "layers": pick.choice([[64, 64], [128, 64, 32]]),
        "model": {"name": pick.choice(["cnn", "vit"]), "depth": pick.randrange(2, 8)},
        "data": {"path": "/data/train", "shuffle": pick.random() < 0.7},
    }


def cache_dir(name: str) -> Path:
    """Where a bench keeps the stores it builds: $HYDRAFLOW_BENCH_CACHE, else
    `hydraflow-bench-NAME` in the temporary directory."""
    default = Path(tempfile.gettempdir()) / f"hydraflow-bench-{name}"
    return Path(os.environ.get("HYDRAFLOW_BENCH_CACHE", default))
