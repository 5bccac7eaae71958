"""Secrets in configs, end to end: real Hydra apps run by `hydraflow run`
into a real SQLite store, then every byte of the store is searched."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import pytest

from tests.conftest import run_cli

ENV_SECRET = "sk-env-secret-0123456789"
YAML_SECRET = "hunter2-from-yaml"
CLI_SECRET = "tok-from-the-command-line"

CONFIG = f"""
api_key: ${{oc.env:MY_API_KEY}}
endpoint: https://api.example/${{oc.env:MY_API_KEY}}/v1
alias: ${{api_key}}
custom: ${{from_env:MY_API_KEY}}
db:
  host: localhost
  password: {YAML_SECRET}
service:
  token: none
lr: 0.1
"""

APP = """
import json, logging, os

from omegaconf import OmegaConf

import hydraflow

OmegaConf.register_new_resolver("from_env", lambda name: os.getenv(name), use_cache=True)
log = logging.getLogger(__name__)


@hydraflow.main(
    version_base=None, config_path="conf", config_name="config", secrets=["db.password", "*.token"]
)
def app(run, cfg):
    received = {key: str(cfg[key]) for key in ("api_key", "endpoint", "alias", "custom")}
    received.update(password=cfg.db.password, token=cfg.service.token, lr=cfg.lr)
    with open(os.environ["RECEIVED"], "a") as out:
        out.write(json.dumps(received) + "\\n")
    log.info("connecting with %s and %s", cfg.api_key, cfg.db.password)


if __name__ == "__main__":
    app()
"""

JOBS = f"""
jobs:
  secret:
    run: {sys.executable} app.py
    sets:
      - all: lr=0.1,0.2
        add: service.token={CLI_SECRET}
"""


def make_project(folder: Path) -> Path:
    (folder / "conf").mkdir()
    (folder / "conf" / "config.yaml").write_text(CONFIG)
    (folder / "app.py").write_text(textwrap.dedent(APP))
    (folder / "hydraflow.yaml").write_text(JOBS)
    return folder


def stored_bytes(folder: Path) -> list[tuple[Path, bytes]]:
    """Everything the store and hydraflow's own records hold, with SQLite's
    WAL and journal files (mlflow.db*, mlruns/, .hydraflow/)."""
    files = [p for p in folder.glob("mlflow.db*") if p.is_file()]
    for tree in ("mlruns", ".hydraflow"):
        files += [p for p in (folder / tree).rglob("*") if p.is_file()]
    return [(path, path.read_bytes()) for path in files]


@pytest.mark.slow
def test_secrets_never_reach_the_store_and_the_app_gets_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = make_project(tmp_path)
    received = tmp_path.parent / f"{tmp_path.name}-received.jsonl"
    monkeypatch.setenv("MY_API_KEY", ENV_SECRET)
    monkeypatch.setenv("RECEIVED", str(received))
    result = run_cli("run", "secret", cwd=folder)
    assert result.returncode == 0, result.stderr

    apps = [json.loads(line) for line in received.read_text().splitlines()]
    assert sorted(app["lr"] for app in apps) == [0.1, 0.2]
    for app in apps:
        assert app["api_key"] == app["alias"] == app["custom"] == ENV_SECRET
        assert app["endpoint"] == f"https://api.example/{ENV_SECRET}/v1"
        assert (app["password"], app["token"]) == (YAML_SECRET, CLI_SECRET)

    stored = stored_bytes(folder)
    assert any(path.name == "mlflow.db" for path, _ in stored)
    assert any(path.name == "config.yaml" for path, _ in stored)
    assert any(path.name.endswith(".log") for path, _ in stored)
    for secret in (ENV_SECRET, YAML_SECRET, CLI_SECRET):
        leaks = [str(path) for path, data in stored if secret.encode() in data]
        assert leaks == [], f"{secret} in {leaks}"
    # The app's own log lines and Hydra's are theirs; hydraflow's own lines show
    # no secret of the config (the progress names commands as the jobs file has them).
    ours = [line for line in result.stderr.splitlines() if line.startswith("hydraflow:")]
    assert not any(secret in line for line in ours for secret in (ENV_SECRET, YAML_SECRET))

    client = mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    [experiment] = [e for e in client.search_experiments() if e.name == "secret"]
    [run, _] = client.search_runs([experiment.experiment_id])
    params = run.data.params
    assert params["api_key"] == "${oc.env:MY_API_KEY}"
    assert params["endpoint"] == "https://api.example/${oc.env:MY_API_KEY}/v1"
    assert params["alias"] == "${api_key}"
    assert params["custom"] == "${from_env:MY_API_KEY}"
    assert params["db.password"] == params["service.token"] == "***"
    assert params["db.host"] == "localhost"
    assert json.loads(run.data.tags["hydraflow.config"])["api_key"] == "${oc.env:MY_API_KEY}"
    assert "service.token=***" in run.data.tags["hydraflow.overrides"]
    # Run names cut keys to their last part where that stays unambiguous.
    assert "token=***" in run.info.run_name.split()
    assert CLI_SECRET not in run.info.run_name


@pytest.mark.slow
def test_a_changed_secret_is_the_same_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The digest is taken of the recorded text, not of the secret's value."""
    folder = make_project(tmp_path)
    monkeypatch.setenv("RECEIVED", str(tmp_path.parent / f"{tmp_path.name}-received.jsonl"))
    outcomes = []
    for secret in (ENV_SECRET, "sk-another-secret-987654"):
        monkeypatch.setenv("MY_API_KEY", secret)
        result = run_cli("run", "secret", cwd=folder)
        assert result.returncode == 0, result.stderr
        outcomes.append(result.stderr.splitlines()[-1])
    assert "2 finished" in outcomes[0]
    assert "2 skipped" in outcomes[1]


def test_which_keys_are_secret_and_how_they_are_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    from hydraflow.tracking.secrets import find_secrets
    from omegaconf import OmegaConf

    monkeypatch.setenv("MY_API_KEY", ENV_SECRET)
    cfg = OmegaConf.create(
        {
            "plain": "${lr}",
            "lr": 0.1,
            "urls": ["x", "${oc.env:MY_API_KEY}"],
            "nested": {"deeper": "${alias}"},
            "alias": "${oc.env:MY_API_KEY}",
            "auth": {"user": "me", "password": "pw-literal"},
            "creds": {"a": 1, "b": [2]},
        }
    )
    secrets = find_secrets(cfg, ["password", "creds"])
    assert dict(secrets.recorded) == {
        "urls.1": "${oc.env:MY_API_KEY}",
        "nested.deeper": "${alias}",
        "alias": "${oc.env:MY_API_KEY}",
        "auth.password": "***",
        "creds.a": "***",
        "creds.b.0": "***",
    }
    # A secret that an `update` copied elsewhere is hidden there too: that
    # part only, so values that differ elsewhere stay apart.
    copied = {"lr": 0.1, "auth": {"user": "me"}, "note": f"key={ENV_SECRET}"}
    assert secrets.redact(copied)["note"] == "key=***"
    assert secrets.overrides(
        ["auth.password=x", "+creds.c=1", "lr=0.2", f"dir={ENV_SECRET}/val"]
    ) == ["auth.password=***", "+creds.c=***", "lr=0.2", "dir=***/val"]


def test_a_default_for_an_unset_variable_is_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """It is the config's own text; only a value the environment gave is secret."""
    from hydraflow.tracking.secrets import find_secrets
    from omegaconf import OmegaConf

    monkeypatch.delenv("DATA_ROOT", raising=False)
    cfg = OmegaConf.create(
        {"root": "${oc.env:DATA_ROOT,/data/imagenet}", "split": "/data/imagenet/train"}
    )
    unset = find_secrets(cfg)
    # Recorded as its text all the same: whether it is set is no part of the identity.
    assert dict(unset.recorded) == {"root": "${oc.env:DATA_ROOT,/data/imagenet}"}
    assert unset.redact({"split": "/data/imagenet/train"}) == {"split": "/data/imagenet/train"}
    monkeypatch.setenv("DATA_ROOT", "/data/imagenet")  # the same text, from the environment now
    given = find_secrets(cfg)
    assert dict(given.recorded) == dict(unset.recorded)
    assert given.redact({"split": "/data/imagenet/train"}) == {"split": "***/train"}


def test_a_key_that_refers_to_a_section_is_watched_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """`copy: ${dirs}` resolves the section's values as the record is made:
    a variable read there is a secret, and one unset fails nothing."""
    from hydraflow.tracking.configs import to_record
    from hydraflow.tracking.secrets import find_secrets
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"dirs": {"key": "${oc.env:MY_API_KEY}"}, "copy": "${dirs}", "lr": 0.1})
    monkeypatch.setenv("MY_API_KEY", ENV_SECRET)
    secrets = find_secrets(cfg)
    assert dict(secrets.recorded) == {"dirs.key": "${oc.env:MY_API_KEY}", "copy": "${dirs}"}
    assert ENV_SECRET not in json.dumps(to_record(cfg, secrets)[1])
    monkeypatch.delenv("MY_API_KEY")  # Hydra runs an app that never reads it
    _, record = to_record(cfg, find_secrets(cfg))
    assert record["copy"] == "${dirs}"


def test_a_variable_inside_a_longer_value_is_hidden_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hydraflow.tracking.secrets import find_secrets
    from omegaconf import OmegaConf

    monkeypatch.delenv("UNSET_ONE", raising=False)
    monkeypatch.setenv("SET_ONE", "/mnt/dsdata")
    cfg = OmegaConf.create({"a": "${oc.env:UNSET_ONE,abcdefg}-${oc.env:SET_ONE}"})
    secrets = find_secrets(cfg)
    assert secrets.redact({"b": "/mnt/dsdata-abcdefg"}) == {"b": "***-abcdefg"}


SPLIT_CONFIG = """
data_root: ${oc.env:DATA_ROOT,/data/imagenet-default}
split_dir: ${data_root}/train
"""

SPLIT_APP = """
import os
import hydraflow


@hydraflow.main(version_base=None, config_path="conf", config_name="config")
def app(run, cfg):
    with open(os.environ["RECEIVED"], "a") as out:
        out.write(cfg.split_dir + "\\n")


if __name__ == "__main__":
    app()
"""


@pytest.mark.slow
@pytest.mark.parametrize("root", [None, "/mnt/secret-dataset-root"])
def test_values_that_share_an_env_value_stay_different_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, root: str | None
) -> None:
    """Two configs differing only in a value that contains the variable's
    value (or its default) run twice, as under `@hydra.main`; they were one
    identity, the second skipped as finished."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.yaml").write_text(SPLIT_CONFIG)
    (tmp_path / "app.py").write_text(SPLIT_APP)
    received = tmp_path / "received.txt"
    shown_root = root or "/data/imagenet-default"
    for name, value in {"RECEIVED": str(received), "DATA_ROOT": root}.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    splits = [f"{shown_root}/train", f"{shown_root}/val"]
    result = subprocess.run(
        [sys.executable, "app.py", "-m", f"split_dir={','.join(splits)}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert received.read_text().splitlines() == splits  # what @hydra.main gives the app

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    [experiment] = [e for e in client.search_experiments() if e.name == "app"]
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED"]
    shown = sorted(r.data.params["split_dir"] for r in runs)
    assert {r.data.params["data_root"] for r in runs} == {
        "${oc.env:DATA_ROOT,/data/imagenet-default}"
    }
    if root is None:
        assert shown == splits
        # Hydra's config.yaml as stored: the default is its own text, not hidden.
        configs = [data for path, data in stored_bytes(tmp_path) if path.name == "config.yaml"]
        assert configs and all(b"${oc.env:DATA_ROOT,/data/imagenet-default}" in c for c in configs)
    else:
        assert shown == ["***/train", "***/val"]
        leaks = [str(path) for path, data in stored_bytes(tmp_path) if root.encode() in data]
        assert leaks == []


def test_start_run_records_secrets_as_their_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hydraflow
    from hydraflow import store
    from omegaconf import OmegaConf

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MY_API_KEY", ENV_SECRET)
    store.forget_opened()
    config = OmegaConf.create({"key": "${oc.env:MY_API_KEY}", "db": {"password": YAML_SECRET}})
    try:
        with hydraflow.start_run(config, experiment_name="direct", secrets=["password"]) as run:
            run_id = run.info.run_id
    finally:
        mlflow.set_tracking_uri(None)
        store.forget_opened()
    stored = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(run_id)
    assert stored.data.params == {"key": "${oc.env:MY_API_KEY}", "db.password": "***"}
    for secret in (ENV_SECRET, YAML_SECRET):
        assert not [p for p, data in stored_bytes(tmp_path) if secret.encode() in data]
