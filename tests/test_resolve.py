"""`@hydraflow.main` never changes what the app computes: the config is
resolved once, on the app's own config, and what is recorded is what the app
reads. The oracle is the same app under plain `@hydra.main` (only the
decorator line differs) and MLflow's own reading of the stored run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import mlflow
import pytest
from omegaconf import OmegaConf

# The app's header: resolvers that count their calls (`count` uncached,
# `cached` cached), draw from `random`, or return objects; the decorator is
# `hydra.main` or `hydraflow.main`, chosen by the environment.
APP_HEAD = """
import datetime, json, os, random, sys

import hydra
import numpy as np
from omegaconf import OmegaConf

import hydraflow

CALLS = {"count": 0, "cached": 0}


def counter(name):
    def call():
        CALLS[name] += 1
        return CALLS[name]

    return call


class Kind:
    pass


OmegaConf.register_new_resolver("count", counter("count"))
OmegaConf.register_new_resolver("cached", counter("cached"), use_cache=True)
OmegaConf.register_new_resolver("randint", lambda: random.randint(0, 10**6))
OmegaConf.register_new_resolver(
    "cached_randint", lambda: random.randint(0, 10**6), use_cache=True
)
OmegaConf.register_new_resolver("npint", lambda: np.int64(3))
OmegaConf.register_new_resolver("date", lambda: datetime.date(2026, 1, 2))
OmegaConf.register_new_resolver("kind", lambda: Kind)
main = hydraflow.main if os.environ["DECORATOR"] == "hydraflow" else hydra.main


def report(**seen):
    with open(os.environ["SEEN"], "a") as out:
        out.write(json.dumps(seen, default=repr) + "\\n")
"""

DRAWS_APP = """
@main(version_base=None, config_path="conf", config_name="config")
def app(cfg):
    calls = dict(CALLS)
    report(calls=calls, c=cfg.c, k=cfg.k, seed=cfg.seed, next=random.random())


if __name__ == "__main__":
    random.seed(0)
    app()
"""

DRAWS_CONFIG = """
c: ${count:}
k: ${cached:}
seed: ${%s:}
"""

OBJECTS_APP = """
@main(version_base=None, config_path="conf", config_name="config")
def app(cfg):
    report(
        n=repr(cfg.n), when=repr(cfg.when), kind=cfg.kind.__name__, m=repr(dict(cfg.m)),
        odd=[cfg[key] for key in ("lr(init)", "x@y", "q?", "has,comma", "it's")],
        nested=cfg.grp["a[0]"],
    )


if __name__ == "__main__":
    app()
"""

OBJECTS_CONFIG = """
n: ${npint:}
when: ${date:}
kind: ${kind:}
"lr(init)": 0.1
"x@y": 1
"q?": 2
"has,comma": 3
"it's": 4
grp:
  "a[0]": 1
  ok: 2
m:
  1: a
  b: c
"β": 5
"""

SCHEMA_APP = """
from dataclasses import dataclass


@dataclass
class Config:
    seed: int = "${randint:}"
    c: int = "${count:}"


@hydraflow.main(Config)
def app(cfg):
    report(calls=dict(CALLS), seed=cfg.seed, c=cfg.c)


if __name__ == "__main__":
    random.seed(0)
    app()
"""


def make_project(folder: Path, app: str, config: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.py").write_text(textwrap.dedent(APP_HEAD) + textwrap.dedent(app))
    if config is not None:
        (folder / "conf").mkdir(exist_ok=True)
        (folder / "conf" / "config.yaml").write_text(textwrap.dedent(config))
    return folder


def run_app(folder: Path, decorator: str, *args: str) -> tuple[list[dict[str, Any]], str]:
    """What the app saw, one dict per job, and the command's output (Hydra
    logs to stdout)."""
    seen = folder / f"{decorator}-seen.jsonl"
    seen.unlink(missing_ok=True)
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "HYDRA_"))
    }
    env.update(DECORATOR=decorator, SEEN=str(seen))
    dirs = [f"hydra.run.dir={decorator}-out", f"hydra.sweep.dir={decorator}-multirun"]
    result = subprocess.run(
        [sys.executable, "app.py", *args, *dirs],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    jobs = [json.loads(line) for line in seen.read_text().splitlines()]
    return jobs, result.stdout + result.stderr


def stored_runs(folder: Path) -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    [experiment] = [e for e in client.search_experiments() if e.name == "app"]
    return list(client.search_runs([experiment.experiment_id], order_by=["attributes.start_time"]))


@pytest.mark.parametrize("resolver", ["cached_randint", "randint"])
def test_the_recorded_seed_is_the_one_hydra_gives_the_app(tmp_path: Path, resolver: str) -> None:
    """`seed: ${randint:}` after `random.seed(0)`: a cached resolver gives the
    app Hydra's value and leaves `random` where Hydra leaves it; either way
    the run records the value the app's first read has under Hydra."""
    folder = make_project(tmp_path, DRAWS_APP, DRAWS_CONFIG % resolver)
    [hydra_seen], _ = run_app(folder, "hydra")
    [flow_seen], _ = run_app(folder, "hydraflow")
    [run] = stored_runs(folder)
    assert run.data.params["seed"] == str(hydra_seen["seed"])
    if resolver == "cached_randint":
        assert flow_seen["seed"] == hydra_seen["seed"]
        assert flow_seen["next"] == hydra_seen["next"]


def test_each_resolver_runs_once_before_the_app(tmp_path: Path) -> None:
    """One resolution, on the app's own config: a cached resolver gives the
    app the value recorded, an uncached one is called once more (documented)."""
    folder = make_project(tmp_path, DRAWS_APP, DRAWS_CONFIG % "cached_randint")
    hydra_jobs, _ = run_app(folder, "hydra", "-m", "+z=1,2")
    flow_jobs, _ = run_app(folder, "hydraflow", "-m", "+z=1,2")
    assert [job["k"] for job in flow_jobs] == [job["k"] for job in hydra_jobs] == [1, 2]
    first = flow_jobs[0]
    assert first["calls"] == {"count": 1, "cached": 1}
    assert first["c"] == 2  # the app's read calls `count` again, as under Hydra
    runs = stored_runs(folder)
    assert [run.data.params["k"] for run in runs] == ["1", "2"]
    assert runs[0].data.params["c"] == "1"
    assert json.loads(runs[0].data.tags["hydraflow.config"])["k"] == 1


def test_a_schema_instance_holds_the_values_recorded(tmp_path: Path) -> None:
    """The dataclass form builds its instance from the same resolution."""
    folder = make_project(tmp_path, SCHEMA_APP)
    [seen], _ = run_app(folder, "hydraflow")
    assert seen["calls"] == {"count": 1, "cached": 0}
    [run] = stored_runs(folder)
    assert run.data.params["seed"] == str(seen["seed"])
    assert run.data.params["c"] == str(seen["c"]) == "1"


@pytest.fixture(scope="module")
def objects(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, Any, str]:
    """The objects app under both decorators, a two-job sweep."""
    folder = make_project(tmp_path_factory.mktemp("objects"), OBJECTS_APP, OBJECTS_CONFIG)
    hydra_jobs, _ = run_app(folder, "hydra", "-m", "+z=1,2")
    flow_jobs, output = run_app(folder, "hydraflow", "-m", "+z=1,2")
    return folder, hydra_jobs, flow_jobs, output


def test_objects_from_resolvers_odd_keys_and_mixed_keys_reach_the_app(
    objects: tuple[Path, Any, Any, str],
) -> None:
    folder, hydra_jobs, flow_jobs, _ = objects
    assert flow_jobs == hydra_jobs
    assert hydra_jobs[0]["m"] == "{1: 'a', 'b': 'c'}"
    assert [run.info.status for run in stored_runs(folder)] == ["FINISHED", "FINISHED"]


def test_objects_from_resolvers_are_recorded_as_values_or_text(
    objects: tuple[Path, Any, Any, str],
) -> None:
    folder, *_ = objects
    run = stored_runs(folder)[0]
    assert run.data.params["n"] == "3"
    assert run.data.params["when"] == "2026-01-02"
    recorded = json.loads(run.data.tags["hydraflow.config"])
    assert recorded["n"] == 3
    assert recorded["kind"].endswith("Kind'>")


def test_keys_mlflow_refuses_stay_out_of_params_with_one_warning(
    objects: tuple[Path, Any, Any, str],
) -> None:
    import hydraflow

    folder, _, _, output = objects
    refused = ["lr(init)", "x@y", "q?", "has,comma", "it's", "grp.a[0]"]
    [warning] = [line for line in output.splitlines() if "MLflow refuses" in line]
    assert warning.endswith(", ".join(refused))
    run = stored_runs(folder)[0]
    assert not set(refused) & set(run.data.params)
    assert run.data.params["β"] == "5"
    assert run.data.params["grp.ok"] == "2"
    recorded = json.loads(run.data.tags["hydraflow.config"])
    assert recorded["lr(init)"] == 0.1 and recorded["grp"]["a[0]"] == 1
    runs = hydraflow.load("app", tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    assert runs.frame["lr(init)"].to_list() == [0.1, 0.1]


def test_mixed_keys_have_one_stable_digest_apart_from_text_keys() -> None:
    from hydraflow.tracking.configs import to_record
    from hydraflow.tracking.identity import config_json

    mixed = to_record(OmegaConf.create({"m": {1: "a", "b": "c"}}))
    reordered = to_record(OmegaConf.create({"m": {"b": "c", 1: "a"}}))
    text_keys = to_record(OmegaConf.create({"m": {"1": "a", "b": "c"}}))
    assert mixed[0] == reordered[0] != text_keys[0]
    assert config_json(mixed[1]) == config_json(reordered[1]) == '{"m":{"1":"a","b":"c"}}'
    # Keys of one type are sorted as before: the digests of stored runs hold.
    assert config_json({"b": 1, "a": {10: 1, 9: 2}}) == '{"a":{"9":2,"10":1},"b":1}'


def test_a_failure_of_hydraflow_in_a_claim_is_no_store_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the store's own failures are "cannot use the MLflow store"."""
    from hydraflow.errors import StoreError
    from hydraflow.tracking import lifecycle
    from hydraflow.tracking.configs import to_record

    def broken(*args: Any) -> None:
        raise TypeError("'<' not supported between instances of 'str' and 'int'")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(lifecycle, "create_run", broken)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    context = lifecycle.JobContext.current("claims")
    options = lifecycle.TrackingOptions(uri)
    config_yaml, container = to_record({"lr": 0.1})
    with pytest.raises(TypeError, match="not supported"):
        lifecycle.claim(context, config_yaml, container, options)

    def unwritable(*args: Any) -> None:
        raise PermissionError(13, "Permission denied", str(tmp_path))

    monkeypatch.setattr(lifecycle, "create_run", unwritable)
    with pytest.raises(StoreError, match="cannot use the MLflow store"):
        lifecycle.claim(context, config_yaml, container, options)


def test_a_cached_resolver_reading_the_environment_is_secret_everywhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its cache answers the second key: the variable it read counts there
    too; cached before (the config read first), it is still found, and the
    app keeps the value it read."""
    from hydraflow.tracking.secrets import resolve_watched

    name = "hf_test_cached_env"
    if not OmegaConf.has_resolver(name):
        OmegaConf.register_new_resolver(name, lambda var: os.environ[var], use_cache=True)
    monkeypatch.setenv("HF_RESOLVE_SECRET", "sk-cached-secret-42")
    for read_first in (False, True):
        cfg = OmegaConf.create(
            {"a": f"${{{name}:HF_RESOLVE_SECRET}}", "b": f"${{{name}:HF_RESOLVE_SECRET}}"}
        )
        if read_first:
            assert cfg.a == "sk-cached-secret-42"
        secrets, resolution = resolve_watched(cfg)
        assert set(secrets.recorded) == {"a", "b"}
        assert "sk-cached-secret-42" in secrets.values
        assert resolution == {"a": "sk-cached-secret-42", "b": "sk-cached-secret-42"}


def test_one_resolution_serves_the_record_and_the_app() -> None:
    """An uncached resolver is called once per key by the resolution; a
    cached one once in all, its value the app's."""
    from hydraflow.tracking.configs import to_record
    from hydraflow.tracking.secrets import resolve_watched

    calls: list[str] = []
    for name, cache in (("hf_test_once", False), ("hf_test_once_cached", True)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(
                name, lambda n=name: calls.append(n) or len(calls), use_cache=cache
            )
    cfg = OmegaConf.create(
        {"u": "${hf_test_once:}", "k": "${hf_test_once_cached:}", "again": "${k}", "none": None}
    )
    secrets, resolution = resolve_watched(cfg)
    _, plain = to_record(cfg, secrets, resolution)
    assert sorted(calls) == ["hf_test_once", "hf_test_once_cached"]
    assert plain == {"u": plain["u"], "k": plain["k"], "again": plain["k"], "none": None}
    assert cfg.k == plain["k"]
    assert plain == OmegaConf.to_container(cfg, resolve=True) | {"u": plain["u"]}


def test_a_variable_after_a_failing_part_is_hidden_all_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`${e}${oc.env:TOKEN}` with `e` unset stops before reading TOKEN; its
    value is hidden elsewhere all the same, as the adoption's fast path hides it."""
    from hydraflow.tracking.configs import to_record
    from hydraflow.tracking.secrets import resolve_watched

    monkeypatch.delenv("HF_RESOLVE_UNSET", raising=False)
    monkeypatch.setenv("HF_RESOLVE_TOKEN", "secret-token-1")
    cfg = OmegaConf.create(
        {
            "e": "${oc.env:HF_RESOLVE_UNSET}",
            "g": "${e}${oc.env:HF_RESOLVE_TOKEN}",
            "path": "secret-token-1/data",
        }
    )
    secrets, resolution = resolve_watched(cfg)
    assert to_record(cfg, secrets, resolution)[1]["path"] == "***/data"
