"""The published HydraFlow's six other names, statement by statement.

`Collection`, `get_experiment_names`, `iter_experiment_dirs`,
`iter_artifacts_dirs`, `iter_artifact_paths` and `log_run` are called below
the ways their reference pages and signatures allow: names, lists, glob
patterns and functions for the experiments; keys, defaults, pairs, masks
and functions for a collection. `evaluate` runs each statement in a folder
and gives the repr of its value (`error: TYPE` for an exception), with the
folder, run ids and experiment ids put as `<folder>`, `<run_id>`, `<exp>`.

As a script, it is the oracle: run by the published HydraFlow's Python, it
prints the values as JSON (tests/published_names_oracle.py says how they
were measured). It imports nothing of this package, so the published
environment can run it:

    /work/published/.venv/bin/python tests/published_names.py STORE TUTORIAL LOGRUN

STORE is tests/fixtures/published/store.tar.gz unpacked (the published
tool's runs of its app: finished, failed, interrupted), TUTORIAL a folder
where the published `hydraflow run` made the tutorial's three jobs, LOGRUN
one where tests/apps/logrun/app.py ran `width=5` and `width=-1`.
"""

# ruff: noqa: E501 (the statements are console lines, one a line)

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

# On the fixture store (one experiment, `app`, its seven runs). The run-level
# lists are sorted: the published tool lists a folder's runs in the file
# system's order, this package in the order they started.
STORE_STATEMENTS = [
    "hydraflow.get_experiment_names()",
    "list(hydraflow.iter_experiment_dirs())",
    'list(hydraflow.iter_experiment_dirs("app"))',
    'list(hydraflow.iter_experiment_dirs("a*"))',
    'list(hydraflow.iter_experiment_dirs(["app", "nosuch"]))',
    'list(hydraflow.iter_experiment_dirs(lambda name: name.startswith("a")))',
    'list(hydraflow.iter_experiment_dirs("nosuch"))',
    'list(hydraflow.iter_experiment_dirs("Default"))',
    "sorted(hydraflow.iter_artifacts_dirs())",
    'sorted(hydraflow.iter_artifacts_dirs("app"))',
    'sorted(hydraflow.iter_artifacts_dirs(["a?p"]))',
    'list(hydraflow.iter_artifacts_dirs("nosuch"))',
    'sorted(hydraflow.iter_artifact_paths(".hydra/config.yaml"))',
    'sorted(hydraflow.iter_artifact_paths(Path(".hydra") / "overrides.yaml", "app"))',
    'sorted(p.exists() for p in hydraflow.iter_artifact_paths("app.log", lambda n: n == "app"))',
    'sorted(p.exists() for p in hydraflow.iter_artifact_paths("missing.txt"))',
    'sorted(p.read_text() for p in hydraflow.iter_artifact_paths(".hydra/overrides.yaml"))',
    "sorted(d.parent for d in hydraflow.iter_artifacts_dirs()) == sorted(hydraflow.iter_run_dirs())",
    'sorted(str(r.get("width")) for r in hydraflow.Run.load(hydraflow.iter_run_dirs("app")))',
    'isinstance(hydraflow.Run.load(hydraflow.iter_run_dirs("app")), hydraflow.Collection)',
]

# On the fixture store: the names `Run` and `RunCollection` take their
# arguments by (`relative_path=`, `items=`), and `glob` as an iterator.
FIRST_APP_RUN = 'hydraflow.Run(sorted(hydraflow.iter_run_dirs("app"))[0])'
RUN_API_STATEMENTS = [
    f'{FIRST_APP_RUN}.path(relative_path=".hydra/config.yaml")',
    f'{FIRST_APP_RUN}.path(".hydra")',
    f'next({FIRST_APP_RUN}.glob("*.yaml", ".hydra")).suffix',
    f'next({FIRST_APP_RUN}.glob("config.yaml", ".hydra"))',
    f'sorted(p.name for p in {FIRST_APP_RUN}.glob("*.yaml", ".hydra"))',
    'sorted(p.name for p in hydraflow.Run.load(hydraflow.iter_run_dirs("app")).glob("config.yaml", ".hydra"))',
    'hydraflow.RunCollection(items=[hydraflow.Run(d) for d in hydraflow.iter_run_dirs("app")])',
    'hydraflow.RunCollection(items=hydraflow.Run.load(hydraflow.iter_run_dirs("app")), get=None)',
]

# On the published tool's tutorial store, and on this package's.
TUTORIAL_STATEMENTS = [
    "hydraflow.get_experiment_names()",
    "list(hydraflow.iter_experiment_dirs())",
    'list(hydraflow.iter_experiment_dirs("job_s*"))',
    'list(hydraflow.iter_experiment_dirs(["job_parallel", "job_submit"]))',
    "sorted(len(list(hydraflow.iter_artifacts_dirs(n))) for n in hydraflow.get_experiment_names())",
    'sorted(p.read_text() for p in hydraflow.iter_artifact_paths(".hydra/overrides.yaml", "job_submit"))',
    'sorted(p.name for p in hydraflow.iter_artifact_paths(".hydra", "job_sequential") if p.is_dir())',
    'sorted(d.parent.parent == e for e in hydraflow.iter_experiment_dirs("job_parallel") for d in hydraflow.iter_artifacts_dirs("job_parallel"))',
]

# Anywhere: a collection of plain items.
COLLECTION_SETUP = """
from dataclasses import dataclass, field
from hydraflow import Collection

@dataclass
class Item:
    x: int
    y: str
    z: list = field(default_factory=list)

c = Collection([Item(1, "a", [1]), Item(2, "b", [2]), Item(3, "ab", [1, 2]), Item(2, "c", [1])])
d = Collection([{"k": 1}, {"k": 2}], get=lambda item, key, default: item.get(key, default))
"""
COLLECTION_STATEMENTS = [
    "c, len(c), bool(c), bool(Collection([])), Collection([])",
    "c[0], c[-1], c[1:3], list(c[1:3]), list(c[[0, 2]]), list(c[range(2)])",
    'c["x"].to_list(), c["x"].name, c.to_series("x", name="X").name',
    "list(c.filter(x=2)), list(c.filter(x=[1, 3])), list(c.filter(x={1, 3})), list(c.filter(x=(2, 3)))",
    'list(c.filter(lambda i: i.y.startswith("a"))), list(c.filter(("y", "b"))), list(c.filter([True, False, True, False]))',
    'list(c.filter(x=lambda v: v > 1)), list(c.filter(z=[1])), list(c.filter(z=[1, 2])), list(c.filter(x=2, y="c"))',
    'list(c.exclude(x=2)), list(c.exclude(x=2, y="a"))',
    "c.get(x=1), c.try_get(x=9), c.first(x=2), c.last(x=2), c.first(), c.last()",
    "raises(lambda: c.get(x=2)), raises(lambda: c.get(x=9)), raises(lambda: c.try_get(x=2)), raises(lambda: c.first(x=9)), raises(lambda: Collection([]).last())",
    'c.to_list("y"), c.to_list("w", 0), c.to_numpy("x").tolist(), c.unique("x").tolist(), c.n_unique("y")',
    'list(c.sort("x")), list(c.sort("x", "y", reverse=True)), list(c.sort())',
    "list(c.map(lambda i, k: i.x * k, 3)), list(c.map(lambda i, k=1: i.x + k, k=10))",
    'c.to_frame("x", "y").rows(), c.to_frame("x", ("w", 5)).rows(), c.to_frame("x", d2=lambda i: 2 * i.x).rows()',
    '{k: str(v) for k, v in c.to_frame("x", "y", "z", d2=lambda i: [i.x], d3=lambda i: {"a": i.x}).schema.items()}',
    'list(c.group_by("x").items()), list(c.group_by("x", "y").keys()), len(c.group_by("x")), 2 in c.group_by("x")',
    'c.group_by("x").agg("y", n=len).rows(), c.group_by("x").agg().rows()',
    "len(c.sample(2, seed=1)), raises(lambda: c.sample(9)), raises(lambda: c.sample(0)), sorted(i.x for i in c.shuffle(seed=1))",
    'list(c.filter(c.eq("x", "x"))), list(c.filter(c.startswith("y", "a"))), list(c.filter(c.endswith("y", "b"))), list(c.filter(c.match("y", "a.")))',
    'len(c.filter(c.ne("x", "x"))), len(c.filter(c.gt("x", "x"))), len(c.filter(c.ge("x", "x"))), len(c.filter(c.lt("x", "x"))), len(c.filter(c.le("x", "x")))',
    'd.to_list("k"), d.to_list("q", 0), list(d.filter(k=2))',
    "list(reversed(c)), c[2] in c, c.index(c[2]), c.count(c[2]), type(c[1:2]).__name__",
    "type(type('Sub', (Collection,), {})([1, 2])[0:1]).__name__",
]


def log_run_reading(folder: Path, experiment: str = "logrun") -> list[dict[str, Any]]:
    """What MLflow's client reads of the experiment's runs, by width: status,
    params, metrics, artifacts and whether the log has the traceback."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    assert found is not None, experiment
    readings = []
    for run in client.search_runs([found.experiment_id]):
        root = Path(run.info.artifact_uri.removeprefix("file://"))
        files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
        log = next((root / f for f in files if f.endswith(".log")), None)
        readings.append(
            {
                "status": run.info.status,
                "params": run.data.params,
                "metrics": run.data.metrics,
                "artifacts": files,
                "traceback in log": log is not None and "Traceback" in log.read_text(),
            }
        )
    return sorted(readings, key=lambda r: r["metrics"].get("area", 0))


def raises(call: Any) -> str:
    """The exception's kind (ValueError for the published tool's), or its value."""
    try:
        return repr(call())
    except ValueError:
        return "ValueError"
    except Exception as error:
        return type(error).__name__


def normalized(text: str, folder: Path, *, ids: bool) -> str:
    """The text with `<folder>` for the folder, and with `ids`, `<run_id>`
    and `<exp>` for the ids (the fixture store's are the same everywhere)."""
    text = text.replace(str(folder), "<folder>")
    if ids:
        text = re.sub(r"[0-9a-f]{32}", "<run_id>", text)
        text = re.sub(r"mlruns/\d+", "mlruns/<exp>", text)
    return re.sub(r"PosixPath\('([^']*)'\)", r"'\1'", text)


def evaluate(
    statements: list[str], folder: Path, setup: str = "", *, ids: bool = False
) -> list[str]:
    """The repr of each statement's value, run in `folder`, normalized."""
    import hydraflow

    namespace: dict[str, Any] = {"hydraflow": hydraflow, "Path": Path, "raises": raises}
    values = []
    with contextlib.chdir(folder):
        exec(setup, namespace)
        for statement in statements:
            try:
                value = repr(eval(statement, namespace))
            except Exception as error:
                value = f"error: {type(error).__name__}"
            values.append(normalized(value, folder, ids=ids))
    return values


def main() -> None:
    store, tutorial, log_runs = (Path(arg).resolve() for arg in sys.argv[1:4])
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    json.dump(
        {
            "store": evaluate(STORE_STATEMENTS, store),
            "run_api": evaluate(RUN_API_STATEMENTS, store, ids=True),
            "tutorial": evaluate(TUTORIAL_STATEMENTS, tutorial, ids=True),
            "collection": evaluate(COLLECTION_STATEMENTS, store, COLLECTION_SETUP),
            "log_run": log_run_reading(log_runs),
        },
        sys.stdout,
        indent=1,
    )


if __name__ == "__main__":
    main()
