"""`@hydraflow.main` is a drop-in for `@hydra.main` (issue 19).

Each pattern of Hydra's basic and structured-config tutorials has its own
small app in tests/apps/dropin/<pattern>/app.py (written for these tests),
run with each command line below three ways: under `@hydra.main` (the
oracle), and under `@hydraflow.main` as `app(cfg)` and as
`app_with_run(run, cfg)`. What the app prints, the config it receives and the
group choices must be Hydra's, and each run is tracked as usual. All jobs run
in one process (run_patterns.py), each as its own `python app.py ARGS` would,
so the file takes seconds per pattern instead of a process start per job.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import hydra
import hydraflow
import mlflow
import pytest
from hydraflow.tracking.decorator import takes_run
from omegaconf import DictConfig

from tests.test_composition import environment, flattened, run_process

APPS = Path(__file__).parent / "apps" / "dropin"
# The tests that run the apps (marked slow) share one process running them
# all: about 30 s of CPU, several minutes of wall time on a loaded machine.
APPS_TIMEOUT = 900
FLOWS = ("flow", "flow_run")

# Command lines per pattern; each runs under every variant.
PATTERNS: dict[str, tuple[str, ...]] = {
    "no_config": ("", "+server.host=localhost +server.port=8080"),
    "config_file": ("server.port=9090 +server.tls=true", "~workers"),
    "config_object": ("token=abc", ""),
    "groups": ("", "+storage=s3 storage.region=us-east-1"),
    "groups_defaults": ("storage=s3", "~storage"),
    "composition": ("-m storage=local,s3 codec=json,msgpack",),
    "structured_node": ("port=9000 debug=true", "port=high"),
    "structured_nested": ("database.name=prod server.port=81",),
    "structured_groups": ("", "+database=postgres database.port=6543"),
    "structured_defaults": ("", "database=postgres"),
    "schema_same_group": ("database=sqlite", "database.port=abc"),
    "schema_other_group": ("database.port=6000", "database.port=abc"),
    "package": ("storage@backup=local", "+tls=strict"),
    "legacy": ("",),
    "bare": ("+storage=local +seed=1",),
}
# Where the oracle fails too: in the app (a mandatory value read unset) or
# in composition (a value the schema's type refuses).
FAILS_IN_APP = {("config_object", "")}
FAILS_TO_COMPOSE = {
    ("structured_node", "port=high"),
    ("schema_same_group", "database.port=abc"),
    ("schema_other_group", "database.port=abc"),
}


@dataclass(frozen=True)
class Case:
    pattern: str
    args: str
    index: int

    @property
    def id(self) -> str:
        return f"{self.pattern}[{self.args or 'no overrides'}]"

    def job_name(self, variant: str) -> str:
        return f"{self.pattern}-{self.index}-{variant}"


CASES = [
    Case(pattern, args, index)
    for pattern, lines in PATTERNS.items()
    for index, args in enumerate(lines)
]
FLOW_CASES = [(case, flow) for case in CASES for flow in FLOWS]


def flow_id(value: Any) -> str:
    return value.id if isinstance(value, Case) else str(value)


@dataclass
class Outcomes:
    """Every job's result, by case and variant, and the store they wrote to."""

    results: dict[tuple[Case, str], dict[str, Any]]
    store: str

    def of(self, case: Case, variant: str) -> dict[str, Any]:
        return self.results[case, variant]

    def runs(self, case: Case, variant: str) -> list[mlflow.entities.Run]:
        client = mlflow.MlflowClient(self.store)
        experiment = client.get_experiment_by_name(case.job_name(variant))
        return [] if experiment is None else client.search_runs([experiment.experiment_id])


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Outcomes:
    """Runs every case under every variant, in one process."""
    tmp = tmp_path_factory.mktemp("dropin")
    jobs = []
    for case in CASES:
        for variant in ("hydra", *FLOWS):
            outputs = tmp / case.job_name(variant)
            args = [
                *case.args.split(),
                f"hydra.job.name={case.job_name(variant)}",
                f"hydra.run.dir={outputs}/run",
                f"hydra.sweep.dir={outputs}/multirun",
            ]
            app = APPS / case.pattern / "app.py"
            jobs.append({"app": str(app), "variant": variant, "args": args})
    (tmp / "jobs.json").write_text(json.dumps(jobs))
    store = f"sqlite:///{tmp / 'mlflow.db'}"
    mlflow.MlflowClient(store).search_experiments()  # MLflow says when it creates a store
    env = environment(MLFLOW_TRACKING_URI=store, PYTHONPATH=str(APPS), PYTHONDONTWRITEBYTECODE="1")
    command = [sys.executable, str(APPS / "run_patterns.py"), "jobs.json", "results.jsonl"]
    done = run_process(command, tmp, env)
    assert done.returncode == 0, done.stderr[-3000:]
    results = {}
    lines = (tmp / "results.jsonl").read_text().splitlines()
    for case_and_variant, line in zip(
        [(case, variant) for case in CASES for variant in ("hydra", *FLOWS)], lines, strict=True
    ):
        results[case_and_variant] = json.loads(line)
    return Outcomes(results, store)


def without_times(text: str) -> str:
    """Hydra's log lines (`[2026-11-27 17:48:25,237][HYDRA] ...`) without the time."""
    return re.sub(r"^\[\d{4}-\d\d-\d\d [\d:,]+\]", "[time]", text, flags=re.MULTILINE)


def received(job: dict[str, Any]) -> list[dict[str, Any]]:
    keys = ("config", "type", "choices", "overrides", "in_output_dir")
    return [{key: record[key] for key in keys} for record in job["records"]]


def error_report(stderr: str) -> list[str]:
    """Hydra's report of an error without the traceback's frames (hydraflow
    adds its own frames above the app's)."""
    report, in_frame = [], False
    for line in stderr.splitlines():
        if line.startswith("  File "):
            in_frame = True
        elif not (in_frame and line.startswith("    ")):
            in_frame = False
            report.append(line)
    return report


@pytest.mark.parametrize(("case", "flow"), FLOW_CASES, ids=flow_id)
@pytest.mark.slow
@pytest.mark.timeout(APPS_TIMEOUT)
def test_the_app_prints_and_receives_what_it_does_under_hydra(
    case: Case, flow: str, outcomes: Outcomes
) -> None:
    oracle, job = outcomes.of(case, "hydra"), outcomes.of(case, flow)
    expected_status = 1 if (case.pattern, case.args) in FAILS_IN_APP | FAILS_TO_COMPOSE else 0
    assert oracle["status"] == expected_status, oracle["stderr"][-2000:]
    assert job["status"] == oracle["status"], job["stderr"][-3000:]
    assert without_times(job["stdout"]) == without_times(oracle["stdout"])
    assert received(job) == received(oracle)
    if oracle["status"] == 0:
        # Hydra's warnings, raised where Hydra raises them, and nothing else.
        assert job["stderr"] == oracle["stderr"]
    else:
        assert error_report(job["stderr"]) == error_report(oracle["stderr"])


@pytest.mark.parametrize(("case", "flow"), FLOW_CASES, ids=flow_id)
@pytest.mark.slow
@pytest.mark.timeout(APPS_TIMEOUT)
def test_each_job_is_a_run_with_its_config_and_choices(
    case: Case, flow: str, outcomes: Outcomes
) -> None:
    job = outcomes.of(case, flow)
    runs = {run.info.run_id: run for run in outcomes.runs(case, flow)}
    if (case.pattern, case.args) in FAILS_TO_COMPOSE:
        assert runs == {}
        return
    if (case.pattern, case.args) in FAILS_IN_APP:
        [run] = runs.values()
        assert run.info.status == "FAILED"
        return
    assert sorted(record["run_id"] for record in job["records"]) == sorted(runs)
    for record in job["records"]:
        run = runs[record["run_id"]]
        tags = run.data.tags
        assert run.info.status == "FINISHED"
        assert record["same_run"], "current_run(), mlflow.active_run() and `run` differ"
        assert tags["hydraflow.overrides"] == " ".join(record["overrides"])
        assert json.loads(tags["hydraflow.config"]) == record["config"]
        assert run.data.params == flattened(record["config"])
        choices = {
            key.removeprefix("hydraflow.choice."): value
            for key, value in tags.items()
            if key.startswith("hydraflow.choice.")
        }
        assert choices == record["choices"]


@pytest.mark.slow
@pytest.mark.timeout(APPS_TIMEOUT)
def test_a_failing_app_leaves_its_traceback_in_the_runs_log_not_on_stdout(
    outcomes: Outcomes,
) -> None:
    [case] = [case for case in CASES if (case.pattern, case.args) in FAILS_IN_APP]
    for flow in FLOWS:
        [run] = outcomes.runs(case, flow)
        log = Path(run.info.artifact_uri.removeprefix("file://")) / f"{case.job_name(flow)}.log"
        assert "MissingMandatoryValue: Missing mandatory value: token" in log.read_text()
        assert "Traceback" not in outcomes.of(case, flow)["stdout"]


def test_every_pattern_has_its_app() -> None:
    assert {path.parent.name for path in APPS.glob("*/app.py")} == set(PATTERNS)


# The ways Hydra's documentation and users call `hydra.main`.
HYDRA_CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((), {}),
    ((), {"version_base": None}),
    ((), {"config_path": "conf"}),
    ((), {"config_name": "config", "version_base": None}),
    ((), {"version_base": None, "config_path": "conf", "config_name": "config"}),
    (("conf",), {}),
    (("conf", "config"), {}),
    (("conf", "config", "1.3"), {}),
    ((None, "config"), {"version_base": None}),
    (("conf",), {"config_name": "config", "version_base": "1.1"}),
]


@pytest.mark.parametrize(("args", "kwargs"), HYDRA_CALLS)
def test_every_call_of_hydra_main_is_a_call_of_hydraflow_main(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    hydra_call = inspect.signature(hydra.main).bind(*args, **kwargs).arguments
    ours = dict(inspect.signature(hydraflow.main).bind(*args, **kwargs).arguments)
    if "schema_or_config_path" in ours:
        ours["config_path"] = ours.pop("schema_or_config_path")
    assert ours == hydra_call


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("conf",), {"config_path": "other"}, "config_path both by position and by name"),
        ((42,), {}, "not int"),
        ((print,), {}, r"write @hydraflow.main\(...\)"),
    ],
)
def test_a_first_argument_that_is_neither_schema_nor_path_is_refused(
    args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        hydraflow.main(*args, **kwargs)


class Trainer:
    def __call__(self, run: Any, cfg: DictConfig) -> None: ...

    def step(self, cfg: DictConfig) -> None: ...


def with_run(run: Any, cfg: DictConfig) -> None: ...


def config_only(cfg: DictConfig) -> None: ...


def config_and_option(cfg: DictConfig, verbose: bool = False) -> None: ...


@pytest.mark.parametrize(
    ("app", "gets_run"),
    [
        (config_only, False),
        (config_and_option, False),
        (with_run, True),
        (lambda cfg: None, False),
        (lambda run, cfg: None, True),
        (partial(with_run, None), False),
        (Trainer(), True),
        (Trainer().step, False),
        (print, False),
    ],
)
def test_the_apps_signature_decides_whether_it_gets_the_run(
    app: Callable[..., Any], gets_run: bool
) -> None:
    assert takes_run(app) is gets_run


def test_current_run_outside_a_job_says_where_to_call_it() -> None:
    with pytest.raises(RuntimeError, match="outside a job"):
        hydraflow.current_run()


PASSTHROUGH_APP = """
import threading

import hydra
import hydraflow
import mlflow
from omegaconf import DictConfig, OmegaConf


def train(cfg: DictConfig) -> None:
    print(OmegaConf.to_yaml(cfg), end="")


hydra_app = hydra.main(version_base=None)(train)
flow_app = hydraflow.main(version_base=None)(train)

@hydraflow.main(version_base=None)
def nested(cfg: DictConfig) -> None:
    job_run = hydraflow.current_run().info.run_id
    with mlflow.start_run(nested=True) as child:
        seen = []
        thread = threading.Thread(target=lambda: seen.append(hydraflow.current_run()))
        thread.start()
        thread.join()
        same = [run.info.run_id == job_run for run in (hydraflow.current_run(), *seen)]
        print("nested:", child.info.run_id != job_run, same)


config = OmegaConf.create({"lr": 0.1, "model": {"depth": 4}})
hydra_app(config)
print("---")
flow_app(config)
print("---")
nested(OmegaConf.create({"nested": True}))
"""


@pytest.mark.slow
@pytest.mark.timeout(APPS_TIMEOUT)
def test_an_app_given_a_config_runs_with_it_as_under_hydra(
    tmp_path: Path, outcomes: Outcomes
) -> None:
    """`@hydra.main`'s `cfg_passthrough`: `app(cfg)` skips the command line."""
    (tmp_path / "passthrough.py").write_text(PASSTHROUGH_APP)
    env = environment(MLFLOW_TRACKING_URI=outcomes.store)
    done = run_process([sys.executable, "passthrough.py", "ignored=1"], tmp_path, env)
    assert done.returncode == 0, done.stderr[-3000:]
    under_hydra, under_hydraflow, nested = done.stdout.split("---\n")
    assert under_hydraflow == under_hydra == "lr: 0.1\nmodel:\n  depth: 4\n"
    client = mlflow.MlflowClient(outcomes.store)
    experiment = client.get_experiment_by_name("passthrough")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    params = sorted(sorted(run.data.params.items()) for run in runs if run.data.params)
    assert params == [[("lr", "0.1"), ("model.depth", "4")], [("nested", "True")]]
    assert {run.info.status for run in runs} == {"FINISHED"}
    # In a nested run and in another thread, current_run() is the job's run.
    assert nested == "nested: True [True, True]\n"
