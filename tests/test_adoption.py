"""Runs made by other tools become the runs of their configs: the published
HydraFlow's (a store it made: tests/fixtures/published/, with the script
that made it) and those of an app under plain `@hydra.main` that starts its
MLflow run itself and logs Hydra's `.hydra/` files.

The oracle of identity is this package's own run of the same config: an
adopted run must carry the digest that run carries."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import hydraflow
import mlflow
import pytest
from hydraflow.mlflow_schema import ForeignRun
from hydraflow.tracking.adoption import (
    Adoption,
    config_record,
    examine,
    fast_record,
    read_overrides,
)
from hydraflow.tracking.configs import to_record
from hydraflow.tracking.identity import config_digest
from hydraflow.tracking.secrets import find_secrets
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from tests.conftest import replace_text, run_in_own_group
from tests.services import TrackingServer, tracking_server

__all__ = ["tracking_server"]  # the fixture this module uses

FIXTURE = Path(__file__).parent / "fixtures" / "published"
APPS = Path(__file__).parent / "apps" / "adoption"
# make_store.py writes this in place of the folder the store was made in.
PLACEHOLDER = "/PUBLISHED_STORE"
FINISHED = ["width=100,200", "height=100,200"]
UNFINISHED = ["width=300,400,500", "height=100"]  # FAILED, FAILED (SIGINT), RUNNING (SIGKILL)


def published_store(folder: Path) -> Path:
    """The published tool's store unpacked in `folder`, its paths made
    `folder`'s, with this package's version of the app beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(FIXTURE / "store.tar.gz") as archive:
        archive.extractall(folder, filter="data")
    replace_text(folder / "mlflow.db", PLACEHOLDER, str(folder))
    shutil.copy(APPS / "app.py", folder / "app.py")
    return folder


def run_app(folder: Path, *args: str, **env: str) -> str:
    """The app's output: Hydra logs to stdout, Python's warnings go to stderr."""
    inherited = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    # Another value than the store was made with: the config records its text.
    environment = {**inherited, "FIXTURE_TOKEN": "another-secret-2", **env}
    result = run_in_own_group([sys.executable, "app.py", *args], folder, environment, 300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def store_runs(uri: str, experiment: str = "app") -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, experiment
    return list(client.search_runs([found.experiment_id], max_results=1000))


def sqlite_uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.mark.slow
def two_at_once(command: list[str], folder: Path, env: dict[str, str]) -> list[tuple[str, str]]:
    """The outputs of two copies of a command started together; both must succeed."""
    processes = [
        subprocess.Popen(
            command,
            cwd=folder,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    return outputs


def test_the_published_tools_runs_are_skipped_or_resumed_never_doubled(tmp_path: Path) -> None:
    folder = published_store(tmp_path / "store")
    before = {r.info.run_id: r.info.status for r in store_runs(sqlite_uri(folder))}
    assert sorted(before.values()) == ["FAILED", "FAILED"] + ["FINISHED"] * 4 + ["RUNNING"]

    first = run_app(folder, "-m", *FINISHED)
    assert first.count("already finished with this config") == 4, first
    assert "adopted 7 runs of app made by another tool" in first
    second = run_app(folder, "-m", *UNFINISHED)
    assert second.count("resuming run") == 3, second
    assert "adopted" not in second  # once is enough

    after = store_runs(sqlite_uri(folder))
    assert {r.info.run_id for r in after} == set(before)
    assert {r.info.status for r in after} == {"FINISHED"}
    resumed = [r for r in after if before[r.info.run_id] != "FINISHED"]
    assert sorted(r.data.tags["hydraflow.overrides"] for r in resumed) == [
        "width=300 height=100",
        "width=400 height=100",
        "width=500 height=100",
    ]
    assert {r.data.tags["hydraflow.attempt"] for r in resumed} == {"2"}
    assert all(r.data.tags["hydraflow.adopted"] == ".hydra/config.yaml" for r in after)
    loaded = hydraflow.load("app", tracking_uri=sqlite_uri(folder))
    assert sorted(loaded.frame["width"].to_list()) == [100, 100, 200, 200, 300, 400, 500]
    assert set(loaded.frame["label"].to_list()) == {
        "cnn_100",
        "cnn_200",
        "cnn_300",
        "cnn_400",
        "cnn_500",
    }

    # The digest is the one this package's own run of the config carries.
    fresh = tmp_path / "own"
    fresh.mkdir()
    shutil.copy(APPS / "app.py", fresh / "app.py")
    run_app(fresh, "-m", "width=200", "height=100", FIXTURE_TOKEN="third-value-3")
    (mine,) = store_runs(sqlite_uri(fresh))
    adopted = next(r for r in after if r.data.tags["hydraflow.overrides"] == "width=200 height=100")
    assert adopted.data.tags["hydraflow.digest"] == mine.data.tags["hydraflow.digest"]
    assert adopted.data.tags["hydraflow.config"] == mine.data.tags["hydraflow.config"]

    # A third pass skips everything, with nothing left to examine.
    third = run_app(folder, "-m", "width=100,200,300,400,500", "height=100")
    assert third.count("already finished with this config") == 5, third
    assert len(store_runs(sqlite_uri(folder))) == 7


@pytest.mark.slow
def test_two_apps_adopting_at_once_make_no_second_run(tmp_path: Path) -> None:
    folder = published_store(tmp_path / "store")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    command = [sys.executable, "app.py", "-m", "width=100,200,300,400,500", "height=100,200"]
    outputs = two_at_once(command, folder, env)
    examined = [out.count("adopted 7 runs") for out, _ in outputs]
    assert sorted(examined) == [0, 1]  # under the store's lock, one did it
    runs = store_runs(sqlite_uri(folder))
    overrides = [r.data.tags["hydraflow.overrides"] for r in runs]
    assert len(overrides) == len(set(overrides)) == 10  # 7 adopted, 3 new, none twice
    assert {r.info.status for r in runs} == {"FINISHED"}


# An app under plain `@hydra.main` that tracks itself with MLflow, as many do.
PLAIN_APP = """
import mlflow
import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


@hydra.main(version_base=None, config_path="conf", config_name="config")
def app(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    mlflow.set_experiment(hc.job.name)
    with mlflow.start_run():
        mlflow.log_params({"lr": cfg.optimizer.lr, "layers": cfg.model.layers})
        mlflow.log_artifacts(hc.runtime.output_dir + "/.hydra", ".hydra")
        mlflow.log_metric("loss", cfg.optimizer.lr * cfg.model.layers)


if __name__ == "__main__":
    app()
"""

OUR_APP = """
import mlflow
import hydraflow
from omegaconf import DictConfig


@hydraflow.main(version_base=None, config_path="conf", config_name="config")
def app(cfg: DictConfig) -> None:
    mlflow.log_metric("loss", cfg.optimizer.lr * cfg.model.layers)


if __name__ == "__main__":
    app()
"""

CONFIG = """
model:
  layers: 2
  name: mlp_${model.layers}
optimizer:
  lr: 1
  name: sgd
data:
  path: ${oc.env:DATA_ROOT,/data}/train
  splits: [train, val]
"""


def plain_project(folder: Path) -> Path:
    (folder / "conf").mkdir(parents=True)
    (folder / "conf" / "config.yaml").write_text(textwrap.dedent(CONFIG))
    (folder / "plain.py").write_text(textwrap.dedent(PLAIN_APP))
    (folder / "app.py").write_text(textwrap.dedent(OUR_APP))
    return folder


def run_script(folder: Path, script: str, *args: str, **env: str) -> str:
    inherited = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    environment = {"MLFLOW_TRACKING_URI": sqlite_uri(folder), **inherited, **env}
    command = [sys.executable, script, *args]
    result = run_in_own_group(command, folder, environment, 300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


SWEEP = ["optimizer.lr=1,0.5", "model.layers=2,3", "hydra.job.name=train"]


@pytest.mark.slow
def test_runs_of_mlflow_and_hydra_by_hand_are_adopted(tmp_path: Path) -> None:
    folder = plain_project(tmp_path)
    run_script(folder, "plain.py", "-m", *SWEEP)
    made = {r.info.run_id for r in store_runs(sqlite_uri(folder), "train")}
    assert len(made) == 4

    output = run_script(folder, "app.py", "-m", *SWEEP, DATA_ROOT="/elsewhere")
    assert output.count("already finished with this config") == 4, output
    assert {r.info.run_id for r in store_runs(sqlite_uri(folder), "train")} == made

    # A config is found whatever overrides made it; a new value is a new run.
    output = run_script(folder, "app.py", "-m", "optimizer.lr=1,0.1", "hydra.job.name=train")
    assert output.count("already finished with the same config, made with other") == 1, output
    runs = store_runs(sqlite_uri(folder), "train")
    assert len(runs) == 5
    assert len({r.data.tags["hydraflow.digest"] for r in runs}) == 5


@pytest.mark.slow
def test_runs_without_hydra_files_are_marked_once_and_left_alone(tmp_path: Path) -> None:
    folder = plain_project(tmp_path)
    mlflow.set_tracking_uri(sqlite_uri(folder))
    try:
        experiment = mlflow.create_experiment("train", artifact_location=str(folder / "mlruns"))
        with mlflow.start_run(experiment_id=experiment) as lone:
            mlflow.log_param("lr", "1")
    finally:
        mlflow.set_tracking_uri("")
    output = run_script(folder, "app.py", "hydra.job.name=train")
    runs = {r.info.run_id: r for r in store_runs(sqlite_uri(folder), "train")}
    assert len(runs) == 2
    assert runs[lone.info.run_id].data.tags["hydraflow.adopted"] == "none"
    assert "hydraflow.digest" not in runs[lone.info.run_id].data.tags
    assert "adopted" not in output  # said only of runs that became a config's


@pytest.mark.slow
def test_nested_runs_are_never_examined(tmp_path: Path) -> None:
    folder = plain_project(tmp_path)
    mlflow.set_tracking_uri(sqlite_uri(folder))
    try:
        experiment = mlflow.create_experiment("train", artifact_location=str(folder / "mlruns"))
        with (
            mlflow.start_run(experiment_id=experiment),
            mlflow.start_run(experiment_id=experiment, nested=True) as child,
        ):
            mlflow.log_param("lr", "1")
    finally:
        mlflow.set_tracking_uri("")
    run_script(folder, "app.py", "hydra.job.name=train")
    runs = {r.info.run_id: r for r in store_runs(sqlite_uri(folder), "train")}
    assert "hydraflow.adopted" not in runs[child.info.run_id].data.tags


@pytest.mark.slow
def test_runs_on_a_tracking_server_are_adopted(
    tracking_server: TrackingServer, tmp_path: Path
) -> None:
    folder = plain_project(tmp_path)
    sweep = [*SWEEP[:2], "hydra.job.name=adopted_on_server"]
    server = {"MLFLOW_TRACKING_URI": tracking_server.uri}
    run_script(folder, "plain.py", "-m", *sweep, **server)
    made = {r.info.run_id for r in store_runs(tracking_server.uri, "adopted_on_server")}
    assert len(made) == 4

    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | server
    command = [sys.executable, "app.py", "-m", *sweep]
    outputs = two_at_once(command, folder, env)
    for stdout, _ in outputs:
        assert stdout.count("already finished with this config") == 4, stdout
    runs = store_runs(tracking_server.uri, "adopted_on_server")
    assert {r.info.run_id for r in runs} == made
    assert all(r.data.tags["hydraflow.adopted"] == ".hydra/config.yaml" for r in runs)


# Configs as Hydra saves them: what the libyaml fast path reads must digest
# exactly as OmegaConf's own reading does (which is the composed config, for
# every config whose YAML PyYAML writes faithfully).
SCALARS = st.one_of(
    st.integers(min_value=-(10**15), max_value=10**15),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    st.sampled_from(["yes", "off", "null", "1e3", "1_000", "007", ".inf", "12:30", "2024-01-01"]),
    st.text(max_size=50).filter(lambda text: "$" not in text),  # interpolations: below
    st.text(alphabet="ab :-'", min_size=15, max_size=120),  # folded at 80 columns, or not
)
KEYS = st.one_of(st.text(min_size=1, max_size=12), st.text(alphabet="k ", min_size=18, max_size=45))
# `hydra` at the top is Hydra's own section, never in an app's config (tested apart).
KEYS = KEYS.filter(lambda key: "$" not in key and key not in ("???", "hydra"))
CONFIGS = st.dictionaries(
    KEYS,
    st.recursive(
        SCALARS,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
        max_leaves=8,
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(CONFIGS)
def test_a_saved_config_digests_as_omegaconf_reads_it(config: dict[str, object]) -> None:
    saved = OmegaConf.to_yaml(OmegaConf.create(config))  # as Hydra saves config.yaml
    reread = OmegaConf.create(saved)
    assert config_record(saved, ()) == to_record(reread, find_secrets(reread))


def test_an_interpolation_and_a_marked_secret_digest_as_the_apps_own() -> None:
    text = "a: 1\nb: ${a}\ndb:\n  password: hunter22\n"
    conf = OmegaConf.create(text)
    secrets = ("db.password",)
    yaml_text, plain = to_record(conf, find_secrets(conf, secrets))
    assert plain == {"a": 1, "b": 1, "db": {"password": "***"}}
    assert config_record(text, secrets) == (yaml_text, plain)
    tags = Adoption(secrets=secrets).tags(text, "- db.password=hunter22\n")
    assert tags["hydraflow.digest"] == config_digest(yaml_text)
    assert tags["hydraflow.overrides"] == "db.password=***"


def test_hydras_section_is_not_part_of_the_config() -> None:
    saved_whole = "a: 1\nhydra:\n  run:\n    dir: outputs/${now:%H}\n  job:\n    name: app\n"
    assert config_record(saved_whole, ()) == config_record("a: 1\n", ())


def test_a_file_that_is_not_a_config_makes_no_digest() -> None:
    assert Adoption().tags("- a\n- b\n", None) == {"hydraflow.adopted": "none"}
    assert Adoption().tags("a: [unclosed\n", None) == {"hydraflow.adopted": "none"}
    assert Adoption(match_overrides=True).tags("a: 1\n", "- a=1\n")["hydraflow.adopted"] == (
        ".hydra/overrides.yaml"
    )


# Configs whose values refer to other keys, as `${model.name}` does.
NAMES = st.sampled_from(["a", "b", "c", "model"])


@st.composite
def referring_configs(draw: st.DrawFn) -> dict[str, object]:
    config: dict[str, object] = {
        "a": draw(SCALARS),
        "b": draw(SCALARS),
        "model": {"name": draw(SCALARS), "depth": draw(st.integers(0, 9))},
    }
    references = st.sampled_from(["a", "b", "model.name", "model.depth", "c", "model", "x.y"])
    pieces = st.lists(
        st.one_of(references.map(lambda path: "${" + path + "}"), st.sampled_from(["_", "x", "-"])),
        min_size=1,
        max_size=3,
    )
    config["c"] = "".join(draw(pieces))
    config["d"] = "".join(draw(pieces))
    return config


@settings(max_examples=300, deadline=None)
@given(referring_configs())
def test_references_resolve_as_omegaconf_resolves_them(config: dict[str, object]) -> None:
    saved = OmegaConf.to_yaml(OmegaConf.create(config))
    reread = OmegaConf.create(saved)
    assert config_record(saved, ()) == to_record(reread, find_secrets(reread))


# Configs with `oc.env` values, as they are recorded: the value's text for
# each key whose resolution reads the environment (a key referring to one
# too), and a value read hidden where another string contains it.
ENVIRONMENT = {"HFT_TOKEN": "secret-token-1", "HFT_SHORT": "1"}
# Names and defaults the grammar reads otherwise are rarer: each sends the
# whole config to OmegaConf, and the fast path is the one to compare.
VARIABLES = st.sampled_from([*ENVIRONMENT, "HFT_UNSET"] * 6 + ["null", "true", "NaN"])
DEFAULTS = st.sampled_from(
    ["none", "/tmp/x", "a.b", "x-y", "12:30", "8080", "0", "1e5x", "0x1"] * 3
    + ["-1", "+1", "007", "1_0", "1e5", "1.50", "TRUE", "Null", "-inf"]
)
ENV_VALUES = st.builds(
    lambda variable, default: "${oc.env:" + variable + ("," + default if default else "") + "}",
    VARIABLES,
    st.none() | DEFAULTS,
)
CONTAINING = st.sampled_from(["secret-token-1/data", "x_secret-token-1", "1", "a1b"])
# Mostly values the fast path takes, so that it is the one compared.
SIMPLE = st.integers(-5, 5) | st.text(alphabet="ab-_/", max_size=6) | CONTAINING


@st.composite
def environment_configs(draw: st.DrawFn) -> dict[str, object]:
    config: dict[str, object] = {
        "a": draw(SIMPLE),
        "e": draw(ENV_VALUES),
        "model": {"name": draw(ENV_VALUES | SIMPLE), "depth": draw(st.integers(0, 9))},
        "items": [draw(ENV_VALUES | SIMPLE), draw(SIMPLE)],
    }
    references = st.sampled_from(["a", "e", "f", "g", "model.name", "model.depth"])
    pieces = st.lists(
        st.one_of(
            references.map(lambda path: "${" + path + "}"),
            ENV_VALUES,
            st.sampled_from(["_", "x", "-", "/"]),
        ),
        min_size=1,
        max_size=3,
    )
    config["f"] = "".join(draw(pieces))  # chains: f -> g -> f are cut by MAX_CHAIN or fail
    config["g"] = "".join(draw(pieces))
    return config


@settings(max_examples=400, deadline=None)
@given(environment_configs())
def test_environment_values_are_recorded_as_omegaconf_records_them(
    config: dict[str, object],
) -> None:
    saved = OmegaConf.to_yaml(OmegaConf.create(config))
    with environment(ENVIRONMENT):
        reread = OmegaConf.create(saved)
        assert config_record(saved, ()) == to_record(reread, find_secrets(reread))


@pytest.mark.parametrize(
    "text",
    [
        "token: ${oc.env:HFT_TOKEN,none}\nlr: 0.1\n",
        "a: ${oc.env:HFT_UNSET}\nb: ${a}\nc: run_${b}_${d}\nd: 3\n",
        "a: ${oc.env:HFT_TOKEN}\nb: secret-token-1/data\nc:\n- ${a}\n",
    ],
)
def test_environment_values_need_no_omegaconf(text: str) -> None:
    import yaml

    with environment(ENVIRONMENT):
        conf = OmegaConf.create(text)
        assert fast_record(yaml.safe_load(text)) == to_record(conf, find_secrets(conf))


@contextlib.contextmanager
def environment(variables: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.mark.parametrize(
    "text",
    ["- width=100\n- +model=x\n- lr=1e-3\n", "- 'a=b c'\n- x.y=[1,2]\n", "- a=\n- ~b\n", ""],
)
def test_overrides_are_read_as_yaml_reads_them(text: str) -> None:
    import yaml

    assert read_overrides(text) == (yaml.safe_load(text) or [])


def test_a_running_run_without_files_is_left_for_later(tmp_path: Path) -> None:
    here = tmp_path / "artifacts"
    (here / ".hydra").mkdir(parents=True)
    (here / ".hydra" / "config.yaml").write_text("a: 1\n")
    runs = [
        ForeignRun("with_files", "FAILED", str(here)),
        ForeignRun("running", "RUNNING", str(tmp_path / "not yet")),
        ForeignRun("no_files", "FINISHED", str(tmp_path / "none")),
    ]
    found = dict(zip([run.run_id for run in runs], examine(runs, Adoption()), strict=True))
    assert found["with_files"]["hydraflow.adopted"] == ".hydra/config.yaml"
    assert found["running"] == {}
    assert found["no_files"] == {"hydraflow.adopted": "none"}
