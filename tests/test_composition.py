"""`@hydraflow.main` composes exactly as `@hydra.main` (issue 7).

The oracle is Hydra itself: each case runs the same command line through a
plain `@hydra.main` app and through a `@hydraflow.main` app (both in
tests/apps/composition/), each job dumps the config its app received, and
the two dumps must be equal. The MLflow side is then read back with MLflow's
own client. Real Hydra, a real SQLite store, real subprocesses.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pytest
import yaml

from tests.conftest import run_in_own_group

pytestmark = pytest.mark.slow  # real Hydra apps, sweeps or services

APPS = Path(__file__).parent / "apps" / "composition"
VENV_BIN = Path(sys.executable).parent
TIMEOUT = 600
# What hydraflow must never make Hydra (or anything else) print.
WARNING_MARKERS = ("deprecat", "warning", "automatic schema matching")


@dataclass(frozen=True)
class Case:
    """One project and command line, run under both decorators."""

    name: str
    # The command line, split on spaces.
    args: str
    jobs: int
    # A dataclass in apps/composition/schemas.py; "" for none.
    schema: str = ""
    config_path: str = "conf"
    config_name: str = "config"
    # How the oracle registers the schema, as Hydra documents it: "primary"
    # (no YAML primary config) or "base_config" (first in the YAML defaults).
    register: str = ""


CASES = [
    Case("self_last_group_sweep", "-m model=cnn_s,cnn_l,vit_s,vit_l", jobs=4),
    Case("self_first", "-m --config-name=config_self_first model=cnn_s,vit_l", jobs=2),
    Case("self_absent", "-m --config-name=config_self_absent model=cnn_s,vit_l", jobs=2),
    Case(
        "nested_group",
        "-m --config-name=config_groups model=cnn_s,vit_l optimizer=sgd db/engine=innodb,myisam",
        jobs=4,
    ),
    Case(
        "packages",
        "-m --config-name=config_package trainer=cpu,gpu logger=wandb optimizer@train.opt=adam,sgd",
        jobs=4,
    ),
    Case(
        "interpolation",
        "-m --config-name=config_interp schedule=cosine,step model=vit_s optimizer.lr=0.3",
        jobs=2,
    ),
    Case(
        "add_delete_force",
        "-m --config-name=config_groups +extra=1 ~optimizer.momentum ~db ++model.layers=7"
        " ++tags.team=vision +experiment=fast seed=1,2",
        jobs=2,
    ),
    Case("drop_in_single_run", "model=vit_s epochs=3", jobs=1),
    Case(
        "schema_over_yaml",
        "-m model=cnn_s,vit_l optimizer=adam,sgd epochs=3",
        jobs=4,
        schema="Config",
        register="base_config",
    ),
    Case(
        "schema_with_config_name_on_the_command_line",
        "-m --config-name=config_self_first model=cnn_s,vit_l optimizer=sgd",
        jobs=2,
        schema="Config",
        register="base_config",
    ),
    Case(
        "schema_with_a_config_dir_on_the_command_line",
        "-m --config-dir=more --config-name=extra model=cnn_s,vit_l",
        jobs=2,
        schema="Config",
        register="base_config",
    ),
    Case(
        "schema_over_yaml_in_joblib_workers",
        "-m model=cnn_l,vit_s optimizer=adam,sgd hydra/launcher=joblib hydra.launcher.n_jobs=2",
        jobs=4,
        schema="Config",
        register="base_config",
    ),
    Case(
        "schema_only",
        "-m epochs=3,4 model.name=tiny optimizer.lr=2 precision=fp16",
        jobs=2,
        schema="Config",
        config_path="",
        register="primary",
    ),
    Case(
        "schema_holds_defaults",
        "-m model=cnn_s,vit_l optimizer=sgd",
        jobs=2,
        schema="WithDefaults",
        config_name="train",
        register="primary",
    ),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for the module (creating its tables costs seconds);
    each case is its own experiment (`hydra.job.name`)."""
    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    uri = f"sqlite:///{path}"
    mlflow.MlflowClient(uri).search_experiments()
    return uri


def run_process(
    command: list[str], cwd: Path, env: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    return run_in_own_group(command, cwd, env, TIMEOUT)


def environment(**extra: str) -> dict[str, str]:
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CASE_", "MLFLOW_", "HYDRA_"))
    }
    path = f"{VENV_BIN}{os.pathsep}{inherited.get('PATH', '')}"
    return {**inherited, "PATH": path, **extra}


def copy_apps(folder: Path, case: Case) -> Path:
    """The apps, the schemas and (when the case uses one) the conf/ tree."""
    folder.mkdir(parents=True)
    for name in ("case.py", "schemas.py", "hydra_app.py", "flow_app.py"):
        shutil.copy(APPS / name, folder / name)
    if case.config_path:
        shutil.copytree(APPS / "conf", folder / case.config_path)
        shutil.copytree(APPS / "more", folder / "more")
    return folder


def command_line_option(case: Case, option: str) -> str | None:
    for arg in case.args.split():
        if arg.startswith(f"{option}="):
            return arg.split("=", 1)[1]
    return None


def put_base_config_first(folder: Path, case: Case) -> None:
    """Hydra's documented way to give YAML a schema: `base_config` first."""
    config_dir = command_line_option(case, "--config-dir") or case.config_path
    name = command_line_option(case, "--config-name") or case.config_name
    path = folder / config_dir / f"{name}.yaml"
    primary = yaml.safe_load(path.read_text())
    primary["defaults"] = ["base_config", *primary.get("defaults", [])]
    path.write_text(yaml.safe_dump(primary, sort_keys=False))


def run_app(
    app: str, case: Case, folder: Path, store_uri: str, *extra_args: str
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Runs `app` for `case` in `folder`; returns the result and its dump file.
    Both apps get the same run and sweep dirs, so `${hydra:...}` agree."""
    dump = folder / f"{app}.jsonl"
    env = environment(
        CASE_DUMP=str(dump),
        CASE_SCHEMA=case.schema,
        CASE_CONFIG_PATH=case.config_path,
        CASE_CONFIG_NAME=case.config_name,
        CASE_REGISTER=case.register,
        MLFLOW_TRACKING_URI=store_uri,
    )
    outputs = folder.parent / "outputs"
    args = [
        *case.args.split(),
        *extra_args,
        f"hydra.job.name={case.name}",
        f"hydra.run.dir={outputs}/run",
        f"hydra.sweep.dir={outputs}/multirun",
    ]
    result = run_process([sys.executable, f"{app}.py", *args], folder, env)
    return result, dump


def dumped(path: Path) -> dict[tuple[str, ...], dict[str, Any]]:
    """The jobs' records, keyed by their overrides."""
    if not path.exists():
        return {}
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return {tuple(record["overrides"]): record for record in records}


def without_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """A dataclass instance keeps its `defaults` field; Hydra's DictConfig
    drops it. Neither is part of the composed config."""
    return {key: value for key, value in config.items() if key != "defaults"}


def flattened(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, Mapping) and value:
            flat.update(flattened(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


def assert_no_warnings(stderr: str, oracle_stderr: str = "") -> None:
    """No line of `stderr` warns, unless Hydra printed it under `@hydra.main`
    too (e.g. its own "Defaults list is missing `_self_`")."""
    from_hydra = set(oracle_stderr.splitlines())
    warnings = [
        line
        for line in stderr.splitlines()
        if any(marker in line.lower() for marker in WARNING_MARKERS) and line not in from_hydra
    ]
    assert not warnings, f"stderr warns:\n{stderr[-3000:]}"


def runs_of(store_uri: str, experiment: str) -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(store_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return client.search_runs([found.experiment_id], max_results=10_000)


@dataclass
class Outcome:
    hydra: dict[tuple[str, ...], dict[str, Any]]
    flow: dict[tuple[str, ...], dict[str, Any]]
    flow_stderr: str
    hydra_stderr: str
    runs: dict[str, mlflow.entities.Run]


OutcomeOf = Callable[[Case], Outcome]


@pytest.fixture(scope="module")
def outcome_of(store: str, tmp_path_factory: pytest.TempPathFactory) -> OutcomeOf:
    """Each case runs once under each decorator, when a test first asks."""
    done: dict[str, Outcome] = {}

    def outcome(case: Case) -> Outcome:
        if case.name not in done:
            done[case.name] = run_case(case, store, tmp_path_factory.mktemp(case.name))
        return done[case.name]

    return outcome


def run_case(case: Case, store_uri: str, tmp: Path) -> Outcome:
    oracle_dir = copy_apps(tmp / "hydra", case)
    if case.register == "base_config":
        put_base_config_first(oracle_dir, case)
    oracle, oracle_dump = run_app("hydra_app", case, oracle_dir, store_uri)
    assert oracle.returncode == 0, oracle.stderr[-3000:]
    flow, flow_dump = run_app("flow_app", case, copy_apps(tmp / "hydraflow", case), store_uri)
    assert flow.returncode == 0, flow.stderr[-3000:]
    runs = {run.info.run_id: run for run in runs_of(store_uri, case.name)}
    return Outcome(dumped(oracle_dump), dumped(flow_dump), flow.stderr, oracle.stderr, runs)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_the_app_gets_the_config_hydra_composes(case: Case, outcome_of: OutcomeOf) -> None:
    outcome = outcome_of(case)
    assert len(outcome.hydra) == case.jobs
    assert outcome.flow.keys() == outcome.hydra.keys()
    for overrides, expected in outcome.hydra.items():
        got = outcome.flow[overrides]
        assert without_defaults(got["config"]) == expected["config"], overrides
        assert got["choices"] == expected["choices"], overrides
        # The drop-in form hands over Hydra's DictConfig; a schema, its dataclass.
        assert got["type"] == (case.schema or "DictConfig")
    assert_no_warnings(outcome.flow_stderr, outcome.hydra_stderr)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_each_run_records_the_config_and_the_choices(case: Case, outcome_of: OutcomeOf) -> None:
    outcome = outcome_of(case)
    for overrides, expected in outcome.hydra.items():
        run = outcome.runs[outcome.flow[overrides]["run_id"]]
        tags, params = run.data.tags, run.data.params
        assert run.info.status == "FINISHED"
        assert tags["hydraflow.overrides"] == " ".join(overrides)
        choices = {
            key.removeprefix("hydraflow.choice."): value
            for key, value in tags.items()
            if key.startswith("hydraflow.choice.")
        }
        assert choices == expected["choices"]
        recorded = as_recorded(expected["config"])
        assert json.loads(tags["hydraflow.config"]) == recorded
        assert "defaults" not in params
        assert params == flattened(recorded)


# What says where a job runs is recorded as its text, not Hydra's resolved
# value (a run's identity is its configuration: tracking/secrets.py).
LAUNCH_VALUES = {"output": "${hydra:runtime.output_dir}/weights.pt"}


def as_recorded(config: Mapping[str, Any]) -> dict[str, Any]:
    """Hydra's resolved config as hydraflow records it (config_interp.yaml's `output`)."""
    return {key: LAUNCH_VALUES.get(key, value) for key, value in config.items()}


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_different_configs_are_different_runs(case: Case, outcome_of: OutcomeOf) -> None:
    outcome = outcome_of(case)
    configs = {json.dumps(job["config"], sort_keys=True) for job in outcome.hydra.values()}
    run_ids = {job["run_id"] for job in outcome.flow.values()}
    assert len(run_ids) == len(configs) == case.jobs
    assert set(outcome.runs) == run_ids


WRONG_TYPE_CASES = [
    Case("wrong_type_over_yaml", "epochs=abc", jobs=0, schema="Config", register="base_config"),
    Case(
        "wrong_type_schema_only",
        "epochs=abc",
        jobs=0,
        schema="Config",
        config_path="",
        register="primary",
    ),
]


@dataclass
class Refusal:
    hydra: subprocess.CompletedProcess[str]
    flow: subprocess.CompletedProcess[str]
    flow_dump: Path
    runs: list[mlflow.entities.Run]


@pytest.fixture(scope="module")
def refusal_of(store: str, tmp_path_factory: pytest.TempPathFactory) -> Callable[[Case], Refusal]:
    done: dict[str, Refusal] = {}

    def refusal(case: Case) -> Refusal:
        if case.name not in done:
            tmp = tmp_path_factory.mktemp(case.name)
            oracle_dir = copy_apps(tmp / "hydra", case)
            if case.register == "base_config":
                put_base_config_first(oracle_dir, case)
            oracle, _ = run_app("hydra_app", case, oracle_dir, store)
            flow, dump = run_app("flow_app", case, copy_apps(tmp / "hydraflow", case), store)
            done[case.name] = Refusal(oracle, flow, dump, runs_of(store, case.name))
        return done[case.name]

    return refusal


@pytest.mark.parametrize("case", WRONG_TYPE_CASES, ids=lambda case: case.name)
def test_a_wrong_type_fails_before_the_app_runs(
    case: Case, refusal_of: Callable[[Case], Refusal]
) -> None:
    refusal = refusal_of(case)
    assert refusal.hydra.returncode != 0  # Hydra refuses it too
    assert refusal.flow.returncode != 0
    assert "epochs" in refusal.flow.stderr
    assert "abc" in refusal.flow.stderr
    assert not refusal.flow_dump.exists(), "the app ran"
    assert refusal.runs == []
    assert_no_warnings(refusal.flow.stderr, refusal.hydra.stderr)


@pytest.mark.parametrize("case", WRONG_TYPE_CASES, ids=lambda case: case.name)
def test_a_wrong_type_is_reported_without_a_traceback(
    case: Case, refusal_of: Callable[[Case], Refusal]
) -> None:
    refusal = refusal_of(case)
    assert "Traceback" not in refusal.hydra.stderr
    # A user's mistake gets a message, as from Hydra, not a Python traceback.
    assert "Traceback" not in refusal.flow.stderr, refusal.flow.stderr


def test_a_wrong_type_over_yaml_is_one_line_naming_the_key(
    refusal_of: Callable[[Case], Refusal],
) -> None:
    """Validated by hydraflow (a schema-only config is Hydra's to refuse):
    OmegaConf's text added `full_key:` and `object_type=` lines; the message
    leads with the key instead."""
    stderr = refusal_of(WRONG_TYPE_CASES[0]).flow.stderr
    [line] = [x for x in stderr.splitlines() if "does not fit" in x]
    assert line.endswith(": epochs: Value 'abc' of type 'str' could not be converted to Integer")
    assert "full_key" not in stderr


def test_a_skip_for_a_config_made_with_other_overrides_warns(tmp_path: Path, store: str) -> None:
    # `model=cnn_s` and `optimizer=adam` both name a default: the same config.
    first = Case("skip_other_overrides", "model=cnn_s", jobs=1)
    folder = copy_apps(tmp_path / "app", first)
    result, dump = run_app("flow_app", first, folder, store)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_no_warnings(result.stderr)
    [run] = runs_of(store, first.name)

    second = Case("skip_other_overrides", "optimizer=adam", jobs=1)
    result, dump = run_app("flow_app", second, folder, store)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_no_warnings(result.stderr)
    assert len(dumped(dump)) == 1, "the skipped job ran the app"
    assert [r.info.run_id for r in runs_of(store, first.name)] == [run.info.run_id]
    [warning] = [line for line in (result.stdout + result.stderr).splitlines() if "WARNING" in line]
    assert run.info.run_id in warning
    assert "model=cnn_s" in warning
    assert "optimizer=adam" in warning


def run_cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in environment().items() if key != "NO_COLOR"}
    return run_process([str(VENV_BIN / "hydraflow"), *args], project, env)


def test_the_cli_runs_the_configs_and_a_rerun_skips_them(tmp_path: Path) -> None:
    """The project of docs/configs.md, its sweep narrowed to 2 models (one
    command each) x 2 seeds (it is 4 x 6 there), two commands at a time."""
    project = tmp_path / "project"
    shutil.copytree(APPS / "project", project)
    jobs_file = project / "hydraflow.yaml"
    jobs_file.write_text(
        jobs_file.read_text()
        .replace("cnn_s,cnn_l,vit_s,vit_l", "cnn_s,vit_l")
        .replace("1:6", "1:2")
    )
    store_uri = f"sqlite:///{project / 'mlflow.db'}"
    train = ["run", "train", "-j", "2"]

    first = run_cli(project, *train)
    assert first.returncode == 0, first.stderr[-3000:]
    assert_no_warnings(first.stderr)
    runs = runs_of(store_uri, "train")
    assert len(runs) == 4
    assert {run.info.status for run in runs} == {"FINISHED"}
    for run in runs:
        overrides = dict(
            item.split("=", 1) for item in run.data.tags["hydraflow.overrides"].split()
        )
        params = run.data.params
        group_file = project / "conf" / "model" / f"{overrides['model']}.yaml"
        assert params["model.name"] == overrides["model"]
        assert params["model.layers"] == str(yaml.safe_load(group_file.read_text())["layers"])
        assert params["seed"] == overrides["seed"]
        assert run.data.tags["hydraflow.choice.model"] == overrides["model"]
        assert run.data.tags["hydraflow.choice.optimizer"] == "adam"
    assert {run.data.tags["hydraflow.choice.model"] for run in runs} == {"cnn_s", "vit_l"}
    assert len({run.data.tags["hydraflow.digest"] for run in runs}) == 4

    assert "4 runs: 4 finished" in first.stderr

    # Nothing changed: the CLI proves every command finished and starts none.
    again = run_cli(project, *train)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 commands: 0 finished, 2 skipped; 4 runs: 4 skipped" in again.stderr
    assert run_ids(store_uri) == {run.info.run_id for run in runs}

    # A config file changed (a comment only): the apps start, compose, and
    # skip every job themselves, each naming its run.
    config = project / "conf" / "config.yaml"
    config.write_text(config.read_text() + "# tuned later\n")
    third = run_cli(project, *train)
    assert third.returncode == 0, third.stderr[-3000:]
    assert_no_warnings(third.stderr)
    assert run_ids(store_uri) == {run.info.run_id for run in runs}
    skips = [line for line in (third.stdout + third.stderr).splitlines() if "skipped" in line]
    assert {run.info.run_id for run in runs if any(run.info.run_id in s for s in skips)} == {
        run.info.run_id for run in runs
    }
    assert "4 runs: 4 skipped" in third.stderr


def run_ids(store_uri: str) -> set[str]:
    return {run.info.run_id for run in runs_of(store_uri, "train")}


def test_a_mandatory_value_left_unset_is_refused_without_a_traceback(
    tmp_path: Path, store: str
) -> None:
    """The app is handed a dataclass instance, which cannot hold `???`: the
    job must fail with a located message, not a Python traceback."""
    forgotten = Case("mandatory_value", "epochs=3", jobs=0, schema="NeedsDataDir", config_path="")
    folder = copy_apps(tmp_path / "app", forgotten)
    result, dump = run_app("flow_app", forgotten, folder, store)
    assert result.returncode != 0
    assert "data_dir" in result.stderr
    assert not dump.exists(), "the app ran"
    assert runs_of(store, forgotten.name) == []
    assert "Traceback" not in result.stderr, result.stderr

    given = Case(
        "mandatory_value", "epochs=3 data_dir=/data", jobs=1, schema="NeedsDataDir", config_path=""
    )
    result, dump = run_app("flow_app", given, folder, store)
    assert result.returncode == 0, result.stderr[-3000:]
    [job] = dumped(dump).values()
    assert job["config"] == {"data_dir": "/data", "epochs": 3}


def test_an_unset_environment_variable_is_named_in_one_line(
    tmp_path: Path, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`api_key: ${oc.env:COMPOSITION_API_KEY}` with the variable unset: plain
    `@hydra.main` fails where the app reads the value (here, resolving the
    config), in OmegaConf's words; ours builds the dataclass before the app
    runs, so it fails there, and says which variable, on one line. Set, both
    apps get its value."""
    variable = "COMPOSITION_API_KEY"
    case = Case(
        "unset_variable",
        "epochs=3",
        jobs=0,
        schema="NeedsApiKey",
        config_path="",
        register="primary",
    )
    oracle_dir, folder = copy_apps(tmp_path / "hydra", case), copy_apps(tmp_path / "flow", case)
    monkeypatch.delenv(variable, raising=False)
    oracle, _ = run_app("hydra_app", case, oracle_dir, store)
    assert (
        oracle.returncode != 0 and f"Environment variable '{variable}' not found" in oracle.stderr
    )
    result, dump = run_app("flow_app", case, folder, store)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "KeyError" not in result.stderr, result.stderr
    unset = f"api_key: the environment variable {variable} is not set (${{oc.env:{variable}}})"
    assert [x for x in result.stderr.splitlines() if variable in x] == [
        f"hydraflow: error: {unset}"
    ]
    assert not dump.exists(), "the app ran"
    assert runs_of(store, case.name) == []

    monkeypatch.setenv(variable, "sk-test-1")
    oracle, oracle_dump = run_app("hydra_app", case, oracle_dir, store)
    result, dump = run_app("flow_app", case, folder, store)
    assert oracle.returncode == 0 and result.returncode == 0, result.stderr[-3000:]
    [expected], [job] = dumped(oracle_dump).values(), dumped(dump).values()
    assert job["config"] == expected["config"] == {"api_key": "sk-test-1", "epochs": 3}


def test_arguments_passed_through_reach_hydra_as_typed(tmp_path: Path) -> None:
    """`hydraflow run train --config-name X -- epochs=2,3` once put `epochs=...`
    before `--multirun`, and Hydra's parser refused the whole command."""
    project = tmp_path / "project"
    shutil.copytree(APPS / "project", project)
    jobs_file = project / "hydraflow.yaml"
    jobs_file.write_text(
        jobs_file.read_text().replace("cnn_s,cnn_l,vit_s,vit_l", "cnn_s").replace("1:6", "1")
    )
    result = run_cli(project, "run", "train", "--config-name", "config", "--", "epochs=2,3")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = runs_of(f"sqlite:///{project / 'mlflow.db'}", "train")
    assert sorted(run.data.params["epochs"] for run in runs) == ["2", "3"]
